"""The public entry point: :class:`RouteHeadReranker`."""

from __future__ import annotations

import contextlib
import functools
import numbers
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Union

import torch

from .adapter import Adapter, document_scores, load_adapter, merged
from .backbone import Backbone, load_backbone
from .calibration import CALIBRATION_FILE, Calibration, Fit, load_calibration, setup_key
from .capture import install
from .documents import Document, DocumentInput, check_query, check_scores, to_documents
from .embedding import query_embedding
from .evidence import document_evidence
from .forward import batch_summed_diffs, batch_token_diffs, layer_rows
from .heads import HeadRouter, head_weights, heads_of, layers_of
from .prompt import INSTRUCTION, MAX_DOC_WORDS, Prompt, PromptBuilder
from .recipe import RECIPE_FIELDS, Recipe, ScoringSettings, resolve, with_keywords
from .reweighting import idf_weights, prefix_weights
from .router import DEFAULT_ROUTER, Router, RouterEnsemble, load_router
from .scoring import TokenDiffs, calibrated_scores, head_mass, rank, rank_prior, rank_summed, summed_scores
from .status import waiting
from .windows import plan_batches, plan_windows

FirstStage = Union[Literal["order", "none"], Sequence[float]]
FIRST_STAGES = ("order", "none")
LONG_LIST = 50  # documents from which rerank shows a status line while it scores (on a terminal, or verbose)
BATCH_TOKENS = 16384  # padded tokens per batched forward on GPUs, by default (on CPUs batches bring no speed)


@dataclass(frozen=True)
class RerankResult:
    """One re-ranked document: ``index`` into the input list, its ``score`` (the mode's own, whose scale changes with
    the query and the list), the input ``document``, whether the model read it cut, and ``relevance_score``: the
    probability that it is relevant, in [0, 1] and comparable across queries, lists and calls. The default model has
    one in every mode and setting; another model has one where ``routehead calibrate`` fitted it (``None``
    elsewhere). ``relevance_fit`` says which model gave it: ``"exact"`` (fitted for this very setup) or
    ``"across-settings"`` (fitted across modes and settings, for a setup without its own)."""

    index: int
    score: float
    document: DocumentInput
    truncated: bool = False  # the model read only the start of this document (word or token budget, window)
    relevance_score: float | None = None
    relevance_fit: Fit | None = None


@dataclass(frozen=True)
class RerankJob:
    """One request checked and laid out by :meth:`RouteHeadReranker.prepare`, ready for
    :meth:`RouteHeadReranker.run`: its documents as given and as read, its windows' prompts, ``first_stage:
    [n_docs]`` (the first-stage evidence; all zeros for ``first_stage="none"``), which documents were cut, and the
    query's tokens as the model reads it (``query_truncated``: cut to the request's ``max_query_tokens``)."""

    query: str
    documents: Sequence[DocumentInput]
    docs: list[Document]
    top_n: int | None
    first_stage: torch.Tensor
    prompts: list[Prompt]
    windows: list[range]
    truncated: list[bool]
    query_tokens: int = 0
    query_truncated: bool = False
    layout_order: list[int] | None = None  # a set's documents as laid out in the prompt (their indices), else None

    @property
    def tokens(self) -> int:
        """Tokens of all its windows' prompts: what it costs a batch."""
        return sum(len(p) for p in self.prompts)


def monotone_down(values: list[float], order: list[int]) -> list[float]:
    """``values`` (in input order) lowered where needed so that they never rise down ``order`` (the ranking): each
    the least of itself and those ranked above it."""
    out, lowest = list(values), float("inf")
    for i in order:
        lowest = min(lowest, values[i])
        out[i] = lowest
    return out


def set_order(docs: Sequence[Document]) -> list[int]:
    """The canonical order of a set of documents (their indices, sorted by title and text; equal documents by
    index): the order the prompt lays a set out in, the same for any order the set is given in."""
    return sorted(range(len(docs)), key=lambda i: (docs[i].title, docs[i].text, i))


def inverse(order: Sequence[int]) -> list[int]:
    """The inverse permutation: ``inverse(order)[order[k]] == k``."""
    back = [0] * len(order)
    for k, i in enumerate(order):
        back[i] = k
    return back


def first_stage_evidence(first_stage: FirstStage, first_stage_scores: Sequence[float] | None,
                         n_docs: int) -> torch.Tensor:
    """What :meth:`RouteHeadReranker.rerank`'s ``first_stage`` (or ``first_stage_scores``) says, ``[n_docs]``
    float64: :func:`rank_prior` for ``"order"``, zeros for ``"none"`` (z-scored, they weigh nothing), else the
    scores."""
    if first_stage_scores is not None:
        if not (isinstance(first_stage, str) and first_stage == "order"):
            raise ValueError("give the first stage once: first_stage=[scores] or first_stage_scores=[scores], not "
                             f"both, and not first_stage={first_stage!r} beside scores.")
        return check_scores(first_stage_scores, n_docs)
    if isinstance(first_stage, str):
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be 'order' (the documents are a retriever's ranking, best first), "
                             f"'none' (a set) or one score per document, not {first_stage!r}.")
        return rank_prior(n_docs) if first_stage == "order" else torch.zeros(n_docs, dtype=torch.float64)
    return check_scores(first_stage, n_docs)


_LOADING = threading.Lock()


@functools.lru_cache(maxsize=8)
def _load_once(model: str | None, device: str, dtype: str) -> Backbone:
    backbone = load_backbone(model, device=device, dtype=dtype)
    install(backbone.model)
    return backbone


_ADAPTED: dict[tuple[str, str], Backbone] = {}


def _adapted(backbone: Backbone, adapter: Adapter) -> Backbone:
    """One copy of ``backbone`` with ``adapter`` merged in per (model, adapter) per process, routed through the
    capture; ``backbone`` stays as it was for rerankers without the adapter."""
    with _LOADING:
        key = (backbone.fingerprint, adapter.fingerprint)
        if key not in _ADAPTED:
            _ADAPTED[key] = merged(backbone, adapter)
            install(_ADAPTED[key].model)
        return _ADAPTED[key]


def _shared_backbone(model: str | Backbone | None, device: str, dtype: str) -> Backbone:
    """One backbone per (model, device, dtype) per process, also when threads ask at once; a :class:`Backbone`
    already loaded is used as it is (its model routed through the capture once)."""
    with _LOADING:
        if isinstance(model, Backbone):
            install(model.model)
            return model
        return _load_once(model, device, dtype)


def check_batch_tokens(batch_tokens: object) -> None:
    if batch_tokens is not None and (not isinstance(batch_tokens, int) or isinstance(batch_tokens, bool)
                                     or batch_tokens < 0):
        raise ValueError(f"batch_tokens must be a non-negative integer (0: one window per forward) or None, "
                         f"not {batch_tokens!r}.")


class RouteHeadReranker:
    """Re-rank documents for a query by the attention an LLM's heads pay to them.

    model: ``None`` for the embedded SmolLM2-135M-Instruct, a hub id, a model folder or a ``.gguf``
        file (loaded once per process and shared between rerankers), or a :class:`Backbone` already in memory
        (then ``device`` and ``dtype`` are its own).
    recipe: how attention becomes scores (:class:`routehead_rag.recipe.Recipe`: mode and heads, aggregation, layer
        window, the first stage's weight, layout, APE, re-weighting, a trained adapter); default ``Recipe()``, the
        router shipped for the default model. The recipe's fields given as keywords (``mode="all"``, ...) still work,
        with a ``DeprecationWarning``. The resolved recipe is :attr:`recipe`.
    router: a router folder (``routehead train-router``, ``routehead adapt``), or any
        :class:`HeadRouter`; default: the router shipped for the default model.
    max_doc_words / max_doc_tokens: each document is cut to this budget, inside its own span (default:
        150 words, as the shipped router was trained and is benchmarked).
    max_tokens: tokens per forward window (default: the model's context, at most 8192); longer
        lists are split into windows (see :mod:`routehead_rag.windows`).
    window_size: at most this many documents per window (default: as many as fit).
    batch_tokens: padded tokens per batched forward in :meth:`rerank_many` and :meth:`run` (default:
        :data:`BATCH_TOKENS` on a GPU; 0 on a CPU, one window per forward, as batching there is no faster).
    calibration: a ``calibration.json`` (or the folder holding one) with the relevance model behind
        ``relevance_score``; default: the one beside the router (for the default model: shipped with it). The model
        fitted for exactly this setup (backbone, mode, aggregation, heads, fusion weight, prompt and window
        settings) where there is one, else the one fitted across settings for this backbone, with one warning here
        (none for an adapter's own mode, which no relevance model was fitted for).
    """

    mode = property(lambda self: self.recipe.mode)
    aggregation = property(lambda self: self.recipe.aggregation)
    fusion_weight = property(lambda self: self.recipe.fusion_weight)
    reweighting = property(lambda self: self.recipe.reweighting)
    heads = property(lambda self: None if self.recipe.heads is None else list(self.recipe.heads))
    layers = property(lambda self: None if self.recipe.layers is None else list(self.recipe.layers))

    def __init__(self, model: str | Path | Backbone | None = None, recipe: Recipe | None = None, *,
                 router: HeadRouter | str | Path | None = None, device: str = "auto", dtype: str = "auto",
                 max_doc_words: int | None = MAX_DOC_WORDS, max_doc_tokens: int | None = None,
                 max_tokens: int | None = None, window_size: int | None = None, instruction: str = INSTRUCTION,
                 reverse: bool = True, batch_tokens: int | None = None, calibration: str | Path | None = None,
                 **recipe_fields: object) -> None:
        unknown = sorted(set(recipe_fields) - set(RECIPE_FIELDS))
        if unknown:
            raise TypeError(f"RouteHeadReranker got unknown options {unknown}; the recipe's fields are "
                            f"{list(RECIPE_FIELDS)} (recipe=Recipe(...)).")
        recipe = with_keywords(recipe, recipe_fields)
        for name, value in (("max_doc_words", max_doc_words), ("max_doc_tokens", max_doc_tokens),
                            ("max_tokens", max_tokens), ("window_size", window_size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}.")
        check_batch_tokens(batch_tokens)
        self.backbone = _shared_backbone(model if model is None or isinstance(model, Backbone) else str(model),
                                         device, dtype)
        self.adapter = None
        if recipe.adapter is not None:
            self.adapter = load_adapter(recipe.adapter, self.backbone)
            self.backbone = _adapted(self.backbone, self.adapter)
        # where a calibration may be found: the router's folder (the shipped one's for the default model)
        router_folder = Path(router) if isinstance(router, (str, Path)) else (
            DEFAULT_ROUTER if model is None else None)  # the default model: its models, whatever the router
        if isinstance(router, (str, Path)):
            router = load_router(router)
        elif (router is None and model is None and recipe.mode != "all" and recipe.adapter is None
              and (DEFAULT_ROUTER / "config.json").is_file()):
            router = load_router(DEFAULT_ROUTER)
        if isinstance(router, Router | RouterEnsemble):
            router.check_backbone(self.backbone)
        self.router = router
        if self.adapter is not None and recipe.layout != self.adapter.config.layout:
            if recipe.layout != "sequential":  # chosen, not the default: refused rather than silently changed
                raise ValueError(f"the adapter was trained in the {self.adapter.config.layout} layout and ranks in it; "
                                 f"drop layout={recipe.layout!r} from the recipe.")
            recipe = replace(recipe, layout=self.adapter.config.layout)  # an adapter ranks in the layout it learnt
        self.recipe, self.preset = resolve(recipe, self.backbone, router)
        # a router that predicts the first stage's weight per query (its Trust) does so unless a weight is given
        self._trust = (isinstance(router, Router | RouterEnsemble) and self.mode == "routed"
                       and self.aggregation == "per_head" and recipe.fusion_weight is None
                       and any(m.config.trust for m in getattr(router, "members", [router])))
        self.settings = ScoringSettings(instruction=instruction, max_doc_words=max_doc_words,
                                        max_doc_tokens=max_doc_tokens, reverse=reverse,
                                        max_tokens=min(max_tokens or 8192, self.backbone.max_context),
                                        window_size=window_size, layout=self.recipe.layout, ape=self.recipe.ape)
        self.batch_tokens = batch_tokens if batch_tokens is not None else (
            0 if self.backbone.device.type == "cpu" else BATCH_TOKENS)
        self.prompts = PromptBuilder(self.backbone.engine_tokenizer, instruction=instruction, max_doc_words=max_doc_words,
                                     max_doc_tokens=max_doc_tokens, reverse=reverse, layout=self.recipe.layout)
        if self.mode == "adapter" and calibration is not None:
            raise ValueError("no relevance model reads an adapter's own scores yet; drop calibration=..., or pick "
                             "another mode beside the adapter (Recipe(mode='routed', adapter=...)).")
        self.calibration = None if self.mode == "adapter" else self._calibration(calibration, router_folder)

    def setup(self) -> dict:
        """What decides this reranker's scores beyond :meth:`cache_key`, for matching a calibration to it."""
        return setup_key(self.backbone.fingerprint, self.mode, self.aggregation,
                         self.heads if self.mode == "static" else self._window_heads(), self.fusion_weight,
                         self.settings.key() | ({} if self.reweighting == "none" else {"reweighting": self.reweighting}))

    def _window_heads(self) -> list[int] | None:
        """Every head of :attr:`layers` (``None``: no layer window)."""
        return None if self.layers is None else heads_of(self.layers, self.backbone.n_heads)

    def _calibration(self, given: str | Path | None, router_folder: Path | None) -> Calibration | None:
        if given is None:
            found = load_calibration(router_folder, self.setup()) if router_folder is not None else None
        elif not Path(given).exists():
            raise FileNotFoundError(f"calibration {given} does not exist; give a {CALIBRATION_FILE} (or its folder) "
                                    "written by `routehead calibrate`.")
        else:
            found = load_calibration(given, self.setup())
            if found is None:
                raise ValueError(f"{given} holds no relevance model for this setup ({self.setup()}) nor one fitted "
                                 "across settings for this backbone; fit one with `routehead calibrate`.")
        if found is not None and found.fit == "across-settings":
            warnings.warn(f"relevance_score for mode {self.mode!r} with these settings comes from the relevance model "
                          "fitted across settings (none was fitted for exactly this setup; results say "
                          "relevance_fit='across-settings'); `routehead calibrate` fits one for it.", stacklevel=3)
        return found

    def cache_key(self) -> dict:
        """Everything that decides this reranker's per-head scores: the backbone's weights and dtype, and
        :class:`ScoringSettings`."""
        return {"backbone": self.backbone.fingerprint, "dtype": str(self.backbone.model.dtype), **self.settings.key()}

    def select_heads(self, query: str) -> dict[int, float] | None:
        """The heads that score ``query`` in this reranker's mode, ``{head: weight}`` (``None``: all heads)."""
        return self.route(query)[0]

    def route(self, query: str) -> tuple[dict[int, float] | None, torch.Tensor | None]:
        """:meth:`select_heads`, and the query embedding ``[n_layers + 1, 2, hidden]`` a trained router chose them
        from (``None`` in the other modes; :meth:`query_fusion_weight` reads it)."""
        if self.mode == "adapter":  # the adapter's own layer and heads (its config), no head weights
            return None, None
        if self.mode == "all":
            return (None if self.layers is None else head_weights(self._window_heads(), self.backbone)), None
        if self.mode == "static":
            return head_weights(self.heads, self.backbone), None
        if not isinstance(self.router, Router | RouterEnsemble):
            return head_weights(self.router.select(query, self.backbone), self.backbone), None
        # a trained router's weights are kept as trained: rescaled, they would shift its fusion weight's share
        embedding = query_embedding(self.backbone, query, self.router.embed_layers)
        return head_weights(self.router.weights_for(embedding), self.backbone, normalize=False), embedding

    def query_fusion_weight(self, head_scores: torch.Tensor, weights: dict[int, float] | None,
                            first_stage: torch.Tensor, embedding: torch.Tensor | None) -> float:
        """The first stage's weight for one query (``head_scores: [n_heads_total, n_docs]``, its ``{head: weight}``,
        ``first_stage: [n_docs]``, and the embedding :meth:`route` gave): the router's per-query prediction where
        it has one (``trust`` in its config) and no ``fusion_weight`` was given, else :attr:`fusion_weight`."""
        if self._trust and weights is not None and embedding is not None and head_scores.shape[-1] > 0:
            return self.router.fusion_weight_for(head_scores, weights, first_stage, embedding)
        return self.fusion_weight

    def head_scores(self, query: str, documents: Sequence[DocumentInput]) -> torch.Tensor:
        """Calibrated per-head scores, ``[n_layers * n_heads, n_docs]`` (float64)."""
        return self.token_diffs(query, documents).per_head()

    def token_diffs(self, query: str, documents: Sequence[DocumentInput]) -> TokenDiffs:
        """Every head's query-minus-N/A attention to every token of each document (what the feature cache keeps),
        from which both aggregations, for any heads, follow without the model."""
        job = self.prepare(query, documents)
        every_layer = list(range(self.backbone.n_layers))
        values, starts, markers, scale = [], [0], [], []
        for prompt, window in zip(job.prompts, job.windows):
            diff = batch_token_diffs(self.backbone, [prompt], [every_layer], self.settings.ape)[0]  # [H, len(prefix)]
            for (start, end), (text_start, _) in zip(prompt.marked_spans, prompt.doc_spans):  # windows: contiguous
                values.append(diff[:, start:end])
                starts.append(starts[-1] + end - start)
                markers.append(text_start - start)
                scale.append(len(window))
        n_total = self.backbone.n_layers * self.backbone.n_heads
        return TokenDiffs(values=torch.cat(values, dim=1) if values else torch.zeros(n_total, 0),
                          starts=torch.tensor(starts), markers=torch.tensor(markers, dtype=torch.long),
                          scale=torch.tensor(scale, dtype=torch.float64))

    def prepare(self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None,
                first_stage_scores: Sequence[float] | None = None, first_stage: FirstStage = "order", *,
                max_query_tokens: int | None = None, max_doc_tokens: int | None = None) -> RerankJob:
        """Check one request and lay out its prompts, without any model work (so a bad or over-long request is
        refused at once). ``first_stage``: see :meth:`rerank`. ``max_query_tokens`` / ``max_doc_tokens``: this
        request's cut of the query and of each document, in tokens (the documents' is on top of the reranker's own
        budgets). Raises ``TypeError``/``ValueError`` naming the input at fault and what to do."""
        query = check_query(query)
        for name, value in (("top_n", top_n), ("max_query_tokens", max_query_tokens),
                            ("max_doc_tokens", max_doc_tokens)):
            if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}.")
        top_n = None if top_n is None else int(top_n)
        query, query_tokens = self.prompts.query_within(query, max_query_tokens)
        query_truncated = max_query_tokens is not None and query_tokens > max_query_tokens
        docs = to_documents(documents)
        evidence = first_stage_evidence(first_stage, first_stage_scores, len(docs))
        # a set has no order: it is laid out in one canonical order, so that any order of it scores alike
        order = set_order(docs) if isinstance(first_stage, str) and first_stage == "none" else None
        prompts, windows, truncated = self._layout(query, docs if order is None else [docs[i] for i in order],
                                                   max_doc_tokens)
        if order is not None:
            truncated = [truncated[k] for k in inverse(order)]
        return RerankJob(query=query, documents=documents, docs=docs, top_n=top_n, first_stage=evidence,
                         prompts=prompts, windows=windows, truncated=truncated,
                         query_tokens=min(query_tokens, max_query_tokens) if query_truncated else query_tokens,
                         query_truncated=query_truncated, layout_order=order)

    def rerank(self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None,
               first_stage_scores: Sequence[float] | None = None,
               first_stage: FirstStage = "order") -> list[RerankResult]:
        """Documents best first (at most ``top_n``), each with its index in ``documents`` and a float score.

        ``first_stage``: what the first stage says, weighed in at the reranker's ``fusion_weight``: ``"order"`` (the
        default, what the framework adapters pass) takes ``documents`` as a retriever's ranking, best first;
        ``"none"`` takes them as a set, the order no evidence (as Cohere, Jina, vLLM and TEI clients send them): the
        prompt lays a set out in one canonical order (:func:`set_order`), so any order of the same documents gets
        the same ranking and scores; a
        list of one score per document (higher: better) gives the retriever's scores. ``first_stage_scores=`` is
        the same as passing the scores as ``first_stage``.
        """
        job = self.prepare(query, documents, top_n, first_stage_scores, first_stage)
        long = len(documents) >= LONG_LIST
        with waiting(f"Re-ranking {len(documents)} documents") if long else contextlib.nullcontext():
            return self.run([job], batch_tokens=0)[0]

    def rerank_many(self, queries: Sequence[str], documents: Sequence[Sequence[DocumentInput]],
                    top_n: int | None = None, first_stage_scores: Sequence[Sequence[float] | None] | None = None,
                    batch_tokens: int | None = None, first_stage: FirstStage = "order") -> list[list[RerankResult]]:
        """:meth:`rerank` for several (query, documents) pairs, their windows run in padded batches of at most
        ``batch_tokens`` tokens (see :meth:`run`). Every pair is checked before any model work. ``first_stage``:
        ``"order"`` or ``"none"`` for every pair (per-pair scores go in ``first_stage_scores``)."""
        if not isinstance(first_stage, str):
            raise TypeError("rerank_many takes first_stage='order' or 'none' for every pair; give per-pair scores as "
                            "first_stage_scores=[[...], ...].")
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise TypeError(f"queries must be a list of strings, not {type(queries).__name__}.")
        if not isinstance(documents, Sequence) or len(documents) != len(queries):
            raise ValueError(f"documents must hold one list of documents per query ({len(queries)}).")
        if first_stage_scores is not None and (not isinstance(first_stage_scores, Sequence)
                                               or len(first_stage_scores) != len(queries)):
            raise ValueError(f"first_stage_scores must hold one list (or None) per query ({len(queries)}).")
        scores = first_stage_scores or [None] * len(queries)
        jobs = []
        for i, (query, docs, first) in enumerate(zip(queries, documents, scores)):
            try:
                jobs.append(self.prepare(query, docs, top_n, first, first_stage))
            except (TypeError, ValueError) as err:
                raise type(err)(f"queries[{i}]: {err}") from None
        return self.run(jobs, batch_tokens)

    def run(self, jobs: Sequence[RerankJob], batch_tokens: int | None = None) -> list[list[RerankResult]]:
        """The rankings of prepared requests (:meth:`prepare`), their windows forwarded in padded batches of at
        most ``batch_tokens`` padded tokens each (default: this reranker's ``batch_tokens``; ``0``: one window
        per forward). Windows are grouped by length, whichever request they come from."""
        check_batch_tokens(batch_tokens)
        routes = [self.route(job.query) for job in jobs]
        heads = [h for h, _ in routes]
        if self.mode == "adapter":
            scores = self._adapter_scores(jobs)
            rankings = [rank_summed(s, job.first_stage, self.fusion_weight) for s, job in zip(scores, jobs)]
            masses = [None] * len(jobs)  # no relevance model reads an adapter's attention yet
        elif self.aggregation == "summed":
            grids = [self._weight_grid(h) for h in heads]
            scores, totals = self._doc_scores(jobs, grids, batch_tokens)
            rankings = [rank_summed(s, job.first_stage, self.fusion_weight) for s, job in zip(scores, jobs)]
            masses = [t / g.abs().sum() for t, g in zip(totals, grids)]
        else:
            layers = [list(range(self.backbone.n_layers)) if h is None else layers_of(h, self.backbone.n_heads)
                      for h in heads]
            scores, totals = self._doc_scores(jobs, layers, batch_tokens)
            rankings = [rank(s, w, job.first_stage, self.query_fusion_weight(s, w, job.first_stage, e))
                        for s, (w, e), job in zip(scores, routes, jobs)]
            masses = [head_mass(t, w) for t, w in zip(totals, heads)]
        out = []
        for job, ranking, mass in zip(jobs, rankings, masses):
            relevance = None if self.calibration is None else self.calibration(
                document_evidence(job.query, job.docs, mass, ranking.scores, self.settings.max_doc_words)).tolist()
            if relevance is not None:  # never more probable than a document ranked above it: scores sorted as ranked
                relevance = monotone_down(relevance, ranking.order)
            fit = None if self.calibration is None else self.calibration.fit
            out.append([RerankResult(index=i, score=float(ranking.scores[i]), document=job.documents[i],
                                     truncated=job.truncated[i],
                                     relevance_score=None if relevance is None else relevance[i], relevance_fit=fit)
                        for i in ranking.order[:job.top_n]])
        return out

    def _layout(self, query: str, docs: list[Document], max_doc_tokens: int | None = None,
                ) -> tuple[list[Prompt], list[range], list[bool]]:
        """The windows' prompts for one request, the windows, and which documents were cut to fit (each document
        at most ``max_doc_tokens`` tokens, where given)."""
        if not docs:
            return [], [], []
        per_doc = self.prompts.per_doc_overhead(len(docs))
        max_tokens = self.settings.max_tokens
        overhead = self.prompts.overhead(query)
        capacity = max_tokens - overhead
        if capacity <= per_doc:
            raise ValueError(f"the query alone takes {overhead} of the {max_tokens} tokens of a window, leaving no "
                             "room for documents; shorten the query" + (
                                 "" if max_tokens >= self.backbone.max_context else
                                 f", or raise RouteHeadReranker's max_tokens (up to the model's context of "
                                 f"{self.backbone.max_context})") + ".")
        cut = [self.prompts.doc_tokens(doc) for doc in docs]
        docs_ids = [ids[: min(capacity - per_doc, max_doc_tokens or capacity)] for ids, _ in cut]
        truncated = [was_cut or len(ids) < len(full) for (full, was_cut), ids in zip(cut, docs_ids)]
        windows = plan_windows([len(ids) + per_doc for ids in docs_ids], capacity, self.settings.window_size)
        return [self.prompts.build(query, [docs_ids[i] for i in w]) for w in windows], windows, truncated

    def _weight_grid(self, weights: dict[int, float] | None) -> torch.Tensor:
        """``{head: weight}`` (``None``: every head at 1) as ``[n_layers, n_heads]`` float64."""
        n_layers, n_heads = self.backbone.n_layers, self.backbone.n_heads
        if weights is None:
            return torch.ones(n_layers, n_heads, dtype=torch.float64)
        grid = torch.zeros(n_layers * n_heads, dtype=torch.float64)
        grid[list(weights)] = torch.tensor(list(weights.values()), dtype=torch.float64)
        return grid.view(n_layers, n_heads)

    def _doc_scores(self, jobs: Sequence[RerankJob], wanted: Sequence[list[int] | torch.Tensor],
                    batch_tokens: int | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each job's document scores, and its documents' query-minus-N/A attention summed over their marked spans
        with no mask and no list scale (the evidence ``attention`` before it is averaged over the heads), its windows
        forwarded in padded batches of at most ``batch_tokens`` tokens.

        wanted: per job, the layers whose heads are scored one by one (aggregation ``per_head``: ``[n_layers *
        n_heads, n_docs]`` per job, both, NaN for other layers' heads), or the ``[n_layers, n_heads]`` head weights to
        sum (aggregation ``summed``: ``[n_docs]`` per job, both).
        """
        summed = self.aggregation == "summed"
        n_total = self.backbone.n_layers * self.backbone.n_heads
        out = [torch.full((len(job.truncated),) if summed else (n_total, len(job.truncated)), float("nan"),
                          dtype=torch.float64) for job in jobs]
        totals = [torch.full_like(o, float("nan")) for o in out]
        items = [(j, w) for j, job in enumerate(jobs) for w in range(len(job.windows))]
        prompts = [jobs[j].prompts[w] for j, w in items]
        budget = self.batch_tokens if batch_tokens is None else batch_tokens
        token_weights = self._reattn_weights(jobs, items) if summed and self.reweighting == "reattn" else {}
        for batch in plan_batches([len(p) for p in prompts], budget):
            batch_prompts, batch_wanted = [prompts[b] for b in batch], [wanted[items[b][0]] for b in batch]
            if summed:
                diffs = batch_summed_diffs(self.backbone, batch_prompts, batch_wanted, self.settings.ape)
                reweighted = [token_weights.get(b) for b in batch]
                scores = [summed_scores(d, p.marked_spans, w, entropy=w is not None)
                          for d, p, w in zip(diffs, batch_prompts, reweighted)]
            else:
                diffs = batch_token_diffs(self.backbone, batch_prompts, batch_wanted, self.settings.ape)
                scores = [self._per_head(d, p, layers) for d, p, layers in zip(diffs, batch_prompts, batch_wanted)]
            for b, window_scores, diff, prompt in zip(batch, scores, diffs, batch_prompts):
                j, w = items[b]
                window = jobs[j].windows[w]
                out[j][..., window.start:window.stop] = window_scores
                totals[j][..., window.start:window.stop] = torch.stack(
                    [diff[..., start:end].double().sum(dim=-1) for start, end in prompt.marked_spans], dim=-1)
        for j, job in enumerate(jobs):  # a set laid out in its canonical order: back to the caller's
            if job.layout_order is not None:
                back = torch.tensor(inverse(job.layout_order), dtype=torch.long)
                out[j], totals[j] = out[j][..., back], totals[j][..., back]
        return out, totals

    @torch.inference_mode()
    def _adapter_scores(self, jobs: Sequence[RerankJob]) -> list[torch.Tensor]:
        """Each job's ``[n_docs]`` adapter scores (:func:`routehead_rag.adapter.document_scores` at the adapter's
        layer), one forward per window, stopped after that layer."""
        config = self.adapter.config
        out = []
        for job in jobs:
            scores = torch.full((len(job.truncated),), float("nan"), dtype=torch.float64)
            for prompt, window in zip(job.prompts, job.windows):
                (query_rows, na_rows), = layer_rows(self.backbone, [prompt], config.layer, with_na=config.calibrated)
                scores[window.start:window.stop] = document_scores(query_rows.cpu(), None if na_rows is None
                                                                   else na_rows.cpu(), prompt.marked_spans, config).double()
            if job.layout_order is not None:  # a set laid out in its canonical order: back to the caller's
                scores = scores[torch.tensor(inverse(job.layout_order), dtype=torch.long)]
            out.append(scores)
        return out

    def _reattn_weights(self, jobs: Sequence[RerankJob], items: list[tuple[int, int]]) -> dict[int, torch.Tensor]:
        """ReAttn's token weights of every window of ``items`` (``(job, window)``), ``{item: [len(prefix)]}``, the
        document frequencies counted over each job's whole list as the model reads it."""
        per_job = {}
        for j, job in enumerate(jobs):
            docs_ids: list[list[int]] = [[] for _ in job.truncated]
            for prompt, window in zip(job.prompts, job.windows):
                for i, (start, end) in zip(window, prompt.doc_spans):
                    docs_ids[i] = prompt.prefix_ids[start:end]
            per_job[j] = idf_weights(self.backbone.engine_tokenizer, job.query, docs_ids)
        weights = {}
        for b, (j, w) in enumerate(items):
            prompt, window = jobs[j].prompts[w], jobs[j].windows[w]
            weights[b] = prefix_weights(len(prompt.prefix_ids), prompt.doc_spans, [per_job[j][i] for i in window])
        return weights

    def _per_head(self, diff: torch.Tensor, prompt: Prompt, layers: list[int]) -> torch.Tensor:
        """:func:`calibrated_scores` of the heads of ``layers`` (``diff: [n_layers * n_heads, len(prefix)]``): ``[n_layers
        * n_heads, n_docs]``, NaN for other heads."""
        n_heads = self.backbone.n_heads
        rows = torch.cat([torch.arange(layer * n_heads, (layer + 1) * n_heads) for layer in sorted(set(layers))])
        scores = torch.full((diff.shape[0], len(prompt.doc_spans)), float("nan"), dtype=torch.float64)
        scores[rows] = calibrated_scores(diff[rows], prompt.doc_spans)
        return scores
