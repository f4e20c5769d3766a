"""Is ``relevance_score`` calibrated where it was not fitted? Leave one domain out, the easy pairs, and filler.

1. Leave one domain out over SciFact, TREC DL19 and Cranfield (the queries of ``benchmarks/out_of_domain.py``, from
   the feature cache: BM25 top-20, 150 words): the default mode's relevance model fitted on two domains' training
   queries, measured on the third's evaluation queries: expected calibration error (10 equal-width bins), AUC (so
   that a model that predicts the base rate everywhere cannot pass), the base rate and the mean prediction. Beside
   it, ``score only``: the same fit with the mode's score (z-scored in its list) as the only evidence, a monotone map
   of a list-relative score as the Platt map shipped before was.
2. Easy pairs (``routehead_rag.bench.easy_pairs``: a SciFact test query's relevant abstract and 4 random ones, both
   orders): the shipped model's scores, as a user gets them; the share of queries whose relevant abstract scores
   at least 0.5, and of random abstracts scoring at most 0.1.
3. An empty document and a few words of filler beside a relevant abstract, live (a few short forwards): their
   highest score.

A document is relevant from the grade its track counts for binary measures (TREC DL: 2, "highly relevant"; the
others: 1), and again with every grade above 0, for comparison. Queries not cached yet are left out with
``--partial``.

    python benchmarks/calibration.py [--partial] [--json out.json] [--plot reliability.png] [--no-live]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from out_of_domain import DATA, DEPTH, SOURCES, sampled

from routehead_rag import RouteHeadReranker
from routehead_rag.bench.easy_pairs import easy_pairs, pair_features
from routehead_rag.calibration import Calibration, auc, domain_weights, expected_calibration_error, fit_monotone
from routehead_rag.data.datasets import load_dataset
from routehead_rag.features import replay_evidence
from routehead_rag.training.calibrate import labelled_features, replayed_evidence

EASY_QUERIES, EASY_K = 40, 4
# the lowest grade each domain counts as relevant, as its track binarizes: TREC DL's passage judgements are 0
# (irrelevant), 1 (related: on topic, but does not answer), 2 (highly relevant) and 3 (perfectly relevant), and the
# track counts 2 and 3 for its binary measures (Craswell et al., TREC 2019 Deep Learning track overview); SciFact's
# qrels hold 1 only; Cranfield's codes 1-4 all mark some relevance
TRACK_GRADES = {"dl19": 2}
FILLER = ("", "Lorem ipsum dolor sit amet.", "Click here to read more.")


def replayed(source: tuple, reranker: RouteHeadReranker, partial: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The evidence of every cached candidate of ``source``'s sample, ``[n_pairs, n_features]``, and its grade,
    ``[n_pairs]`` (replayed once, whichever grades then count as relevant)."""
    labelled = labelled_features(reranker, sampled(source)[0], DEPTH, missing="skip" if partial else "error")
    evidence, _ = replayed_evidence(reranker, labelled)
    grades = torch.cat([e.gains for e in labelled.features]) if labelled.features else torch.zeros(0)
    return evidence, grades


def fitted(evidence: torch.Tensor, relevant: torch.Tensor, sizes: list[int]) -> Calibration:
    """``routehead calibrate``'s fit: non-negative weights, each domain (``sizes``: its candidates) alike."""
    coef, intercept, mean, scale = fit_monotone(evidence, relevant, domain_weights(sizes))
    return Calibration(coef=coef, intercept=intercept, mean=mean, scale=scale, setup={})


def measured(probabilities: list[float], relevant: list[bool], bins: int) -> dict:
    result = expected_calibration_error(probabilities, relevant, bins)
    result.update(pairs=len(relevant), auc=auc(probabilities, relevant),
                  fraction_relevant=round(sum(relevant) / len(relevant), 4),
                  mean_relevance_score=round(statistics.fmean(probabilities), 4))
    return result


def leave_one_domain_out(evidence: dict[str, tuple[tuple, tuple]], bins: int,
                         min_grades: dict[str, int]) -> dict[str, dict]:
    """Per held-out domain: ``{"evidence": result, "score only": result}`` (see :func:`measured`). ``evidence``: per
    domain, the :func:`replayed` evidence and grades of its evaluation and training queries; ``min_grades``: per
    domain, the lowest grade that counts as relevant (default 1)."""
    evaluation, training = {}, {}
    for name, ((eval_x, eval_grades), (train_x, train_grades)) in evidence.items():
        grade = min_grades.get(name, 1)
        evaluation[name] = eval_x, eval_grades >= grade
        training[name] = train_x, train_grades >= grade
    results: dict[str, dict] = {}
    for held_out, (evidence, relevant) in evaluation.items():
        rest = [training[n] for n in training if n != held_out and len(training[n][1])]
        if not len(relevant) or not rest:
            print(f"{held_out}: nothing cached to measure on or fit with yet; left out")
            continue
        fit_x, fit_y = torch.cat([x for x, _ in rest]), torch.cat([y for _, y in rest])
        standing = evidence.shape[1] - 1  # the mode's score, z-scored in its list: the relative evidence alone
        for variant, columns in (("evidence", list(range(evidence.shape[1]))), ("score only", [standing])):
            model = fitted(fit_x[:, columns], fit_y, [len(y) for _, y in rest])
            probabilities = model(evidence[:, columns]).tolist()
            result = measured(probabilities, relevant.tolist(), bins)
            result.update(fitted_on=[n for n in training if n != held_out], fit_pairs=len(fit_y))
            results.setdefault(held_out, {})[variant] = result
    return results


def easy_pair_rows(reranker: RouteHeadReranker, partial: bool) -> dict:
    """The shipped model's relevance scores on the easy pairs, both orders."""
    pairs = easy_pairs(load_dataset(str(DATA / "beir" / "scifact"), split="test"), EASY_QUERIES, EASY_K)
    features = pair_features(pairs, reranker, missing="skip" if partial else "compute")
    relevant, negative = [], []
    for qid, by_order in features.items():
        for order, entry in by_order.items():
            doc_ids = pairs.lists[qid][order]
            scores = reranker.calibration(replay_evidence(reranker, entry, pairs.queries[qid],
                                                          [pairs.dataset.corpus[d] for d in doc_ids])[1]).tolist()
            for d, p in zip(doc_ids, scores):
                (relevant if d == pairs.relevant[qid] else negative).append(p)
    if not relevant:
        return {"lists": 0}
    return {"lists": len(relevant), "relevant_at_least_0.5": round(sum(p >= 0.5 for p in relevant) / len(relevant), 4),
            "random_at_most_0.1": round(sum(p <= 0.1 for p in negative) / len(negative), 4),
            "mean_relevant": round(statistics.fmean(relevant), 4), "mean_random": round(statistics.fmean(negative), 4),
            "auc": auc(relevant + negative, [True] * len(relevant) + [False] * len(negative))}


def filler_rows(reranker: RouteHeadReranker, n_queries: int) -> dict:
    """Live: ``n_queries`` easy-pairs queries, each with its relevant abstract and :data:`FILLER`; the highest score of
    each filler text and the mean of the relevant abstracts."""
    pairs = easy_pairs(load_dataset(str(DATA / "beir" / "scifact"), split="test"), n_queries, EASY_K)
    worst = {text: 0.0 for text in FILLER}
    relevant = []
    for qid, query in pairs.queries.items():
        docs = [pairs.dataset.corpus[pairs.relevant[qid]], *FILLER]
        for r in reranker.rerank(query, docs, first_stage="none"):
            if r.index == 0:
                relevant.append(r.relevance_score)
            else:
                worst[FILLER[r.index - 1]] = max(worst[FILLER[r.index - 1]], r.relevance_score)
    return {"queries": len(relevant), "mean_relevant": round(statistics.fmean(relevant), 4),
            **{f"max {text!r}": round(p, 4) for text, p in worst.items()}}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for ax, (name, by_variant) in zip(axes[0], results.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
        for variant, result in by_variant.items():
            filled = [b for b in result["bins"] if b["count"]]
            ax.plot([b["mean_predicted"] for b in filled], [b["fraction_relevant"] for b in filled], marker="o",
                    label=f"{variant}: ECE {result['ece']:.3f}, AUC {result['auc']}")
        ax.set(title=f"{name} held out ({next(iter(by_variant.values()))['pairs']} candidates)",
               xlabel="relevance_score (bin mean)", ylabel="fraction relevant", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partial", action="store_true", help="use the queries cached so far")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--no-live", action="store_true", help="leave out the filler check (a few forwards)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, help="reliability diagram of the held-out domains (PNG)")
    args = parser.parse_args()
    reranker = RouteHeadReranker()  # the default mode, as a user gets it
    print(f"mode {reranker.mode} ({reranker.aggregation}); shipped relevance model: {reranker.calibration.fit}, "
          f"fitted on {reranker.calibration.fitted_on.get('data')}")
    evidence = {}
    for name, (eval_source, train_source) in SOURCES.items():
        evaluated = replayed(eval_source, reranker, args.partial)
        evidence[name] = evaluated, replayed(train_source, reranker, args.partial) if train_source else evaluated
    lodo = {}
    for labels, min_grades in (("as each track binarizes its grades (TREC DL: 2 and up)", TRACK_GRADES),
                               ("every grade above 0 relevant", {})):
        lodo[labels] = leave_one_domain_out(evidence, args.bins, min_grades)
        print(f"\nleave one domain out ({', '.join(SOURCES)}), relevance model fitted on the other two; relevant: "
              f"{labels}")
        print(f"{'held out':<10} {'evidence':<11} {'pairs':>6} {'relevant':>9} {'mean p':>7} {'ECE':>7} {'AUC':>7}")
        for name, by_variant in lodo[labels].items():
            for variant, r in by_variant.items():
                print(f"{name:<10} {variant:<11} {r['pairs']:>6} {r['fraction_relevant']:>9.3f} "
                      f"{r['mean_relevance_score']:>7.3f} {r['ece']:>7.4f} {r['auc']!s:>7}")
    easy = easy_pair_rows(reranker, args.partial)
    print(f"\neasy pairs (shipped model; relevant abstract + {EASY_K} random, both orders): {easy}")
    live = None if args.no_live else filler_rows(reranker, 5)
    if live is not None:
        print(f"empty and filler documents beside a relevant abstract (shipped model, first_stage='none'): {live}")
    if args.json:
        Path(args.json).write_text(json.dumps({"leave_one_domain_out": lodo, "easy_pairs": easy, "filler": live},
                                              indent=1) + "\n")
    primary = next(iter(lodo.values()))
    if args.plot and primary:
        plot(primary, args.plot)
        print(f"reliability plot -> {args.plot}")


if __name__ == "__main__":
    main()
