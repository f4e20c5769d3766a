"""RouteHead training mechanics: vectorised nDCG, the head-set search, router artifacts, and the CLIs end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch

from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.cli import main
from routehead_rag.data.metrics import ndcg_at_k
from routehead_rag.embedding import query_embedding
from routehead_rag.features import QueryFeatures, ideal_dcg
from routehead_rag.router import DEFAULT_ROUTER, Router, RouterEnsemble, load_router
from routehead_rag.scoring import fuse, rank_prior, standardize
from routehead_rag.training.search import best_head_set, ndcg_at_10, set_ndcg
from routehead_rag.training.train import Prepared, fit_shared_heads, mean_ndcg


def test_vectorised_ndcg_equals_the_metrics_module():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(3, 25)
        gains = [rng.choice([0, 0, 0, 1, 2, 3]) for _ in range(n)]
        extra = [rng.choice([1, 2]) for _ in range(rng.randint(0, 3))]  # relevant documents outside the candidates
        scores = torch.randn(1, n)
        docs = [f"d{i}" for i in range(n)]
        qrels = {**{d: g for d, g in zip(docs, gains)}, **{f"x{i}": g for i, g in enumerate(extra)}}
        ranked = [docs[i] for i in sorted(range(n), key=lambda i: (-scores[0, i].item(), i))]
        expected = ndcg_at_k(ranked, qrels, 10)
        got = ndcg_at_10(scores, torch.tensor(gains, dtype=torch.float32), ideal_dcg(list(qrels.values()))).item()
        assert got == pytest.approx(expected, abs=1e-9)


def test_search_finds_a_planted_head_set_and_stays_small():
    torch.manual_seed(0)
    n_docs, gains = 20, torch.zeros(20)
    gains[[3, 11]] = torch.tensor([2.0, 1.0])
    ideal = ideal_dcg([2, 1])
    z = torch.randn(32, n_docs) * 0.5
    z[:, 0] = 5.0  # the other heads put a non-relevant document first
    z[[5, 9]] = 0.0
    z[5, 3] = 4.0  # head 5 finds the best document but not the second
    z[9, 11], z[9, 8], z[9, 3] = 4.0, 3.0, 2.0  # head 9 puts the second first, a non-relevant one next
    assert max(set_ndcg(z, [h], torch.zeros(n_docs), gains, ideal) for h in range(32)) < 1.0
    chosen, value = best_head_set(z, gains, ideal, torch.zeros(n_docs), max_heads=4)
    assert value == pytest.approx(1.0)
    assert chosen == [5, 9]  # together they are perfect, and a perfect set is not padded
    assert set_ndcg(z, chosen, torch.zeros(n_docs), gains, ideal) == pytest.approx(value)
    one, _ = best_head_set(z, gains, ideal, torch.zeros(n_docs), max_heads=1)
    assert len(one) == 1


def test_shared_part_learns_to_subtract_a_head_that_tracks_position():
    """Head 0 sees the relevant document but also favours early positions; head 1 only favours early positions.
    Signed weights learn to count head 1 against a document, which equal weights on head 0 cannot."""
    rng = torch.Generator().manual_seed(0)
    position = torch.linspace(2.0, 0.0, 20)  # [n_docs]: early documents look relevant to both heads

    def query(i: int) -> QueryFeatures:
        gains = torch.zeros(20)
        gains[int(torch.randint(20, (1,), generator=rng))] = 1.0
        scores = torch.stack([gains + position, position]) + 0.3 * torch.randn(2, 20, generator=rng)  # [2 heads, 20]
        return QueryFeatures(str(i), scores, gains, ideal_dcg(gains.tolist()), torch.randn(2, 2, 4, generator=rng))

    train, val = Prepared.of([query(i) for i in range(80)]), Prepared.of([query(i) for i in range(80, 120)])
    no_routing = ([[0]] * len(train), [[0]] * len(val))  # the routed part: head 0 again
    weights, share, fusion = fit_shared_heads(train, val, [0, 1], {0: 1.0}, no_routing, fusion_weight=0.0)
    assert weights[1] < 0 < weights[0] and sum(map(abs, weights.values())) == pytest.approx(1)
    assert 0 < share <= 1 and fusion == 0.0
    assert mean_ndcg(val, [weights], 0.0) > mean_ndcg(val, [[0]], 0.0) + 0.1
    # kept positive (the default, which holds off the training domain), no head counts against a document
    for start in ({0: 0.5, 1: 0.5}, weights):  # a signed start (a warm start from a signed router) loses its signs
        positive, _, _ = fit_shared_heads(train, val, [0, 1], start, no_routing, 0.0, signed=False)
        assert positive and all(w > 0 for w in positive.values()) and sum(positive.values()) == pytest.approx(1)
        assert mean_ndcg(val, [positive], 0.0) < mean_ndcg(val, [weights], 0.0)


def test_default_router_is_shipped_for_the_default_model_and_routes_before_the_forward(default_reranker):
    assert default_reranker.mode == "routed"
    router = default_reranker.router
    assert isinstance(router, Router)
    weights = default_reranker.select_heads("what causes scurvy?")
    routed = router.heads_for(query_embedding(default_reranker.backbone, "what causes scurvy?"))
    assert len(routed) == router.config.top_k and set(routed) <= set(router.config.candidate_heads)
    shared = router.config.shared_heads  # the learned shared part: positive weights summing to 1
    assert set(weights) == set(routed) | set(shared) and sum(map(abs, weights.values())) <= 1 + 1e-9
    assert 0 < router.config.shared_fraction < 1 and sum(map(abs, shared.values())) == pytest.approx(1)
    share = router.config.shared_fraction  # the blend as trained, not rescaled
    assert weights == pytest.approx({h: share * shared.get(h, 0.0) + (1 - share) / len(routed) * (h in routed)
                                     for h in weights})
    assert min(shared.values()) > 0  # positive: a head only counts for a document (docs/method.md, "Out of domain")
    deepest_qrhead = max(router.config.qrhead_heads) // default_reranker.backbone.n_heads
    assert max(shared) // default_reranker.backbone.n_heads <= deepest_qrhead  # no deeper a forward than QRHead's
    training = router.config.training  # every domain's usable queries: SciFact, DL19, Cranfield, real and synthetic
    assert training["train_queries"] + training["val_queries"] == 397 and len(training["data"]) == 3
    assert router.config.trust  # the first stage's weight per query, learned off domain
    results = default_reranker.rerank("what causes scurvy?", ["Scurvy comes from a lack of vitamin C.", "Ships sail."])
    assert sorted(r.index for r in results) == [0, 1]
    static = RouteHeadReranker(recipe=Recipe(mode="static"))
    assert static.heads == sorted(router.config.qrhead_heads)


def test_the_query_embedding_stops_at_the_layers_asked_for(default_reranker):
    """The router's forward of the query runs only up to its embedding's layer, and gives the same numbers."""
    backbone = default_reranker.backbone
    full = query_embedding(backbone, "what causes scurvy?")  # [n_layers + 1, 2, hidden]
    layers = backbone.model.get_decoder().layers
    ran = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, layer in enumerate(layers)]
    try:
        part = query_embedding(backbone, "what causes scurvy?", {0, 10})
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == list(range(10))  # layer 10's input is hidden state 10: layers 0..9 ran, no more
    assert torch.equal(part[[0, 10]], full[[0, 10]]) and part[[1, 11, 30]].isnan().all()
    assert torch.equal(query_embedding(backbone, "what causes scurvy?", {30})[30], full[30])  # after the final norm
    with pytest.raises(ValueError, match="within 0..30"):
        query_embedding(backbone, "q", {31})
    assert default_reranker.router.embed_layers == {default_reranker.router.config.embed_layer}


def test_a_router_saved_before_the_shared_part_was_learned_still_loads(tmp_path, default_reranker):
    default_reranker.router.save(tmp_path / "router")
    saved = json.loads((tmp_path / "router" / "config.json").read_text())
    old_names = {"qrhead_heads": "static_heads", "shared_fraction": "static_weight"}
    # as written before: no learned weights, so the QRHead-style heads at equal weights, a fixed share; older names
    config = {old_names.get(k, k): v for k, v in saved.items() if k != "shared_heads"}
    config["static_weight"] = 0.25
    (tmp_path / "router" / "config.json").write_text(json.dumps(config))
    old = load_router(tmp_path / "router")
    weights = old.weights_for(query_embedding(default_reranker.backbone, "what causes scurvy?"))
    routed = old.heads_for(query_embedding(default_reranker.backbone, "what causes scurvy?"))
    share = 0.25 / len(config["static_heads"])
    assert all(weights[h] == pytest.approx(share) for h in set(config["static_heads"]) - set(routed))
    assert set(weights) == set(routed) | set(config["static_heads"])


def test_router_for_another_backbone_is_refused(tmp_path, default_reranker, tiny_llama_dir):
    default_reranker.router.save(tmp_path / "router")
    with pytest.raises(ValueError, match="this router was trained for SmolLM2-135M-Instruct"):
        RouteHeadReranker(tiny_llama_dir, router=tmp_path / "router")
    (tmp_path / "router" / "router.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="corrupt"):
        RouteHeadReranker(router=tmp_path / "router")
    with pytest.raises(FileNotFoundError, match="not a router folder"):
        RouteHeadReranker(router=tmp_path)


def test_an_ensemble_scores_as_the_mean_of_its_routers_and_saves_as_one_folder(tmp_path, default_reranker, tiny_llama_dir):
    first = default_reranker.router
    second = load_router(DEFAULT_ROUTER)
    second.config.fusion_weight, second.config.shared_fraction = 0.9, 0.5  # another member: other shares
    second.model.bias.data = -second.model.bias.data  # and other routed heads
    ensemble = RouterEnsemble([first, second])
    ensemble.save(tmp_path / "ensemble")
    reranker = RouteHeadReranker(router=tmp_path / "ensemble")
    loaded = reranker.router
    assert isinstance(loaded, RouterEnsemble) and len(loaded.members) == 2
    assert reranker.fusion_weight == pytest.approx((first.config.fusion_weight + 0.9) / 2)

    embedding = query_embedding(default_reranker.backbone, "what causes scurvy?")
    assert reranker.select_heads("what causes scurvy?") == pytest.approx(loaded.weights_for(embedding))  # as saved
    head_scores = torch.randn(default_reranker.backbone.n_layers * default_reranker.backbone.n_heads, 12)
    prior = rank_prior(12)
    # the mean of the routers' scores, before the guard of a clear attention winner (scoring.with_prior)
    alone = [fuse(head_scores, m.weights_for(embedding), prior, 0.0) + m.fusion_weight * standardize(prior)
             for m in (first, second)]
    together = fuse(head_scores, loaded.weights_for(embedding), prior, 0.0) + loaded.fusion_weight * standardize(prior)
    assert torch.allclose(together, (alone[0] + alone[1]) / 2)
    assert set(first.heads_for(embedding)) != set(second.heads_for(embedding))

    with pytest.raises(ValueError, match="this router was trained for SmolLM2-135M-Instruct"):
        RouteHeadReranker(tiny_llama_dir, router=tmp_path / "ensemble")
    config = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    config["members"][1]["candidate_heads"] = config["members"][1]["candidate_heads"][:-1]  # weights no longer fit
    (tmp_path / "ensemble" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="retrain the router"):
        load_router(tmp_path / "ensemble")
    with pytest.raises(ValueError, match="at least one router"):
        RouterEnsemble([])


def _mini_beir(folder):
    """A small BEIR-style folder: 24 documents on four topics, 12 train and 8 test queries."""
    topics = {"scurvy": "vitamin C deficiency scurvy sailors citrus", "rickets": "vitamin D bones rickets children sunlight",
              "ships": "clipper ships sails ocean tea trade", "bees": "honey bees pollen hive flowers"}
    corpus, queries, qrels = [], [], {"train": [], "test": []}
    for t, (topic, words) in enumerate(topics.items()):
        for i in range(6):
            text = " ".join(random.Random(t * 10 + i).sample(words.split() * 3, 12))
            corpus.append({"_id": f"{topic}{i}", "title": topic if i % 2 else "", "text": text})
        for j in range(5):
            qid = f"q{topic}{j}"
            queries.append({"_id": qid, "text": f"what about {topic} and {words.split()[j]}?"})
            qrels["train" if j < 3 else "test"] += [(qid, f"{topic}{j}", 2), (qid, f"{topic}{j + 1}", 1)]
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (folder / "qrels").mkdir()
    for split, rows in qrels.items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(f"{a}\t{b}\t{c}" for a, b, c in rows))
    return folder


def test_train_router_then_bench_end_to_end(tmp_path, tiny_llama_dir, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = _mini_beir(tmp_path / "mini")
    common = ["--dataset", str(data), "--model", str(tiny_llama_dir), "--depth", "8"]
    assert main(["train-router", *common, "--out", str(tmp_path / "router"), "--candidates", "8", "--top-k", "3"]) == 0
    config = json.loads((tmp_path / "router" / "config.json").read_text())
    assert config["backbone"]["n_layers"] == 4 and len(config["candidate_heads"]) == 8 and config["qrhead_heads"]
    assert config["fusion_weight"] == 0.0 and config["embed_layer"] == 1  # the cross-validated defaults: n_layers // 3
    assert 0 < config["shared_fraction"] <= 1 and config["shared_heads"]  # the learned shared part
    assert config["training"]["shared_fraction"] == pytest.approx(config["shared_fraction"], abs=1e-4)
    assert main(["train-router", *common, "--out", str(tmp_path / "auto"), "--candidates", "8", "--fusion-weight", "auto"]) == 0
    auto = json.loads((tmp_path / "auto" / "config.json").read_text())
    by_weight = {float(w): v for w, v in auto["training"]["fusion_weight_cv_ndcg@10"].items()}
    assert sorted(by_weight) == [0.0, 0.25, 0.5, 1.0] and by_weight[auto["training"]["fusion_weight"]] == max(by_weight.values())
    shallow = ["train-router", *common, "--out", str(tmp_path / "shallow"), "--candidates", "8", "--max-layer", "0"]
    assert main([*shallow, "--top-k", "3"]) == 0  # routed heads from layer 0 only: its 4 heads
    assert sorted(json.loads((tmp_path / "shallow" / "config.json").read_text())["candidate_heads"]) == [0, 1, 2, 3]
    capsys.readouterr()
    assert main([*shallow, "--top-k", "5"]) == 2
    assert "only 4 candidate heads in layers 0..0, fewer than the 5 routed per query" in capsys.readouterr().err
    assert main(["train-router", *common, "--out", str(tmp_path / "bad"), "--max-layer", "4"]) == 2
    assert "--max-layer must be within 0..3" in capsys.readouterr().err
    assert main(["detect-heads", *common, "--out", str(tmp_path / "heads.json")]) == 0
    assert json.loads((tmp_path / "heads.json").read_text())["heads"]
    for detector in ("core", "headrank", "selective-icr"):  # the 2025-26 detectors, usable as --heads files
        assert main(["detect-heads", *common, "--detector", detector, "--out", str(tmp_path / f"{detector}.json")]) == 0
        found = json.loads((tmp_path / f"{detector}.json").read_text())
        assert found["heads"] and found["detector"] == detector and found["chosen"]
    window = json.loads((tmp_path / "selective-icr.json").read_text())
    first, last = map(int, window["chosen"]["layers"].split("-"))
    assert window["heads"] == list(range(first * 4, (last + 1) * 4))  # every head of the window (4 per layer)
    assert main(["search-labels", *common, "--out", str(tmp_path / "labels.pt"), "--candidates", "8"]) == 0
    assert torch.load(tmp_path / "labels.pt")["labels"].shape[1] == 8
    capsys.readouterr()
    out = tmp_path / "bench.json"
    argv = ["bench", "--dataset", str(data), "--model", str(tiny_llama_dir), "--depth", "8", "--router", str(tmp_path / "router"),
            "--methods", "bm25,icr,qrhead,routehead", "--json", str(out), "--run-out", str(tmp_path / "runs"),
            "--latency-queries", "2", "--plot", str(tmp_path / "plot.png")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["n_queries"] == 8 and summary["depth"] == 8
    for name in ("bm25", "icr", "qrhead", "routehead"):
        row = summary["methods"][name]
        assert 0.0 <= row["ndcg@10"] <= 1.0 and name in printed
        assert (tmp_path / "runs" / f"{name}.trec").is_file()
        if name != "bm25":
            assert row["latency_ms_median"] > 0
    assert summary["baseline"] == "bm25" and "ndcg@10_vs_baseline" not in summary["methods"]["bm25"] and "vs bm25" in printed
    per_query_ndcg = summary["per_query_ndcg@10"]
    for name in ("icr", "qrhead", "routehead"):
        mean_diff = sum(per_query_ndcg[name][q] - per_query_ndcg["bm25"][q] for q in per_query_ndcg["bm25"]) / 8
        assert summary["methods"][name]["ndcg@10_vs_baseline"]["delta"] == pytest.approx(mean_diff, abs=2e-4)
    heads = summary["methods"]["routehead"]["heads_per_query"]  # 3 routed + the shared part, which may overlap
    assert len(config["shared_heads"]) <= heads["min"] and heads["max"] <= 3 + len(config["shared_heads"])
    assert (tmp_path / "plot.png").stat().st_size > 1000
    assert main(argv) == 0  # the second run reads every query's forward from the cache
    icr_run = (tmp_path / "runs" / "icr.trec").read_text().splitlines()
    assert len({line.split()[4] for line in icr_run}) > 8  # the method's own scores, not n - rank + 1

    # relevance_score: fitted on the training split, written beside the router, read back by the engine
    assert main(["calibrate", *common, "--router", str(tmp_path / "router")]) == 0
    assert "exact model for routed (per_head): relevance = sigmoid(" in capsys.readouterr().out
    assert main(["calibrate", *common, "--mode", "all"]) == 2  # a model with no router folder needs --out
    assert "--out is needed" in capsys.readouterr().err
    assert main(["calibrate", *common, "--mode", "all", "--out", str(tmp_path / "router")]) == 0
    saved = json.loads((tmp_path / "router" / "calibration.json").read_text())
    assert sorted(saved) == ["all/summed", "routed/per_head"] and min(saved["routed/per_head"]["coef"]) >= 0
    routed = RouteHeadReranker(tiny_llama_dir, router=tmp_path / "router")
    results = routed.rerank("what about scurvy?", ["scurvy sailors citrus", "honey bees hive", "tea trade ships"])
    assert all(0 < r.relevance_score < 1 and r.relevance_fit == "exact" for r in results)
    # none beside a model without router
    assert RouteHeadReranker(tiny_llama_dir, Recipe(mode="all")).calibration is None
    icr = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), calibration=tmp_path / "router" / "calibration.json")
    assert icr.rerank("scurvy?", ["scurvy sailors"])[0].relevance_score is not None
    with pytest.raises(ValueError, match="holds no relevance model for this setup"):
        RouteHeadReranker(tiny_llama_dir, Recipe(mode="all", aggregation="per_head"), calibration=tmp_path / "router")
    # across settings: one model for every setup of this backbone without its own, named in the results
    assert main(["calibrate", *common, "--across-settings", "--out", str(tmp_path / "router")]) == 0
    assert "across-settings model for" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="fitted across settings"):
        per_head = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all", aggregation="per_head"),
                                      calibration=tmp_path / "router")
    assert per_head.rerank("scurvy?", ["scurvy sailors", "tea"])[0].relevance_fit == "across-settings"


def test_feature_cache_round_trip(tmp_path):
    from routehead_rag.features import FeatureCache

    cache = FeatureCache(tmp_path)
    features = QueryFeatures("q1", torch.randn(6, 3), torch.tensor([0.0, 1.0, 2.0]), 1.5, torch.randn(3, 2, 4))
    assert cache.get("q1", "query", ["a", "b", "c"]) is None
    cache.put(features, "query", ["a", "b", "c"])
    back = cache.get("q1", "query", ["a", "b", "c"])
    assert torch.equal(back.head_scores, features.head_scores) and back.ideal_dcg == 1.5
    assert cache.get("q1", "query", ["a", "c", "b"]) is None  # other candidates, other entry


def test_cached_features_take_todays_judgements(tmp_path, monkeypatch, tiny_llama_dir):
    from routehead_rag import features as features_module
    from routehead_rag.data.datasets import Dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reranker = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    corpus = {d: {"title": "", "text": f"document {d} about wings"} for d in "abc"}
    candidates = {"q1": ["a", "b", "c"]}
    first = Dataset(name="t", queries={"q1": "wings"}, qrels={"q1": {"b": 1}}, corpus=corpus)
    [computed] = features_module.extract_features(first, candidates, reranker, depth=3)
    monkeypatch.setattr(features_module, "compute_features", lambda *a, **k: pytest.fail("the LLM ran again"))
    judged_again = Dataset(name="t", queries={"q1": "wings"}, qrels={"q1": {"a": 2, "c": 1}}, corpus=corpus)
    [cached] = features_module.extract_features(judged_again, candidates, reranker, depth=3)
    assert torch.equal(cached.head_scores, computed.head_scores)
    assert torch.equal(cached.diffs.values, computed.diffs.values) and torch.equal(cached.diffs.summed(),
                                                                                   computed.diffs.summed())
    assert torch.equal(computed.head_scores, reranker.head_scores("wings", [corpus[d] for d in "abc"]).float())
    assert cached.gains.tolist() == [2.0, 0.0, 1.0] and cached.ideal_dcg == pytest.approx(ideal_dcg([2, 1]))


def test_features_from_the_cache_only_skip_or_refuse_what_is_missing(tmp_path, monkeypatch, tiny_llama_dir):
    from routehead_rag import features as features_module
    from routehead_rag.data.datasets import Dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reranker = RouteHeadReranker(tiny_llama_dir, Recipe(mode="all"), dtype="float32")
    corpus = {d: {"title": "", "text": f"document {d} about wings"} for d in "abc"}
    candidates = {"q1": ["a", "b", "c"], "q2": ["c", "b", "a"]}
    dataset = Dataset(name="t", queries={"q1": "wings", "q2": "feathers"}, qrels={"q1": {"b": 1}}, corpus=corpus)
    features_module.extract_features(Dataset(name="t", queries={"q1": "wings"}, qrels={}, corpus=corpus),
                                     candidates, reranker, depth=3)
    monkeypatch.setattr(features_module, "compute_features", lambda *a, **k: pytest.fail("the LLM ran"))
    with pytest.raises(ValueError, match="1 of 2 queries of t have no cached features"):
        features_module.extract_features(dataset, candidates, reranker, depth=3, missing="error")
    assert [f.qid for f in features_module.extract_features(dataset, candidates, reranker, depth=3,
                                                            missing="skip")] == ["q1"]


def test_features_command_fills_the_cache_that_the_bench_then_reads(tmp_path, tiny_llama_dir, capsys, monkeypatch):
    from routehead_rag import features as features_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = _mini_beir(tmp_path / "mini")
    common = ["--dataset", str(data), "--model", str(tiny_llama_dir), "--depth", "8", "--max-queries", "5"]
    assert main(["features", *common]) == 0
    assert "5 queries of" in capsys.readouterr().out
    monkeypatch.setattr(features_module, "compute_features", lambda *a, **k: pytest.fail("the LLM ran again"))
    assert main(["bench", *common, "--methods", "bm25,icr", "--latency-queries", "0"]) == 0  # the same sample
    assert "5 queries" in capsys.readouterr().out
