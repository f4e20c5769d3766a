"""Leave one domain out: every setting chosen without the domain it is measured on.

A re-ranker is used on data it was not trained on, so its settings are judged that way: for each domain, the
methods are fitted on the *other* domains' training queries and measured on this domain's evaluation queries, from
the feature cache alone (no LLM time). The floor every learned method must clear is the first stage fused with
ICR at one fixed weight, the weight that does best on the other domains (``icr_fused``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..features import QueryFeatures
from ..router import Router, RouterEnsemble
from ..scoring import rank_prior
from ..trust import Trust
from .selection import best_layer_window, core_heads, headrank_heads, icr_ndcg, n_layers_of, window_heads
from .train import Prepared, fit_trust, per_query_router_ndcg, qrhead_heads, split, with_trust

FIXED_WEIGHTS = tuple(i / 4 for i in range(9))  # the first stage's weight in the fused score: 0, 0.25, ..., 2


@dataclass
class Domain:
    """One domain: the queries measured on (``evaluation``) and those it lends to training when another domain is
    held out (``training``; the evaluation queries themselves where the domain has no separate training split)."""

    name: str
    evaluation: list[QueryFeatures]
    training: list[QueryFeatures]


@dataclass
class HeldOut:
    """One domain's results: per method, each evaluation query's nDCG@10 (in one query order), what was chosen on
    the other domains (``chosen``: a method's fused weight, for instance), the engine options that rerank with it
    live (``engine``) and, where measured, its latency."""

    domain: str
    ndcg: dict[str, list[float]] = field(default_factory=dict)
    chosen: dict[str, float | str] = field(default_factory=dict)
    engine: dict[str, dict] = field(default_factory=dict)  # per method: the RouteHeadReranker options that run it
    latency: dict[str, float] = field(default_factory=dict)  # per method: median seconds per rerank, where timed


def best_fixed_weight(domains: list[Domain], weights: tuple[float, ...] = FIXED_WEIGHTS) -> float:
    """The weight whose ICR fusion has the best mean, over ``domains``, of each domain's mean nDCG@10 on its training
    queries (every domain counts the same, whatever its size); ties go to the smaller weight."""
    def score(weight: float) -> float:
        return statistics.fmean(statistics.fmean(icr_ndcg(d.training, weight)) for d in domains)

    return max(weights, key=lambda w: (score(w), -w))


RouterFitter = Callable[[list[QueryFeatures]], Router | RouterEnsemble]


def memoized(fit_router: RouterFitter) -> RouterFitter:
    """``fit_router`` trained once per list of training queries (the same query objects in the same order; training
    is seeded, so a second fit would give the same router): leaving domains out meets the same pools again."""
    fitted: dict[tuple[int, ...], tuple[list[QueryFeatures], Router | RouterEnsemble]] = {}

    def fit(queries: list[QueryFeatures]) -> Router | RouterEnsemble:
        key = tuple(map(id, queries))
        if key not in fitted:
            fitted[key] = (queries, fit_router(queries))  # the queries kept alive, so that their ids stay theirs
        return fitted[key][1]

    return fit


def fit_trust_off_domain(router: Router | RouterEnsemble, domains: list[Domain], fit_router: RouterFitter) -> Trust:
    """A :class:`Trust` for ``router`` (trained on every one of ``domains``) learned off domain: each domain's training
    queries scored by a router trained on the other domains (``fit_router``), so that the weight it learns is the one
    that holds where routing was not trained (a train/validation split of all those queries)."""
    if len(domains) < 2:
        raise ValueError("learning trust off domain needs at least two training domains.")
    scored_by = {}  # id(query) -> the router trained without its domain (qids repeat across datasets)
    for held_out in domains:
        inner = fit_router([q for d in domains if d is not held_out for q in d.training])
        scored_by.update({id(q): inner for q in held_out.training})
    queries = [q for d in domains for q in d.training]
    return fit_trust(router, *split(queries), scored_by=lambda q: scored_by[id(q)])


def train_on_every_domain(domains: list[Domain], fit_router: RouterFitter) -> Router | RouterEnsemble:
    """The router to ship: trained on every domain's training queries, with its first-stage trust learned off domain
    (:func:`fit_trust_off_domain`), as ``routehead_trust_off`` is measured."""
    router = fit_router([q for d in domains for q in d.training])
    return with_trust(router, fit_trust_off_domain(router, domains, fit_router))


def leave_one_domain_out(domains: list[Domain], fit_router: RouterFitter | None = None,
                         variants: Mapping[str, RouterFitter] | None = None) -> list[HeldOut]:
    """For each domain: ``bm25`` (the first stage), ``icr``, ``qrhead`` (QRHead-style heads detected on the other
    domains' training queries, summed as published), ``selective_icr`` (ICR over the layer window best on them),
    ``core`` and ``headrank`` (heads those detectors choose there, summed as ICR sums them), ``icr_fused`` (at :func:`best_fixed_weight` of the other
    domains) and, given ``fit_router`` (training queries -> router), ``routehead``: a router trained on the other
    domains' training queries, ranking as at inference, and ``routehead_trust``: that router with the first stage's
    weight predicted per query (:func:`fit_trust`, on a split of the same queries; ``chosen``: its mean weight on
    the held-out queries); and a row per ``variants`` entry (name -> router fitter), trained and ranked like
    ``routehead``."""
    if len(domains) < 2:
        raise ValueError("leaving one domain out needs at least two domains.")
    results = []
    for held_out in domains:
        others = [d for d in domains if d is not held_out and d.training]  # a domain without training queries is
        # only held out (a partial feature cache)
        result = HeldOut(held_out.name)
        result.ndcg["bm25"] = per_query_router_ndcg(held_out.evaluation, None)  # the first-stage order
        result.ndcg["icr"] = icr_ndcg(held_out.evaluation, 0.0)
        result.engine["icr"] = {"mode": "all"}
        pool = [q for d in others for q in d.training]
        train, val = split(pool)
        heads, _ = qrhead_heads(Prepared.of(train), Prepared.of(val))
        result.chosen["qrhead"] = len(heads)
        result.ndcg["qrhead"] = icr_ndcg(held_out.evaluation, 0.0, heads)
        result.engine["qrhead"] = {"mode": "static", "heads": list(heads)}
        window, _ = best_layer_window(pool, n_layers_of(pool))
        result.chosen["selective_icr"] = f"L{window.start}-{window.stop - 1}"
        result.ndcg["selective_icr"] = icr_ndcg(held_out.evaluation, 0.0, window_heads(window, pool))
        result.engine["selective_icr"] = {"mode": "all", "layers": list(window)}
        for name, detector in (("core", core_heads), ("headrank", headrank_heads)):
            detected, setting, _ = detector(train, val)
            result.chosen[name] = f"{len(detected)} {setting}"
            result.ndcg[name] = icr_ndcg(held_out.evaluation, 0.0, detected)
            result.engine[name] = {"mode": "static", "heads": list(detected)}
        weight = best_fixed_weight(others)
        result.chosen["icr_fused"] = weight
        result.ndcg["icr_fused"] = icr_ndcg(held_out.evaluation, weight)
        result.engine["icr_fused"] = {"mode": "all", "fusion_weight": weight}
        for name, fit in (variants or {}).items():
            variant = fit(pool)
            result.chosen[name] = variant.fusion_weight
            result.ndcg[name] = per_query_router_ndcg(held_out.evaluation, variant)
            result.engine[name] = {"router": variant}
        if fit_router is not None:
            router = fit_router(pool)
            result.chosen["routehead"] = router.fusion_weight
            result.ndcg["routehead"] = per_query_router_ndcg(held_out.evaluation, router)
            result.engine["routehead"] = {"router": router}
            trusted = {"routehead_trust": with_trust(router, fit_trust(router, *split(pool)))}
            if len(others) >= 2:
                trusted["routehead_trust_off"] = with_trust(router, fit_trust_off_domain(router, others, fit_router))
            for name, model in trusted.items():
                result.engine[name] = {"router": model}
                result.ndcg[name] = per_query_router_ndcg(held_out.evaluation, model)
                result.chosen[name] = statistics.fmean(
                    model.fusion_weight_for(q.head_scores.double(), w, rank_prior(len(q.gains)), q.embedding)
                    for q in held_out.evaluation for w in [model.weights_for(q.embedding)])
        results.append(result)
    return results


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of ``a - b`` query by query, and its standard error."""
    differences = [x - y for x, y in zip(a, b, strict=True)]
    if len(differences) < 2:
        return (differences[0] if differences else 0.0), 0.0
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))


def table(results: list[HeldOut], floor: str = "icr_fused") -> str:
    """Per held-out domain and method: mean nDCG@10, the difference from BM25 and from ``floor`` (± standard error),
    the median seconds per rerank where timed, and what was chosen on the other domains; then per method, the mean
    over the held-out domains of its difference from BM25 (± the standard error of that mean of independent
    differences) and the domains where it is below BM25 by more than one standard error."""
    timed = any(r.latency for r in results)
    lines = [f"{'held out':<12}{'method':<20}{'queries':>8}{'ndcg@10':>10}{'vs bm25':>20}{'vs ' + floor:>22}"
             f"{format('s/query', '>9') if timed else ''}  chosen"]
    for result in results:
        for method, values in result.ndcg.items():
            vs_bm25 = paired(values, result.ndcg["bm25"])
            vs_floor = paired(values, result.ndcg[floor]) if floor in result.ndcg else (0.0, 0.0)
            chosen = result.chosen.get(method)
            seconds = result.latency.get(method)
            latency = (f"{seconds:>9.2f}" if seconds is not None else f"{'-':>9}") if timed else ""
            lines.append(f"{result.domain:<12}{method:<20}{len(values):>8}{statistics.fmean(values):>10.4f}"
                         f"{vs_bm25[0]:>+11.4f} ± {vs_bm25[1]:.4f}{vs_floor[0]:>+13.4f} ± {vs_floor[1]:.4f}{latency}"
                         f"  {'' if chosen is None else chosen if isinstance(chosen, str) else f'{chosen:.2f}'}")
    methods = [m for m in results[0].ndcg if m != "bm25" and all(m in r.ndcg for r in results)] if results else []
    lines.append(f"\n{'mean over held-out domains':<40}{'vs bm25':>20}  below bm25 by more than 1 s.e.")
    for method in methods:
        differences = [paired(r.ndcg[method], r.ndcg["bm25"]) for r in results]
        mean = statistics.fmean(d for d, _ in differences)
        error = math.sqrt(sum(e * e for _, e in differences)) / len(differences)
        below = [r.domain for r, (d, e) in zip(results, differences) if d < -e]
        lines.append(f"{method:<40}{mean:>+11.4f} ± {error:.4f}  {', '.join(below) or 'none'}")
    return "\n".join(lines)
