"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (Schemathesis, benchmarks/fuzz_server.py), on
loopback, over a tiny random model so that it takes seconds: no 5xx, no response outside the documented schema, no
dropped connection. ``python benchmarks/fuzz_server.py`` is the long run on the real default model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="the 'test' extra is not installed (pip install 'routehead-rag[test]')")

from routehead_rag import Recipe, RouteHeadReranker  # noqa: E402
from routehead_rag.serve import ServeSettings, create_app  # noqa: E402

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_server.py"
_spec = importlib.util.spec_from_file_location("fuzz_server_benchmark", _PATH)
bench = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # registered: it defines dataclasses
_spec.loader.exec_module(bench)


def test_fuzzing_from_the_openapi_schema_finds_no_5xx_and_no_response_outside_the_schema(tiny_llama_dir, capsys):
    engine = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    with bench.LoopbackServer(create_app(engine, ServeSettings(max_documents=50))) as running:
        report = bench.fuzz(running.url, examples=40, seconds=45)
    with capsys.disabled():
        print(f"\nfuzz: {report.requests} requests, {report.server_errors} 5xx, {report.schema_violations} outside "
              f"the schema, {report.crashes} dropped, statuses {report.statuses}, {report.seconds} s")
    assert report.requests >= 150
    assert (report.server_errors, report.schema_violations, report.crashes) == (0, 0, 0), report.failures
    assert {"200", "400", "422"} <= set(report.statuses)
