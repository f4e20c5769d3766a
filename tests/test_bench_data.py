"""The benchmark data layer: metrics against ir_measures, the four loaders, sampling, and checks on the shared data."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from routehead_rag.bench.runner import MethodResult, _time_reranks, format_table, paired_difference, run_bench
from routehead_rag.data import bm25_candidates, evaluate, load_dataset, load_trec_run, per_query, sample_queries
from routehead_rag.data.datasets import Dataset, ensure_ir_datasets_home
from routehead_rag.data.first_stage import first_stage_candidates
from routehead_rag.data.metrics import ranking, rr_at_k

SHARED = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared evaluation data not found at {SHARED}")

# Graded labels, 0 and -1 labels, score ties, a judged query with no relevant document (q3), a judged query the run
# lacks (q4), a run query nobody judged (q5), a relevant document below the cutoff (q2).
QRELS = {"q1": {"d1": 3, "d2": 2, "d3": 0, "d4": 1, "d9": 2}, "q2": {"d5": 1, "d6": -1, "d2": 2},
         "q3": {"d7": 0}, "q4": {"d1": 1}}
RUN = {"q1": {"d1": 1.0, "d2": 2.0, "d3": 2.0, "d4": 0.5, "d5": 2.0, "d0": 0.1},
       "q2": {**{f"x{i:02d}": 10.0 - i / 10 for i in range(10)}, "d6": 12.0, "d5": 9.5, "d2": 9.0},
       "q3": {"d7": 1.0, "d8": 0.5}, "q5": {"d1": 1.0}}


def _ir_measures(names, run):
    ir_measures = pytest.importorskip("ir_measures")
    measures = [ir_measures.parse_measure(name) for name in names]
    per = {(m.query_id, str(m.measure)): m.value for m in ir_measures.iter_calc(measures, QRELS, run)}
    return per, {str(k): v for k, v in ir_measures.calc_aggregate(measures, QRELS, run).items()}


def _assert_same(run, names, k):
    per, agg = _ir_measures(names, run)
    ours = per_query(run, QRELS, k)
    assert set(ours) == set(QRELS)
    for (qid, name), value in per.items():
        assert ours[qid][name] == pytest.approx(value, abs=1e-9), (qid, name)
    means = evaluate(run, QRELS, k)
    for name in names:
        assert means[name] == pytest.approx(agg[name], abs=1e-9), name


def test_ndcg_and_recall_equal_ir_measures_with_ties():
    _assert_same(RUN, ["nDCG@10", "R@10"], 10)
    _assert_same(RUN, ["nDCG@3", "R@3"], 3)


def test_all_three_equal_ir_measures_on_a_ranked_run():
    ranked = {qid: ranking(hits) for qid, hits in RUN.items()}
    untied = {qid: {d: float(-rank) for rank, d in enumerate(docs)} for qid, docs in ranked.items()}
    _assert_same(untied, ["nDCG@10", "R@10", "RR@10"], 10)
    assert evaluate(ranked, QRELS) == evaluate(untied, QRELS) == evaluate(RUN, QRELS)


def test_paired_difference_and_its_standard_error():
    diff = paired_difference({"a": 1.0, "b": 0.5, "c": 0.0, "extra": 1.0}, {"a": 0.5, "b": 0.5, "c": 0.5})
    assert diff == {"delta": 0.0, "se": round(0.5 / 3 ** 0.5, 4)}  # differences +0.5, 0, -0.5 on the common queries


def test_bench_rejects_a_baseline_it_does_not_run():
    data = Dataset("toy", {"q": "text"}, {"q": {"d": 1}}, corpus=None, candidates={"q": ["d"]})
    with pytest.raises(ValueError, match="--baseline icr is not one of the methods run"):
        run_bench(data, ["bm25"], 10, baseline="icr")


def test_rr_breaks_ties_as_trec_eval():
    per, _ = _ir_measures(["RR"], RUN)  # pytrec_eval's recip_rank, no cutoff
    for qid in QRELS:
        assert rr_at_k(ranking(RUN.get(qid, {})), QRELS[qid], k=1000) == pytest.approx(per[(qid, "RR")])
    assert ranking(RUN["q1"])[:3] == ["d5", "d3", "d2"]  # score desc, then docid desc


def test_evaluate_rejects_disjoint_ids():
    with pytest.raises(ValueError, match="query ids"):
        evaluate({"1": ["d1"]}, {"q1": {"d1": 1}})


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


@pytest.fixture
def beir_dir(tmp_path):
    _write(tmp_path / "corpus.jsonl", "\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "Cats", "text": "cats purr"}, {"_id": "d2", "title": "", "text": "dogs bark"}]))
    _write(tmp_path / "queries.jsonl", "\n".join(json.dumps(q) for q in [
        {"_id": "q1", "text": "do cats purr"}, {"_id": "q2", "text": "do dogs bark"},
        {"_id": "q3", "text": "unjudged"}]))
    _write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    _write(tmp_path / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq2\td2\t2\n")
    return tmp_path


def test_beir_folder(beir_dir):
    data = load_dataset(str(beir_dir))
    assert data.queries == {"q1": "do cats purr"}
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}}
    assert data.corpus == {"d1": {"title": "Cats", "text": "cats purr"}, "d2": {"title": "", "text": "dogs bark"}}
    assert data.candidates is None
    assert load_dataset(str(beir_dir), split="train").qrels == {"q2": {"d2": 2}}


def test_beir_folder_errors_and_qrels_override(beir_dir):
    with pytest.raises(ValueError, match=r"no qrels/dev.tsv.*\['test', 'train'\]"):
        load_dataset(str(beir_dir), split="dev")
    qrels = _write(beir_dir / "extra.qrels", "q3 0 d2 1\n")
    assert load_dataset(str(beir_dir), split="dev", qrels_path=qrels).queries == {"q3": "unjudged"}


def test_rank_llm_file(tmp_path):
    entries = [{"query": "how long do fleas live", "hits": [
                   {"content": "second", "qid": 7, "docid": "b", "rank": 2, "score": 5.0},
                   {"content": "first", "qid": 7, "docid": "a", "rank": 1, "score": 9.0}]},
               {"query": {"text": "what is wifi", "qid": "8"}, "hits": [
                   {"content": "wifi is", "qid": 8, "docid": "c", "rank": 1, "score": 3.0}]},
               {"query": "unjudged", "hits": [{"content": "x", "qid": 9, "docid": "d", "rank": 1, "score": 1.0}]}]
    path = _write(tmp_path / "run.rank_llm.json", json.dumps(entries))
    qrels = _write(tmp_path / "qrels.txt", "7 0 a 0\n7 0 b 3\n8 0 c 1\n100 0 z 2\n")
    with pytest.raises(ValueError, match="qrels_path"):
        load_dataset(str(path))
    data = load_dataset(str(path), qrels_path=qrels)
    assert data.queries == {"7": "how long do fleas live", "8": "what is wifi"}
    assert data.candidates == {"7": ["a", "b"], "8": ["c"]}
    assert data.corpus["b"] == {"title": "", "text": "second"}
    assert data.qrels == {"7": {"a": 0, "b": 3}, "8": {"c": 1}}


def test_cranfield_folder(tmp_path):
    crlf = "\r\n"  # as the real files
    docs = (".I 1\n.T\nwing in a\nslipstream .\n.A\nbrenckman,m.\n.B\nj. ae. 25.\n.W\nexperimental wing\n  study .\n"
            ".I 2\n.T\nflow\n.A\n.B\n.W\nboundary layer .\n")
    _write(tmp_path / "cran.all.1400", docs, crlf)
    _write(tmp_path / "cran.qry", ".I 001\n.W\nwhat similarity laws\nmust be obeyed .\n.I 004\n.W\nheat conduction .\n",
           crlf)
    _write(tmp_path / "cranqrel", "1 2 1 \n1 1 4\n2 1 3\n2 2 -1\n2 3 5", crlf)
    data = load_dataset(str(tmp_path))
    assert data.queries == {"1": "what similarity laws must be obeyed .", "2": "heat conduction ."}  # file order
    assert data.corpus["1"] == {"title": "wing in a slipstream .", "text": "experimental wing study ."}
    assert data.qrels == {"1": {"2": 4, "1": 1}, "2": {"1": 2, "2": 0, "3": 0}}


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p / "nowhere.json", "does not exist"),
    (lambda p: _write(p / "notes.txt", "hello"), "unrecognised file format"),
    (lambda p: _write(p / "folder" / "x.txt", "hello").parent, "neither a BEIR folder"),
])
def test_load_errors(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(str(make(tmp_path)))


def test_load_trec_run_sorts_by_score_then_rank(tmp_path):
    path = _write(tmp_path / "run.trec", "1 Q0 a 3 1.0 t\n1 Q0 b 1 2.0 t\n1 Q0 c 2 1.0 t\n2 Q0 z 1 0.5 t\n")
    assert load_trec_run(path) == {"1": ["b", "c", "a"], "2": ["z"]}


def test_sample_queries_is_fixed_and_sorted():
    qids = [str(i) for i in range(50)]
    data = Dataset("toy", {q: f"text {q}" for q in qids}, {q: {"d": 1} for q in qids}, corpus=None,
                   candidates={q: ["d"] for q in qids})
    sample = sample_queries(data, 10, seed=3)
    assert list(sample.queries) == sorted(sample.queries) and len(sample.queries) == 10
    assert set(sample.qrels) == set(sample.candidates) == set(sample.queries)
    assert sample.queries == sample_queries(data, 10, seed=3).queries != sample_queries(data, 10, seed=4).queries
    assert len(sample_queries(data, 500).queries) == 50
    with pytest.raises(ValueError):
        sample_queries(data, 0)


@pytest.mark.filterwarnings("ignore:ir_datasets was imported")
def test_ir_datasets_home_is_copied_once(tmp_path, monkeypatch):
    source = _write(tmp_path / "shared" / "ir_datasets_home" / "beir" / "x" / "source.zip", "zip").parent
    source.chmod(0o555)
    monkeypatch.setenv("ROUTEHEAD_SHARED_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("IR_DATASETS_HOME", "")  # recorded, so the variable the helper sets is undone afterwards
    home = ensure_ir_datasets_home()
    assert home == tmp_path / "cache" / "routehead-rag" / "ir_datasets" and os.environ["IR_DATASETS_HOME"] == str(home)
    copied = home / "beir" / "x" / "source.zip"
    assert copied.read_text() == "zip" and os.access(copied.parent, os.W_OK)
    copied.write_text("derived files stay")
    monkeypatch.setenv("IR_DATASETS_HOME", "")
    ensure_ir_datasets_home()
    assert copied.read_text() == "derived files stay"


@needs_shared
def test_dl19_rank_llm_bm25_order():
    dl19 = SHARED / "trec-dl" / "dl19"
    data = load_dataset(str(dl19 / "bm25_top100_with_passages.rank_llm.json"),
                        qrels_path=dl19 / "qrels.dl19-passage.txt")
    assert len(data.queries) == 43 and all(len(c) == 100 for c in data.candidates.values())
    assert evaluate(data.candidates, data.qrels)["nDCG@10"] == pytest.approx(0.5058, abs=1e-3)


@needs_shared
def test_scifact_via_ir_datasets(tmp_path, monkeypatch):
    if importlib.util.find_spec("ir_datasets") is None:
        pytest.skip("ir_datasets is not installed (pip install 'routehead-rag[bench]')")
    if "ir_datasets" in sys.modules:
        pytest.skip("ir_datasets was imported by an earlier test, so its home can no longer be pointed at a temp copy")
    monkeypatch.setenv("ROUTEHEAD_SHARED_DATA", str(SHARED))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("IR_DATASETS_HOME", "")
    data = load_dataset("beir/scifact/test")
    assert len(data.queries) == 300 and sum(map(len, data.qrels.values())) == 339 and len(data.corpus) == 5183


@needs_shared
def test_scifact_bm25_matches_pyserini(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = load_dataset(str(SHARED / "beir" / "scifact"))
    candidates, scores = bm25_candidates(data, depth=100)
    assert all(len(c) == len(s) <= 100 for c, s in zip(candidates.values(), scores.values()))
    assert all(s == sorted(s, reverse=True) for s in scores.values())
    ndcg = evaluate(candidates, data.qrels)["nDCG@10"]
    assert ndcg == pytest.approx(0.6789, abs=0.02)  # Pyserini BM25 flat; bm25s measures 0.6863
    assert bm25_candidates(data, depth=100)[0] == candidates  # second call loads the cached index
    assert len(list((tmp_path / "routehead-rag" / "bm25").iterdir())) == 1


def test_bench_table_prints_metrics_to_four_decimals():
    metrics = {"ndcg@10": 0.37, "recall@10": 0.5, "recall@20": 1.0, "mrr@10": 0.25, "latency_ms_median": None,
               "latency_ms_p90": None, "peak_rss_mb": 1202.14}
    summary = {"dataset": "d", "n_queries": 2, "depth": 20, "model": "m", "baseline": "bm25", "methods": {"bm25": metrics}}
    assert format_table(summary).splitlines()[2].split() == ["bm25", "0.3700", "-", "0.5000", "1.0000", "0.2500", "-",
                                                             "-", "1202.1"]


def test_latency_calls_take_turns():
    """Each query's rerank calls rotate through the methods, so no method is always timed first (warm-up) or last."""
    calls: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def rerank(self, query: str, documents: list) -> None:
            calls.append(f"{self.name}:{query}")

    results = {n: MethodResult() for n in ("a", "b", "c")}
    _time_reranks({n: Recorder(n) for n in results}, [(q, ["doc"]) for q in ("q1", "q2", "q3")], results)
    assert calls == ["a:q1", "b:q1", "c:q1", "b:q2", "c:q2", "a:q2", "c:q3", "a:q3", "b:q3"]
    assert all(len(r.latencies_s) == 3 and r.peak_rss_mb > 0 for r in results.values())


def test_the_first_stage_drops_hits_that_are_the_query_itself(tmp_path, monkeypatch):
    """BEIR's ignore_identical_ids: a corpus that holds its own queries (ArguAna, Quora) would put each query first."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    corpus = {"a1": {"title": "", "text": "is nuclear power safe and clean energy"},
              "a2": {"title": "", "text": "nuclear power plants produce clean energy safely"},
              "a3": {"title": "", "text": "wind energy is clean"},
              "a4": {"title": "", "text": "solar panels on roofs"}}
    data = Dataset("arguana-like", {"a1": corpus["a1"]["text"], "q9": "solar roofs"},
                   {"a1": {"a2": 1}, "q9": {"a4": 1}}, corpus=corpus)
    first = first_stage_candidates(data, depth=2)
    assert first.candidates["a1"] == ["a2", "a3"] and first.self_hits == 1  # a1 itself ranked first, and dropped
    assert len(first.scores["a1"]) == 2 and first.scores["a1"][0] >= first.scores["a1"][1]
    given = Dataset("given", data.queries, data.qrels, corpus=None, candidates={"a1": ["a1", "a2", "a3"], "q9": ["a4"]})
    assert first_stage_candidates(given, depth=2).candidates["a1"] == ["a2", "a3"]
    assert first_stage_candidates(given, depth=2).self_hits == 1
