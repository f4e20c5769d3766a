"""What both my-files examples share: their options."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from routehead_rag import RouteHeadReranker
from routehead_rag.heads import describe


def my_files_args(doc: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``FOLDER QUERY [--top-k K] [--top-n N] [--show-heads]``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("folder", help="a folder of .txt and .md files (read recursively), e.g. examples/my_docs")
    parser.add_argument("query", help='your question, e.g. "What causes scurvy?"')
    parser.add_argument("--top-k", type=int, default=10, help="passages the vector retriever hands on (default 10)")
    parser.add_argument("--top-n", type=int, default=3, help="passages kept after re-ranking (default 3)")
    parser.add_argument("--show-heads", action="store_true", help="also print the heads that scored the query")
    return parser.parse_args(argv)


def heads_of(reranker: RouteHeadReranker, query: str) -> str:
    """The heads that score ``query`` (``L<layer>.H<head> weight``), or "all heads"."""
    heads = reranker.select_heads(query)
    return "all heads" if heads is None else describe(heads, reranker.backbone.n_heads)
