"""Classic baselines and unsupervised structure on the cascade's own features.

``python -m studies.baselines`` fits logistic regression, an RBF SVM, k-nearest
neighbours and a multilayer perceptron (scikit-learn) on the same 483 feature
statistics the emotion CNNs read, with the same speaker-independent split:

* hyper-parameters are chosen by 5-fold cross-validation **grouped by speaker**
  over ``train`` + ``val`` (no speaker is in two folds), then the best setting is
  refitted on ``train`` + ``val`` and scored once on ``test``;
* tasks: gender (every gender-labelled clip, LibriSpeech included) and emotion
  with one model per gender, test clips routed by their true gender (compare
  with the shipped CNNs' ``true_gender`` column in ``reports/metrics.md``);
* clustering: k-means, a Gaussian mixture and Ward agglomerative clustering into
  2, 4 and 10 clusters of the emotional ``train`` clips (standardised, then PCA
  to 20 dimensions), scored by homogeneity and normalised mutual information
  against gender, emotion and corpus and by silhouette and Davies-Bouldin.

It writes ``studies/baselines/report.json`` and ``report.md``; notebook 4
draws the same results.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.corpus import Utterance, read_manifest
from training.dataset import FeatureTable, build_table
from training.evaluate import emotion_metrics
from training.reporting import command_line, write_report as _write

CV_FOLDS = 5
#: Where the report goes by default (``report.json``, ``report.md``), beside this module.
STUDY_DIR = Path(__file__).resolve().parent
CLUSTER_COUNTS = (2, 4, 10)
CLUSTER_PCA_DIMS = 20


@dataclass(frozen=True)
class Baseline:
    """A scikit-learn model family and the grid searched for it (keys prefixed ``model__``)."""

    name: str
    grid: dict

    def estimator(self, seed: int = 0):
        """A fresh ``Pipeline(StandardScaler, model)``; the scaler is refitted inside every CV fold."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        model = {
            "logistic regression": lambda: LogisticRegression(max_iter=3000),
            "SVM (RBF)": lambda: SVC(kernel="rbf"),
            "KNN": lambda: KNeighborsClassifier(),
            "MLP": lambda: MLPClassifier(max_iter=300, random_state=seed),
        }[self.name]()
        return Pipeline([("scale", StandardScaler()), ("model", model)])


BASELINES = (
    Baseline("logistic regression", {"model__C": [0.01, 0.1, 1.0]}),
    Baseline("SVM (RBF)", {"model__C": [1.0, 10.0], "model__gamma": ["scale", 0.0005]}),
    Baseline("KNN", {"model__n_neighbors": [5, 15, 45], "model__weights": ["distance"]}),
    Baseline("MLP", {"model__hidden_layer_sizes": [(256,), (256, 128)], "model__alpha": [1e-3, 1e-1]}),
)


def fit_selected(baseline: Baseline, X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, n_jobs: int = 1,
                 seed: int = 0):
    """Grid search grouped by speaker, refit on all of ``X``; returns the fitted ``GridSearchCV``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, GroupKFold

    search = GridSearchCV(baseline.estimator(seed), baseline.grid, cv=GroupKFold(n_splits=CV_FOLDS),
                          scoring="accuracy", n_jobs=n_jobs, refit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y, groups=groups)
    return search


def _task_result(search, seconds: float, test_metrics: dict) -> dict:
    best = search.best_index_
    return {
        "best_params": {k.removeprefix("model__"): (list(v) if isinstance(v, tuple) else v)
                        for k, v in search.best_params_.items()},
        "cv_accuracy": float(search.cv_results_["mean_test_score"][best]),
        "cv_accuracy_std": float(search.cv_results_["std_test_score"][best]),
        "search_seconds": round(seconds, 1),
        "test": test_metrics,
    }


def _accuracy(y_true, y_pred) -> dict:
    return {"n": int(len(y_true)), "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))}


def run_classifiers(table: FeatureTable, *, baselines: Sequence[Baseline] = BASELINES, n_jobs: int = 1,
                    progress: bool = False) -> dict:
    """Gender and per-gender emotion baselines: ``{"gender": {model: result}, "emotion": {model: {...}}}``."""
    results: dict = {"gender": {}, "emotion": {}}

    def fit(task: str, X, y, groups, X_test, y_test, metric):
        out = {}
        for baseline in baselines:
            start = time.perf_counter()
            search = fit_selected(baseline, X, y, groups, n_jobs=n_jobs)
            pred = search.predict(X_test)
            out[baseline.name] = (_task_result(search, time.perf_counter() - start, metric(y_test, pred)), pred)
            if progress:
                print(f"  {task} / {baseline.name}: cv {out[baseline.name][0]['cv_accuracy']:.3f}, "
                      f"test {out[baseline.name][0]['test']['accuracy']:.3f}", flush=True)
        return out

    train = table.select(lambda u: u.split in ("train", "val"))
    test = table.select(lambda u: u.split == "test")
    gender = fit("gender", train.X, train.labels("gender"), train.labels("speaker"),
                 test.X, test.labels("gender"), _accuracy)
    results["gender"] = {name: r for name, (r, _) in gender.items()}

    test_emotional = [i for i, u in enumerate(test.utterances) if u.emotion]
    y_test = np.array([test.utterances[i].emotion for i in test_emotional])
    routed = {name: np.empty(len(test_emotional), dtype=object) for name in (b.name for b in baselines)}
    for g in ("male", "female"):
        part = train.select(lambda u, g=g: bool(u.emotion) and u.gender == g)
        mine = [k for k, i in enumerate(test_emotional) if test.utterances[i].gender == g]
        per_model = fit(f"emotion/{g}", part.X, part.labels("emotion"), part.labels("speaker"),
                        test.X[[test_emotional[k] for k in mine]], y_test[mine], emotion_metrics)
        for name, (r, pred) in per_model.items():
            results["emotion"].setdefault(name, {})[g] = r
            routed[name][mine] = pred
    ravdess = np.array([test.utterances[i].corpus == "ravdess" for i in test_emotional])
    for name, pred in routed.items():
        results["emotion"][name]["routed_by_true_gender"] = {
            "all": emotion_metrics(y_test, pred), "ravdess": emotion_metrics(y_test[ravdess], pred[ravdess])}
    return results


@dataclass(frozen=True)
class Clustering:
    """Clusters of one algorithm at one ``k`` and their scores (``labels [n]`` cluster per row)."""

    algorithm: str
    k: int
    labels: np.ndarray
    scores: dict


def cluster_structure(X: np.ndarray, truths: dict[str, Sequence[str]], *, counts: Sequence[int] = CLUSTER_COUNTS,
                      seed: int = 0) -> tuple[np.ndarray, list[Clustering]]:
    """Cluster ``X [n, d]`` with k-means, a Gaussian mixture and Ward linkage for each ``k``.

    Returns the 2-D PCA projection ``[n, 2]`` (for drawing) and one :class:`Clustering`
    per (algorithm, k) with homogeneity and NMI against each ``truths`` labelling,
    silhouette and Davies-Bouldin (computed in the 20-D space that was clustered).
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import (davies_bouldin_score, homogeneity_score, normalized_mutual_info_score,
                                 silhouette_score)
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(X)
    reduced = PCA(n_components=min(CLUSTER_PCA_DIMS, Z.shape[1]), random_state=seed).fit_transform(Z)
    algorithms = {
        "k-means": lambda k: KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced),
        "Gaussian mixture": lambda k: GaussianMixture(n_components=k, covariance_type="full", n_init=2,
                                                      random_state=seed).fit(reduced).predict(reduced),
        "agglomerative (Ward)": lambda k: AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(reduced),
    }
    out = []
    for name, cluster in algorithms.items():
        for k in counts:
            labels = cluster(k)
            scores = {}
            for truth_name, truth in truths.items():
                scores[f"homogeneity_{truth_name}"] = float(homogeneity_score(truth, labels))
                scores[f"nmi_{truth_name}"] = float(normalized_mutual_info_score(truth, labels))
            distinct = len(set(labels.tolist()))
            scores["silhouette"] = float(silhouette_score(reduced, labels)) if distinct > 1 else float("nan")
            scores["davies_bouldin"] = float(davies_bouldin_score(reduced, labels)) if distinct > 1 else float("nan")
            out.append(Clustering(name, k, labels, scores))
    return reduced[:, :2], out


def feature_table(utterances: Sequence[Utterance] | None = None) -> FeatureTable:
    """Features of every manifest row (cached in ``cache/features``)."""
    return build_table(list(utterances) if utterances is not None else read_manifest())


def to_markdown(results: dict, clusters: list[Clustering]) -> str:
    lines = ["# Classic baselines on the cascade's features", "",
             f"Hyper-parameters by {CV_FOLDS}-fold cross-validation grouped by speaker over train+val, refitted on "
             "train+val, scored on the test speakers. Generated by `python -m studies.baselines`.", "",
             "## Gender", "", "| model | best setting | CV accuracy | test accuracy |", "|---|---|---:|---:|"]
    for name, r in results["gender"].items():
        lines.append(f"| {name} | `{json.dumps(r['best_params'])}` | {100 * r['cv_accuracy']:.1f}% ± "
                     f"{100 * r['cv_accuracy_std']:.1f} | {100 * r['test']['accuracy']:.1f}% |")
    lines += ["", "## Emotion (8 classes, one model per gender, test clips routed by true gender)", "",
              "| model | male setting (CV acc) | female setting (CV acc) | test all: acc / macro-F1 | RAVDESS test actors |",
              "|---|---|---|---:|---:|"]
    for name, r in results["emotion"].items():
        cells = [f"`{json.dumps(r[g]['best_params'])}` ({100 * r[g]['cv_accuracy']:.1f}%)" for g in ("male", "female")]
        a, rv = r["routed_by_true_gender"]["all"], r["routed_by_true_gender"]["ravdess"]
        ravdess = f"{100 * rv['accuracy']:.1f}%" if rv.get("n") else "n/a"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {100 * a['accuracy']:.1f}% / {a['macro_f1']:.3f} | "
                     f"{ravdess} |")
    lines += ["", "## Clustering of the emotional train clips", "",
              "| algorithm | k | homogeneity gender | NMI gender | homogeneity emotion | NMI emotion | NMI corpus | "
              "silhouette | Davies-Bouldin |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in clusters:
        s = c.scores
        corpus = f"{s['nmi_corpus']:.3f}" if "nmi_corpus" in s else "n/a"
        lines.append(f"| {c.algorithm} | {c.k} | {s['homogeneity_gender']:.3f} | {s['nmi_gender']:.3f} | "
                     f"{s['homogeneity_emotion']:.3f} | {s['nmi_emotion']:.3f} | {corpus} | {s['silhouette']:.3f} | "
                     f"{s['davies_bouldin']:.2f} |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, clusters: list[Clustering], stem: Path = STUDY_DIR / "report", *,
                 command: str | None = None, config=None) -> str:
    """Write ``STEM.json`` and ``STEM.md`` (:func:`training.reporting.write_report`); returns the Markdown."""
    payload = {"classifiers": results,
               "clustering": [{"algorithm": c.algorithm, "k": c.k, **c.scores} for c in clusters]}
    text = to_markdown(results, clusters)
    _write(stem, payload, text, command=command, config=config)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.baselines", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.json and STEM.md (default studies/baselines/report)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel CV fits (default 2)")
    args = parser.parse_args(argv)
    table = feature_table()
    results = run_classifiers(table, n_jobs=args.jobs, progress=True)
    train = table.select(lambda u: u.split == "train" and bool(u.emotion))
    _, clusters = cluster_structure(train.X, {k: train.labels(k) for k in ("gender", "emotion", "corpus")})
    print(write_report(results, clusters, args.out, command=command_line("studies.baselines", argv), config=args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
