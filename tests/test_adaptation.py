"""Domain adaptation: reading and chunking a corpus, synthetic-query filters, and ``routehead adapt`` (the package's
adaptation, which examples/train_on_my_corpus.py wraps) end to end on a tiny corpus with the real default model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from routehead_rag import RouteHeadReranker
from routehead_rag.cli import main
from routehead_rag.data.corpus import chunk_corpus, read_corpus
from routehead_rag.data.datasets import load_qrels
from routehead_rag.router import RouterEnsemble
from routehead_rag.training.adapt import adapt, synthetic_qrels, user_queries
from routehead_rag.training.config import AdaptConfig
from routehead_rag.training.synthetic import filter_queries, longest_common_run, text_problem

ROOT = Path(__file__).resolve().parents[1]
CRANFIELD = (ROOT / ".." / "shared" / "data" / "classic" / "cranfield").resolve()
needs_cranfield = pytest.mark.skipif(not CRANFIELD.is_dir(), reason=f"shared Cranfield data not found at {CRANFIELD}")


def test_read_corpus_from_text_files_jsonl_and_beir(tmp_path):
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    (tmp_path / "notes" / "a.txt").write_text("Scurvy comes from a lack of vitamin C.")
    (tmp_path / "notes" / "sub" / "b.md").write_text("# Rickets\nA lack of vitamin D.")
    (tmp_path / "notes" / "empty.txt").write_text("  \n")
    (tmp_path / "notes" / "image.png").write_bytes(b"\x89PNG")
    assert read_corpus(tmp_path / "notes") == {"a.txt": {"title": "a", "text": "Scurvy comes from a lack of vitamin C."},
                                               "sub/b.md": {"title": "b", "text": "# Rickets\nA lack of vitamin D."}}
    rows = [{"id": 1, "text": "one", "title": "T"}, {"_id": "2", "text": "two"}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert read_corpus(tmp_path / "docs.jsonl") == {"1": {"title": "T", "text": "one"}, "2": {"title": "", "text": "two"}}
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text(json.dumps({"_id": "d", "title": "", "text": "beir text"}))
    assert read_corpus(tmp_path / "beir") == {"d": {"title": "", "text": "beir text"}}


@needs_cranfield
def test_read_corpus_reads_only_cranfield_documents():  # 1400 records, two without text
    corpus = read_corpus(CRANFIELD)
    assert len(corpus) == 1398 and corpus["1"]["title"].startswith("experimental investigation of the aerodynamics")


def test_read_corpus_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no document with text"):
        read_corpus(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt cannot be read as UTF-8"):
        read_corpus(tmp_path / "bad")
    (tmp_path / "dup.jsonl").write_text('{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n')
    with pytest.raises(ValueError, match="repeats the id 'x'"):
        read_corpus(tmp_path / "dup.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"id": "x", "text": "a"}\n{"id": \n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2 is not valid JSON"):
        read_corpus(tmp_path / "broken.jsonl")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF")
    with pytest.raises(ValueError, match="give a folder of .txt/.md files"):
        read_corpus(tmp_path / "doc.pdf")


def test_chunks_are_even_bounded_and_stably_named():
    words = [f"w{i}" for i in range(250)]
    corpus = {"long": {"title": "L", "text": " ".join(words)}, "short": {"title": "", "text": "just a few words"}}
    chunks, parent = chunk_corpus(corpus, chunk_words=100)
    assert list(chunks) == ["long#0", "long#1", "long#2", "short"]
    assert [len(c["text"].split()) for c in chunks.values()] == [84, 84, 82, 4]
    assert " ".join(chunks[f"long#{k}"]["text"] for k in range(3)).split() == words  # nothing lost or reordered
    assert chunks["long#1"]["title"] == "L" and parent == {"long#0": "long", "long#1": "long", "long#2": "long",
                                                          "short": "short"}
    assert chunk_corpus(corpus, chunk_words=100) == (chunks, parent)


def test_synthetic_query_filters():
    passage = "The boundary layer on a flat plate thickens downstream as the skin friction falls with distance."
    assert text_problem("What makes a boundary layer grow thicker?", passage) is None
    assert text_problem("Why?", passage) == "shorter than 3 words"
    assert text_problem(" ".join(["word"] * 41), passage) == "longer than 40 words"
    assert text_problem("The boundary layer on a flat plate thickens downstream?", passage) == "mostly copied from its passage"
    assert text_problem("Does the plate of the layer of the plate of the layer of the plate thicken?", passage) == "repeats itself"
    # the worked example's question (SmolLM2 wrote it again for 11 of 320 SciFact passages) is dropped; a phrase is not
    example = "What disease is caused by a lack of vitamin C?"
    assert text_problem(example, passage) == "copied from the worked example"
    assert text_problem("What is caused by a thick boundary layer?", passage) is None
    assert longest_common_run("a b c d".split(), "x b c d y a".split()) == 3
    passages = {c: {"title": "", "text": passage} for c in ("p1", "p2", "p3", "p4")}
    queries = {"p1": "What makes a boundary layer grow thicker?", "p2": "what makes a Boundary Layer grow thicker",
               "p3": "How does skin friction change along a plate?", "p4": "Why?"}
    candidates = {"p1": ["p9", "p1"], "p2": ["p2"], "p3": ["p1", "p2"], "p4": ["p4"]}
    kept, dropped = filter_queries(queries, passages, candidates)
    assert kept == {"p1": queries["p1"]}
    assert dropped == Counter({"duplicate of another question": 1, "BM25 does not find its passage among the candidates": 1,
                               "shorter than 3 words": 1})


def test_qrels_in_trec_and_beir_formats(tmp_path):
    (tmp_path / "trec.txt").write_text("q1 0 d1 2\nq1 0 d2 0\n")
    (tmp_path / "beir.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n")
    assert load_qrels(tmp_path / "trec.txt") == load_qrels(tmp_path / "beir.tsv") == {"q1": {"d1": 2, "d2": 0}}
    (tmp_path / "bad2.tsv").write_text("q2\td2\t1\nq1\td1\thigh\n")
    with pytest.raises(ValueError, match=r"bad2.tsv:2: the relevance 'high' is not an integer"):
        load_qrels(tmp_path / "bad2.tsv")


def test_judgements_of_a_document_reach_all_its_passages(tmp_path, capsys):
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "text": "lift"}\n{"_id": "q2", "text": "drag"}\n{"id": "q3", "text": "x"}\n')
    (tmp_path / "qrels.txt").write_text("q1 0 long 2\nq2 0 short#0 1\nq9 0 long 1\n")
    parent = {"long#0": "long", "long#1": "long", "short#0": "short"}
    queries, qrels = user_queries(tmp_path / "q.jsonl", tmp_path / "qrels.txt", parent)
    assert queries == {"q1": "lift", "q2": "drag"}  # q3 has no judgement
    assert qrels["q1"] == {"long#0": 2, "long#1": 2} and qrels["q2"] == {"short#0": 1}
    # a synthetic question's relevant passages are its source document's, as for a judged document
    assert synthetic_qrels(["long#1", "short#0"], parent) == {"syn:long#1": {"long#0": 1, "long#1": 1},
                                                              "syn:short#0": {"short#0": 1}}
    assert main(["adapt", "--corpus", "c", "--out", "o", "--queries", str(tmp_path / "q.jsonl")]) == 2
    assert "--queries and --qrels go together" in capsys.readouterr().err
    assert main(["adapt", "--corpus", "c", "--out", "o", "--held-out", "1.5"]) == 2
    assert "--held-out must be a fraction between 0 and 1" in capsys.readouterr().err


def test_adapt_refuses_a_corpus_too_small_or_empty(tmp_path, capsys):
    (tmp_path / "small").mkdir()
    for i in range(5):
        (tmp_path / "small" / f"{i}.txt").write_text(f"document {i} about wings")
    with pytest.raises(ValueError, match=r"5 passages are too few to train on: at least 40 are needed"):
        adapt(tmp_path / "small", tmp_path / "r")
    (tmp_path / "empty").mkdir()
    assert main(["adapt", "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "holds no document with text" in capsys.readouterr().err


def test_the_example_script_is_the_adapt_command():
    script = ROOT / "examples" / "train_on_my_corpus.py"
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: routehead adapt" in shown and "--corpus" in shown and "--max-chunks" in shown


@needs_cranfield
def test_adapt_end_to_end_on_a_tiny_corpus_then_resumes(tmp_path, monkeypatch, capsys, default_reranker):
    """40 Cranfield abstracts as .txt files, synthetic queries by the real default model, a router out; < 1 minute."""
    corpus = read_corpus(CRANFIELD)
    folder = tmp_path / "corpus"
    folder.mkdir()
    for doc_id in random.Random(1).sample(sorted(corpus), 40):
        (folder / f"cran{doc_id}.txt").write_text(corpus[doc_id]["text"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the backbone is already loaded by the fixture
    argv = ["adapt", "--corpus", str(folder), "--out", str(tmp_path / "router"), "--chunk-words", "80", "--max-chunks",
            "32", "--max-queries", "32", "--depth", "5", "--routers", "2"]  # two averaged routers: the ensemble, quickly
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "writing 32 with SmolLM2-135M-Instruct" in printed and "held-out queries (never trained on)" in printed

    config = json.loads((tmp_path / "router" / "config.json").read_text())
    adaptation = config["training"]["adaptation"]
    report = adaptation["queries"]
    assert report["source"] == "synthetic" and report["written"] == 32
    assert report["kept"] + sum(report["dropped"].values()) == 32 and report["kept"] >= 20
    held = adaptation["held_out"]
    assert held["queries"] >= 4 and set(held["ndcg@10"]) == {"bm25", "default_router", "adapted_router"}
    assert all(0.0 <= v <= 1.0 for v in held["ndcg@10"].values())
    assert len(held["ndcg@10_of_each_router"]) == 2
    assert len(config["members"]) == config["training"]["members"] == 2
    recorded = config["training"]["config"]  # every setting, the defaults included, as the router was trained
    assert recorded == {**vars(AdaptConfig()), "chunk_words": 80, "max_chunks": 32, "max_queries": 32, "depth": 5,
                        "routers": 2}
    for seed, member in enumerate(config["members"]):
        assert member["training"]["warm_start"] is True
        by_weight = member["training"]["fusion_weight_cv_ndcg@10"]  # BM25's weight chosen by cross-validation
        chosen = member["training"]["fusion_weight"]
        assert len(by_weight) == 4 and by_weight[str(chosen)] == max(by_weight.values())
        assert f"router {seed + 1}/2 (seed {seed}): fusion weight of BM25's order {chosen}" in printed

    adapted = RouteHeadReranker(router=tmp_path / "router")
    assert isinstance(adapted.router, RouterEnsemble) and adapted.mode == "routed"
    results = adapted.rerank("what is the effect of slip on heat transfer?", ["heat transfer with slip flow", "ships"])
    assert sorted(r.index for r in results) == [0, 1]

    with pytest.raises(ValueError, match="already holds a router"):
        adapt(folder, tmp_path / "router", AdaptConfig(chunk_words=80, max_chunks=32, max_queries=32, depth=5))
    # a second run continues from the written queries and the cache (one router: it is quicker)
    assert main([*argv, "--overwrite", "--routers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "32 of 32 already written; writing 0" in printed and "computing" not in printed


@needs_cranfield
def test_features_of_synthetic_questions_over_a_datasets_corpus(tmp_path, monkeypatch, capsys, default_reranker):
    """`routehead features --synthetic N`: the model writes questions over the dataset's corpus (as adapt does), BM25
    finds their candidates among its passages, and their features are cached; a second run writes nothing."""
    corpus = read_corpus(CRANFIELD)
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = random.Random(2).sample(sorted(corpus), 30)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "title": "", "text": corpus[d]["text"]})
                                                   for d in docs))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "heat transfer"}))
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq\t{docs[0]}\t1\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["features", "--dataset", str(folder), "--synthetic", "4", "--depth", "5"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "writing 8 with SmolLM2-135M-Instruct" in printed
    cached = int(printed.strip().splitlines()[-1].split()[0])
    assert 1 <= cached <= 4 and "+synthetic cached in" in printed.splitlines()[-1]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "writing" not in printed and "computing" not in printed  # the questions and their features are kept
