"""How well ``relevance_score`` is calibrated on held-out queries: expected calibration error and a reliability plot.

The queries and candidates are the bench's (``routehead bench --depth 20``: SciFact test, the seeded sample of
``--max-queries``, and all of TREC DL19), read from the same feature cache, so after the bench this costs no model
time. A document counts as relevant where its grade is above 0 (the nDCG convention). For each mode whose default
reranker has a calibration, the ECE over 10 equal-width bins of the predicted probability.

    python benchmarks/calibration.py --json calibration.json --plot reliability.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routehead_rag import RouteHeadReranker
from routehead_rag.calibration import expected_calibration_error
from routehead_rag.data.datasets import load_dataset, sample_queries
from routehead_rag.training.calibrate import labelled_features, replayed_scores

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DL19 = SHARED / "trec-dl" / "dl19"
DATASETS = {  # name -> (dataset, qrels)
    "scifact-test": ("beir/scifact/test", None),
    "dl19": (str(DL19 / "bm25_top100_with_passages.rank_llm.json"), str(DL19 / "qrels.dl19-passage.txt")),
}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for ax, (name, by_mode) in zip(axes[0], results.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
        for mode, result in by_mode.items():
            filled = [b for b in result["bins"] if b["count"]]
            ax.plot([b["mean_predicted"] for b in filled], [b["fraction_relevant"] for b in filled], marker="o",
                    label=f"{mode}: ECE {result['ece']:.3f}")
        ax.set(title=f"{name} ({next(iter(by_mode.values()))['pairs']} candidates)", xlabel="relevance_score (bin mean)",
               ylabel="fraction relevant", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="routed,all,static", help="modes of the default reranker to check")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-queries", type=int, default=100, help="SciFact test sample, as the bench's")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, help="reliability diagram (PNG)")
    args = parser.parse_args()
    rerankers = {mode: RouteHeadReranker(mode=mode) for mode in args.modes.split(",")}
    missing = [mode for mode, r in rerankers.items() if r.calibration is None]
    if missing:
        print(f"no calibration for modes {missing}; fit one with `routehead calibrate --mode ...`")
    results: dict[str, dict] = {}
    calibrated = {mode: r for mode, r in rerankers.items() if r.calibration is not None}
    for name, (spec, qrels) in DATASETS.items() if calibrated else ():
        dataset = load_dataset(spec, qrels_path=qrels)
        if name == "scifact-test" and args.max_queries:
            dataset = sample_queries(dataset, args.max_queries)  # the bench's seeded sample
        features = labelled_features(next(iter(calibrated.values())), dataset, args.depth)  # one cache for all modes
        for mode, reranker in calibrated.items():
            scores, relevant = replayed_scores(reranker, dataset, features)
            probabilities, relevant = reranker.calibration(scores).tolist(), relevant.tolist()
            result = expected_calibration_error(probabilities, relevant, args.bins)
            result.update(pairs=len(relevant), fraction_relevant=round(sum(relevant) / len(relevant), 4),
                          mean_relevance_score=round(sum(probabilities) / len(probabilities), 4))
            results.setdefault(name, {})[mode] = result
            print(f"{name:<14} {mode:<7} ECE {result['ece']:.4f}  ({result['pairs']} candidates, "
                  f"{result['fraction_relevant']:.3f} relevant, mean relevance_score "
                  f"{result['mean_relevance_score']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.plot and results:
        plot(results, args.plot)
        print(f"reliability plot -> {args.plot}")


if __name__ == "__main__":
    main()
