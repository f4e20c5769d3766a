"""Property-based fuzzing of ``routehead serve`` from its own OpenAPI schema, with Schemathesis, on loopback.

Schemathesis reads ``/openapi.json`` and Hypothesis generates requests for every operation: bodies that fit the
schema (positive) and bodies that break it (negative: wrong types, missing fields, out-of-range numbers). Every
response is held to Schemathesis' checks: no 5xx, a status code the schema documents, the documented content type
and body schema, headers, schema-breaking input refused with a 4xx, and methods the route does not take refused with
405. ``requests`` counts what was sent, ``server_errors`` the 5xx, ``schema_violations`` the other failed checks,
``crashes`` the requests that got no answer; every count should be 0 but ``requests``. Bounded: at most
``--examples`` per operation and mode, and ``--seconds`` in all.

The engine is the real default model by default (``--tiny``: a random 4-layer Llama with the default tokenizer,
for the mechanics in seconds; what ``make test`` runs, through ``tests/test_fuzz.py``).

    python benchmarks/fuzz_server.py --examples 60 --seconds 900 --json fuzz.json
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.serve import ServeSettings, create_app, protocol_for

# every built-in check but positive_data_acceptance, which wants a 2xx for every body that fits the schema: the
# engine refuses some of those on purpose with a documented 4xx (a blank query, over the token limits)
SKIPPED_CHECKS = {"positive_data_acceptance"}


@dataclass
class FuzzReport:
    """What the fuzzing sent and found."""

    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    crashes: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # the first few, to read
    seconds: float = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """The app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                                         http=protocol_for(app)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the server did not start within 60 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)


def fuzz(url: str, examples: int, seconds: float, seed: int = 0) -> FuzzReport:
    """Fuzz the server at ``url`` (loopback) from its OpenAPI schema: at most ``examples`` requests per operation and
    generation mode, and ``seconds`` in all (the operations left when time runs out are sent none)."""
    load_all_checks()
    skipped = CHECKS.get_by_names(sorted(SKIPPED_CHECKS))
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    report, statuses = FuzzReport(), Counter()
    start = time.perf_counter()
    session = httpx.Client(timeout=600)
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.perf_counter() - start > seconds:
                break

            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case) -> None:
                if time.perf_counter() - start > seconds:
                    return
                report.requests += 1
                try:
                    response = case.call(base_url=url, timeout=600)
                except Exception as err:  # no answer at all: the server dropped the connection or died
                    report.crashes += 1
                    report.failures.append(f"{operation.label} ({mode}): no response: {type(err).__name__}: {err}")
                    return
                statuses[str(response.status_code)] += 1
                if response.status_code >= 500:
                    report.server_errors += 1
                try:
                    case.validate_response(response, excluded_checks=skipped)
                except (AssertionError, FailureGroup) as err:  # a failed check: one failure, or a group
                    if response.status_code < 500:
                        report.schema_violations += 1
                    if len(report.failures) < 10:
                        report.failures.append(f"{operation.label} ({mode}) -> {response.status_code}: "
                                               f"{str(err).strip()[:600]}")

            try:
                one()
            except Unsatisfiable:  # nothing to break: an operation without parameters or body has no negative case
                pass
    session.close()
    report.statuses = dict(sorted(statuses.items()))
    report.seconds = round(time.perf_counter() - start, 1)
    return report


def tiny_engine(folder: Path) -> RouteHeadReranker:
    """A random-weight 4-layer Llama with the default model's tokenizer (what the tests' ``tiny_llama_dir`` is)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = RouteHeadReranker().backbone.tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return RouteHeadReranker(folder, Recipe(mode="all"), dtype="float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="requests per operation and generation mode")
    parser.add_argument("--seconds", type=float, default=900, help="time for the whole run")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model instead of the default one")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = tiny_engine(Path(folder)) if args.tiny else RouteHeadReranker()
        with LoopbackServer(create_app(engine, ServeSettings(max_documents=50))) as running:
            report = fuzz(running.url, args.examples, args.seconds)
    summary = {"model": "tiny random" if args.tiny else engine.backbone.name, "mode": engine.mode,
               "examples_per_operation_and_mode": args.examples, **asdict(report)}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
