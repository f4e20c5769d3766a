"""The curl example of docs/server.md and of the README as pasted: its start command read by ``routehead serve``'s
own parser, its ``curl`` command run by the real curl binary against a served engine (the default model), and the
reply it prints held to the one the doc shows."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_serve import Server

from routehead_rag.cli import build_parser
from routehead_rag.serve import ServeSettings, create_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "server.md", ROOT / "README.md"]


def _example(doc: Path) -> tuple[str, str, dict]:
    """The doc's curl command, the ``routehead serve`` command it calls (the nearest before it) and the reply shown
    after it."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", doc.read_text(), flags=re.S)
    at = next(i for i, (language, text) in enumerate(blocks) if language == "bash" and text.startswith("curl "))
    start = next(text for language, text in reversed(blocks[:at])
                 if language == "bash" and text.startswith("routehead serve"))
    language, reply = blocks[at + 1]
    assert language == "json", f"{doc.name} shows the curl command's reply in a json block right after it"
    return blocks[at][1].strip(), start.strip(), json.loads(reply)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_curl_example_runs_as_pasted_and_prints_the_reply_the_doc_shows(default_reranker, doc):
    assert shutil.which("curl"), "this test runs the real curl binary: install it (apt-get install curl)"
    curl, start, shown = _example(doc)
    args = build_parser().parse_args(shlex.split(start, comments=True)[1:])  # what `routehead serve` would run
    assert args.handler.__name__ == "_serve"
    address = f"http://{args.host}:{args.port}"
    assert address + "/v2/rerank" in curl, "the curl command calls the server the start command starts"
    settings = ServeSettings(api_key=args.api_key)
    with Server(create_app(default_reranker, settings)) as running:
        done = subprocess.run(["bash", "-c", curl.replace(address, running.url)], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert list(reply) == list(shown) == ["id", "results", "meta"]
    uuid.UUID(reply["id"])
    assert all(list(r) == ["index", "relevance_score"] for r in reply["results"])
    assert [r["index"] for r in reply["results"]] == [r["index"] for r in shown["results"]]
    assert [r["relevance_score"] for r in reply["results"]] == pytest.approx(
        [r["relevance_score"] for r in shown["results"]], abs=1e-3)
    meta, shown_meta = reply["meta"], shown["meta"]
    assert list(meta) == list(shown_meta) and meta["model"] == shown_meta["model"]
    assert meta["warnings"] == shown_meta["warnings"] == []  # the default model is calibrated
    assert meta["routehead_score"] == pytest.approx(shown_meta["routehead_score"], abs=1e-3)
