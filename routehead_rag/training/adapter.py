"""Training the ranking adapter (:mod:`routehead_rag.adapter`): lists of a positive among hard and random negatives,
shuffled in every example, and BlockRank's InfoNCE loss on the query rows' attention at the scoring layer.

Resumable: every ``checkpoint_every`` steps the LoRA weights, the optimizer, the step, the random state and the loss
log are written atomically to ``<out>.ckpt``; a run killed at any point starts again from the last checkpoint, and
its lists and their order come back the same (they are drawn from ``seed``). The final adapter is written atomically
too (:func:`routehead_rag.adapter.save_adapter`).
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapter import AdapterConfig, document_scores, lora_tensors, save_adapter, with_lora
from ..backbone import Backbone
from ..capture import install
from ..data.datasets import Dataset
from ..documents import Document
from ..forward import layer_rows
from ..paths import atomic_write
from ..prompt import PromptBuilder


@dataclass(frozen=True)
class TrainingList:
    """One example: a query, its documents in the (shuffled) order laid out, and the index of the positive."""

    query: str
    documents: tuple[Document, ...]
    positive: int


LOSSES = ("share", "mass")


@dataclass(frozen=True)
class AdapterTraining:
    """How an adapter is trained: ``steps`` lists, one per step; ``lr`` (AdamW, linear warm-up over ``warmup``
    steps, then constant); documents cut to ``max_doc_words``; ``bf16`` autocast where the CPU or GPU has it.

    ``loss``: ``"share"`` (BlockRank's InfoNCE: the cross-entropy of the positive among the list's documents, over
    ``score / temperature``) or ``"mass"`` (minus the positive's log mass: its share of *all* the query rows'
    attention, the rest of the prompt counted as one more negative). The share is blind to how much attention the
    documents get at all, and trained with it the query rows' attention left the documents (docs/method.md, "The
    ranking adapter"); the mass loss rewards only attention on the positive, and learnt a prior over documents instead
    of relevance (SciFact test 0.41 against the share's 0.53). Uncalibrated adapters only."""

    steps: int = 600
    lr: float = 2e-4
    warmup: int = 20
    max_doc_words: int = 100
    checkpoint_every: int = 25
    seed: int = 0
    bf16: bool = True
    loss: str = "share"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}.")


def make_lists(queries: dict[str, str], positives: dict[str, list[str]], hard: dict[str, list[str]],
               corpus: dict[str, dict[str, str]], n_docs: int = 8, n_random: int = 2, seed: int = 0,
               ) -> list[TrainingList]:
    """One list per (query, positive): the positive, ``n_docs - 1 - n_random`` hard negatives drawn from the query's
    first-stage hits ``hard`` that are not positives, and ``n_random`` random documents, in a shuffled order."""
    rng = random.Random(seed)
    doc_ids = sorted(corpus)
    lists = []
    for qid in sorted(queries):
        relevant = set(positives.get(qid, ()))
        pool = [d for d in hard.get(qid, []) if d not in relevant and d in corpus]
        for pos in sorted(relevant):
            if pos not in corpus:
                continue
            negatives = rng.sample(pool, min(len(pool), n_docs - 1 - n_random))
            while len(negatives) < n_docs - 1:
                d = rng.choice(doc_ids)
                if d not in relevant and d not in negatives:
                    negatives.append(d)
            chosen = [pos, *negatives]
            rng.shuffle(chosen)
            docs = tuple(Document(text=corpus[d].get("text", ""), title=corpus[d].get("title") or None) for d in chosen)
            lists.append(TrainingList(query=queries[qid], documents=docs, positive=chosen.index(pos)))
    return lists


def lists_from_dataset(dataset: Dataset, depth: int = 30, n_docs: int = 8, n_random: int = 2, seed: int = 0,
                       ) -> list[TrainingList]:
    """:func:`make_lists` over any labelled dataset (SciFact, Cranfield, DL19, or the synthetic questions of
    :func:`routehead_rag.training.adapt.synthetic_dataset`): positives from its qrels (grade > 0), hard negatives
    from its own candidates where it has them (a rank_llm file), else BM25's top ``depth``."""
    if dataset.candidates is not None:
        hard = {q: docs[:depth] for q, docs in dataset.candidates.items()}
    else:
        from ..data.first_stage import bm25_candidates
        hard, _ = bm25_candidates(dataset, depth=depth)
    positives = {q: [d for d, grade in rels.items() if grade > 0] for q, rels in dataset.qrels.items()}
    return make_lists(dataset.queries, positives, hard, dataset.corpus or {}, n_docs=n_docs, n_random=n_random,
                      seed=seed)


def trainable_copy(backbone: Backbone, config: AdapterConfig, tensors: dict[str, torch.Tensor] | None = None,
                   ) -> Backbone:
    """A float32 copy of ``backbone`` with LoRA for ``config`` (from ``tensors`` where given), the capture installed;
    ``backbone`` itself is untouched."""
    model = copy.deepcopy(backbone.model).float()
    install(model)
    model = with_lora(model, config, tensors)
    return Backbone(model=model, tokenizer=backbone.tokenizer, name=backbone.name, fingerprint=backbone.fingerprint)


def list_scores(backbone: Backbone, builder: PromptBuilder, query: str, documents: Sequence[Document],
                config: AdapterConfig, bf16: bool = False) -> torch.Tensor:
    """``[n_docs]`` adapter scores for one list in one window (:func:`routehead_rag.adapter.document_scores`),
    differentiable where grad is enabled. The documents are laid out in the order given."""
    prompt = builder.build(query, [builder.doc_ids(d) for d in documents])
    device_type = backbone.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        (query_rows, na_rows), = layer_rows(backbone, [prompt], config.layer, with_na=config.calibrated)
    return document_scores(query_rows, na_rows, prompt.marked_spans, config)


def train_adapter(backbone: Backbone, lists: list[TrainingList], config: AdapterConfig, training: AdapterTraining,
                  out: str | os.PathLike, start: dict[str, torch.Tensor] | None = None,
                  on_checkpoint: Callable[[int, float], None] | None = None) -> Path:
    """Train an adapter on ``lists`` (cycled in a seeded order) and write it to ``out``; resume from ``<out>.ckpt``
    where a killed run left one. ``start``: LoRA tensors to start from (an adapter being adapted further), else
    peft's initialisation (the base model unchanged). Returns ``out``."""
    if not lists:
        raise ValueError("no training lists: each query needs at least one relevant document in the corpus.")
    if training.loss == "mass" and (config.calibrated or config.temperature != 1.0):
        raise ValueError("the mass loss is the positive's log share of all the query rows' attention: train it "
                         "uncalibrated at temperature 1, or take loss='share'.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint_path(out)
    torch.manual_seed(training.seed)  # LoRA's A matrices start random: the same run starts the same
    trainee = trainable_copy(backbone, config, start)
    params = [p for p in trainee.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(training.warmup, 1)))
    order = list(range(len(lists)))
    random.Random(training.seed).shuffle(order)
    step, losses, seconds = 0, [], 0.0  # seconds: training time over every run that led here (resumed ones too)
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, weights_only=False)
        if state["config"] != asdict(config) or _but_steps(state["training"]) != _but_steps(asdict(training)):
            raise ValueError(f"{ckpt_path} is a checkpoint of another configuration; remove it or pick another output "
                             "(only --steps may change between a run and its resumption).")
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(trainee.model, state["tensors"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses, seconds = state["step"], state["losses"], state.get("seconds", 0.0)
        torch.set_rng_state(state["rng"])
    builder = PromptBuilder(trainee.engine_tokenizer, max_doc_words=training.max_doc_words, layout=config.layout)
    bf16 = training.bf16 and (trainee.device.type != "cpu" or _cpu_bf16())
    trainee.model.train()
    started, first = time.perf_counter(), step
    with tqdm(total=training.steps, initial=step, desc="training the adapter", unit="step") as bar:
        while step < training.steps:
            example = lists[order[step % len(order)]]
            with torch.enable_grad():
                scores = list_scores(trainee, builder, example.query, example.documents, config, bf16)
                loss = list_loss(scores, example.positive, config, training.loss)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss(losses):.3f}",
                            s_per_step=f"{(time.perf_counter() - started) / (step - first):.2f}")
            if step % training.checkpoint_every == 0 or step == training.steps:
                state = {"config": asdict(config), "training": asdict(training), "step": step, "losses": losses,
                         "tensors": lora_tensors(trainee.model), "seconds": seconds + time.perf_counter() - started,
                         "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                         "rng": torch.get_rng_state()}
                atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
                if on_checkpoint is not None:
                    on_checkpoint(step, mean_loss(losses))
    save_adapter(out, lora_tensors(trainee.model), config, backbone.fingerprint)
    return out


def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where :func:`train_adapter` keeps the checkpoint of a run writing ``out``: ``<out>.ckpt``."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def list_loss(scores: torch.Tensor, positive: int, config: AdapterConfig, loss: str = "share") -> torch.Tensor:
    """The training loss of one list from its ``[n_docs]`` scores (:class:`AdapterTraining`'s ``loss``)."""
    if loss == "mass":
        return -scores[positive]
    return torch.nn.functional.cross_entropy((scores / config.temperature)[None],
                                             torch.tensor([positive], device=scores.device))


def _but_steps(training: dict) -> dict:
    """A run's training settings but its steps, a checkpoint's written before a setting existed given its default."""
    return {k: v for k, v in {**asdict(AdapterTraining()), **training}.items() if k != "steps"}


def _cpu_bf16() -> bool:
    from ..backbone import cpu_has_bf16_matmul
    return cpu_has_bf16_matmul()


def mean_loss(losses: list[float], last: int = 25) -> float:
    """The mean of the last ``last`` losses (NaN for none)."""
    tail = losses[-last:]
    return sum(tail) / len(tail) if tail else math.nan
