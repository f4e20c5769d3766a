"""Train a RouteHead router on your own documents, with your queries and judgements or with synthetic queries.

    python examples/train_on_my_corpus.py --corpus PATH --out my_router/
    # the same as: routehead adapt --corpus PATH --out my_router/
    # then: RouteHeadReranker(router="my_router/")

PATH is a folder of .txt/.md files, a .jsonl of {"id", "text", "title"?}, a BEIR folder (corpus.jsonl) or the
Cranfield folder (cran.all.1400). ``--help`` lists the options (``--help-all`` the advanced ones);
routehead_rag/training/adapt.py says what each step does. From Python: ``routehead_rag.training.adapt.adapt(corpus, out, AdaptConfig(...))``.
"""

from __future__ import annotations

import sys

from routehead_rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["adapt", *sys.argv[1:]]))
