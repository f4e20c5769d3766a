"""The ``routehead`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .documents import read_documents
from .heads import MODES


def _rerank(args: argparse.Namespace) -> int:
    from .reranker import RouteHeadReranker

    docs = read_documents(args.docs)
    heads = [int(h) for h in args.heads.split(",")] if args.heads else None
    reranker = RouteHeadReranker(args.model, mode=args.mode, heads=heads, device=args.device,
                                 max_doc_words=args.max_doc_words)
    results = reranker.rerank(args.query, [{"title": d.title, "text": d.text} for d in docs], top_n=args.top_n)
    if args.json:
        json.dump([{"rank": r + 1, "index": res.index, "score": res.score, **res.document}
                   for r, res in enumerate(results)], sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    print(f"query: {args.query}\n{len(docs)} documents, model {reranker.backbone.name}, mode {reranker.mode}\n")
    for rank, res in enumerate(results, 1):
        doc = res.document
        text = (doc["title"] + ": " if doc["title"] else "") + doc["text"]
        print(f"{rank:>3}. [{res.index}] {res.score:8.4f}  {text[:100]}{'…' if len(text) > 100 else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routehead", description="Attention-head re-ranking for RAG.")
    commands = parser.add_subparsers(dest="command", required=True)

    rerank = commands.add_parser("rerank", help="re-rank documents for a query")
    rerank.add_argument("--query", required=True, help="the query")
    rerank.add_argument("--docs", required=True, help='.jsonl of {"text", "title"?}, or a text file with one document per line')
    rerank.add_argument("--top-n", type=int, default=None, help="print only the best N")
    rerank.add_argument("--model", default=None, help="hub id, model folder or .gguf (default: embedded SmolLM2-135M-Instruct)")
    rerank.add_argument("--mode", choices=[m for m in MODES if m != "routed"], default="all")
    rerank.add_argument("--heads", default=None, help="comma-separated head indices for --mode static")
    rerank.add_argument("--device", default="auto")
    rerank.add_argument("--max-doc-words", type=int, default=300)
    rerank.add_argument("--json", action="store_true", help="print the ranking as JSON")
    rerank.set_defaults(run=_rerank)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"routehead {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
