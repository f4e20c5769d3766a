"""The ranking adapter's mechanics (routehead_rag.adapter, routehead_rag.training.adapter): the loss reaches only the
LoRA weights and lowers, the engine's adapter scores equal eager attention with the adapter merged (and the unmerged
training path), in both layouts; the file round-trips, and a corrupt or mismatched file is refused at load."""

from __future__ import annotations

import pytest
import torch

from families import DOCS, QUERY, load, reference_prompt
from routehead_rag import Recipe, RouteHeadReranker
from routehead_rag.adapter import AdapterConfig, load_adapter, lora_tensors, save_adapter
from routehead_rag.documents import to_documents
from routehead_rag.reference import reference_adapter_scores
from routehead_rag.training.adapter import (AdapterTraining, TrainingList, list_loss, list_scores, train_adapter,
                                           trainable_copy)


def random_adapter(backbone, path, config: AdapterConfig, seed: int = 0):
    """An adapter file for ``backbone`` with random (non-zero) LoRA weights, so that it changes the attention."""
    trainee = trainable_copy(backbone, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in trainee.model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.3)
    return save_adapter(path, lora_tensors(trainee.model), config, backbone.fingerprint)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load(tiny_llama_dir)


def _list() -> TrainingList:
    return TrainingList(query=QUERY, documents=tuple(to_documents(DOCS)), positive=1)


def test_loss_gradient_reaches_only_lora_weights_up_to_the_layer(tiny):
    config = AdapterConfig(layer=2, rank=4, alpha=8)
    trainee = trainable_copy(tiny, config)
    builder = RouteHeadReranker(trainee, Recipe(mode="all")).prompts
    example = _list()
    scores = list_scores(trainee, builder, example.query, example.documents, config)
    torch.nn.functional.cross_entropy(scores[None], torch.tensor([example.positive])).backward()
    grads = {n: p.grad for n, p in trainee.model.named_parameters()}
    assert all(g is None for n, g in grads.items() if "lora_" not in n)  # the base stays frozen
    lora_b = [(n, g) for n, g in grads.items() if "lora_B" in n]
    assert {int(n.split("layers.")[1].split(".")[0]) for n, _ in lora_b} == {0, 1, 2}  # layers 0..ℓ only
    assert any(g is not None and g.abs().sum() > 0 for _, g in lora_b)


def test_training_lowers_the_loss_and_resumes_exactly(tiny, tmp_path):
    config = AdapterConfig(layer=2, rank=4, alpha=8)
    lists = [_list()]
    straight = train_adapter(tiny, lists, config, AdapterTraining(steps=8, lr=5e-3, warmup=1, checkpoint_every=2,
                                                                  bf16=False), tmp_path / "straight.safetensors")
    state = torch.load(straight.with_name(straight.name + ".ckpt"), weights_only=False)
    assert state["losses"][-1] < state["losses"][0]
    # the same run killed after 4 steps and started again: its checkpoint carries it to the same weights
    resumed = tmp_path / "resumed.safetensors"
    train_adapter(tiny, lists, config, AdapterTraining(steps=4, lr=5e-3, warmup=1, checkpoint_every=2, bf16=False),
                  resumed)
    train_adapter(tiny, lists, config, AdapterTraining(steps=8, lr=5e-3, warmup=1, checkpoint_every=2, bf16=False),
                  resumed)
    a, b = load_adapter(straight), load_adapter(resumed)
    assert a.fingerprint == b.fingerprint
    with pytest.raises(ValueError, match="another configuration"):
        train_adapter(tiny, lists, AdapterConfig(layer=1, rank=4, alpha=8), AdapterTraining(steps=8, bf16=False),
                      resumed)


def test_mass_loss_raises_the_positives_share_of_all_attention(tiny, tmp_path):
    """The share loss cannot see how much attention the documents get; the mass loss counts the rest of the prompt
    as one more negative, so training it raises the positive's own log mass, not only its lead over the others."""
    config = AdapterConfig(layer=2, rank=4, alpha=8)
    example = _list()
    builder = RouteHeadReranker(tiny, Recipe(mode="all")).prompts
    with torch.no_grad():
        before = list_scores(tiny, builder, example.query, example.documents, config)
    assert list_loss(before, example.positive, config, "mass") == pytest.approx(-before[example.positive].item())
    path = train_adapter(tiny, [example], config, AdapterTraining(steps=8, lr=5e-3, warmup=1, bf16=False,
                                                                    loss="mass"), tmp_path / "mass.safetensors")
    trained = trainable_copy(tiny, config, load_adapter(path).tensors)
    with torch.no_grad():
        after = list_scores(trained, builder, example.query, example.documents, config)
    assert after[example.positive] > before[example.positive] + 0.1
    with pytest.raises(ValueError, match="uncalibrated"):
        train_adapter(tiny, [example], AdapterConfig(layer=2, rank=4, alpha=8, calibrated=True),
                      AdapterTraining(steps=1, loss="mass"), tmp_path / "refused.safetensors")
    with pytest.raises(ValueError, match="not one of"):
        AdapterTraining(loss="margin")


@pytest.mark.parametrize("layout", ["sequential", "block"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_engine_matches_eager_reference_with_the_adapter_merged(tiny, tmp_path, layout, calibrated):
    config = AdapterConfig(layer=2, rank=4, alpha=8, calibrated=calibrated, layout=layout, heads=(0, 3))
    path = random_adapter(tiny, tmp_path / "a.safetensors", config)
    engine = RouteHeadReranker(tiny, Recipe(adapter=path))
    assert engine.mode == "adapter" and engine.settings.layout == layout
    fast = torch.tensor([r.score for r in sorted(engine.rerank(QUERY, DOCS), key=lambda r: r.index)], dtype=torch.float64)
    reference = reference_adapter_scores(engine.backbone, reference_prompt(engine), config)
    torch.testing.assert_close(fast, reference.double(), atol=1e-4, rtol=0)
    plain = reference_adapter_scores(RouteHeadReranker(tiny, Recipe(mode="all", layout=layout)).backbone,
                                     reference_prompt(engine), config)
    assert (plain - reference).abs().max() > 1e-3  # the adapter changed the attention
    # the training path (LoRA unmerged, float32) scores as the engine ranks
    trainee = trainable_copy(tiny, config, load_adapter(path).tensors)
    with torch.no_grad():
        trained = list_scores(trainee, engine.prompts, QUERY, to_documents(DOCS), config)
    torch.testing.assert_close(trained.double(), fast, atol=1e-4, rtol=0)


def test_the_base_backbone_stays_usable_beside_the_adapter(tiny, tmp_path):
    path = random_adapter(tiny, tmp_path / "a.safetensors", AdapterConfig(layer=2, rank=4, alpha=8))
    before = RouteHeadReranker(tiny, Recipe(mode="all")).head_scores(QUERY, DOCS)
    adapted = RouteHeadReranker(tiny, Recipe(adapter=path))
    after = RouteHeadReranker(tiny, Recipe(mode="all")).head_scores(QUERY, DOCS)
    torch.testing.assert_close(before, after, atol=0, rtol=0)
    assert adapted.backbone is not tiny and adapted.cache_key()["backbone"] != tiny.fingerprint
    icr_adapted = RouteHeadReranker(tiny, Recipe(mode="all", adapter=path))  # any mode reads the adapted attention
    assert icr_adapted.backbone is adapted.backbone and icr_adapted.mode == "all"


def test_file_round_trip_and_refusals(tiny, tmp_path):
    config = AdapterConfig(layer=1, rank=4, alpha=8, heads=(1,), calibrated=True)
    path = random_adapter(tiny, tmp_path / "a.safetensors", config)
    loaded = load_adapter(path, tiny)
    assert loaded.config == config and loaded.base_fingerprint == tiny.fingerprint
    assert load_adapter(path).fingerprint == loaded.fingerprint
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_adapter(corrupt)
    other = tmp_path / "other.safetensors"
    save_adapter(other, loaded.tensors, config, "0" * 64)
    with pytest.raises(ValueError, match="trained on another model"):
        RouteHeadReranker(tiny, Recipe(adapter=other))
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a routehead adapter"):
        load_adapter(tmp_path / "plain.safetensors")
    sequential = random_adapter(tiny, tmp_path / "seq.safetensors", AdapterConfig(layer=1, rank=4, alpha=8))
    with pytest.raises(ValueError, match="trained in the sequential layout"):
        RouteHeadReranker(tiny, Recipe(adapter=sequential, layout="block"))
    with pytest.raises(ValueError, match="no relevance model reads an adapter"):
        RouteHeadReranker(tiny, Recipe(adapter=sequential), calibration=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RouteHeadReranker(tiny, Recipe(adapter=tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="beyond"):
        save_adapter(tmp_path / "deep.safetensors", loaded.tensors, AdapterConfig(layer=9), tiny.fingerprint)
        load_adapter(tmp_path / "deep.safetensors", tiny)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["sequential", "block"])
def test_engine_matches_eager_reference_on_the_default_model(default_reranker, tmp_path, layout):
    backbone = default_reranker.backbone
    config = AdapterConfig(layer=6, rank=4, alpha=8, layout=layout)
    path = random_adapter(backbone, tmp_path / "a.safetensors", config)
    engine = RouteHeadReranker(recipe=Recipe(adapter=path), dtype="float32")
    fast = torch.tensor([r.score for r in sorted(engine.rerank(QUERY, DOCS), key=lambda r: r.index)], dtype=torch.float64)
    reference = reference_adapter_scores(engine.backbone, reference_prompt(engine), config)
    torch.testing.assert_close(fast, reference.double(), atol=1e-3, rtol=0)


def test_lists_shuffle_the_positive_among_hard_and_random_negatives():
    from routehead_rag.data.datasets import Dataset
    from routehead_rag.training.adapter import lists_from_dataset

    corpus = {f"d{i}": {"title": "", "text": f"document {i}"} for i in range(40)}
    queries = {f"q{i}": f"question {i}" for i in range(30)}
    qrels = {q: {f"d{i}": 1, f"d{i + 1}": 0} for i, q in enumerate(queries)}
    candidates = {q: [f"d{(i + k) % 40}" for k in range(12)] for i, q in enumerate(queries)}
    dataset = Dataset(name="toy", queries=queries, qrels=qrels, corpus=corpus, candidates=candidates)
    lists = lists_from_dataset(dataset, depth=12, n_docs=6, n_random=2)
    assert len(lists) == 30  # one per relevant (grade > 0) document
    assert len({example.positive for example in lists}) > 3  # no position can be learnt
    for example in lists:
        number = int(example.query.split()[1])
        assert len({d.text for d in example.documents}) == 6
        assert example.documents[example.positive].text == f"document {number}"
    assert lists == lists_from_dataset(dataset, depth=12, n_docs=6, n_random=2)  # seeded: a resumed run sees the same
