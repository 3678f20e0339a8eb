"""Emotion on a corpus the emotion models never saw.

Usage::

    python -m studies.emotion_holdout                                          # ravdess, ased, emovo
    python -m studies.emotion_holdout --corpora emovo --seeds 1 --out /tmp/eh  # quicker, one seed

The report goes to ``studies/emotion_holdout/report.{json,md}`` unless ``--out STEM`` says otherwise.

The ``test`` split only holds new *speakers* of corpora the models were trained
on. Users' recordings differ in language, microphone and speaking style too, so
for each held-out corpus C this trains the pooled, male and female emotion
models with the shipped recipe (:class:`training.emotion_train.TrainConfig`,
``train`` + ``val`` of every other emotional corpus) and scores **every**
emotional row of C, routed by the speaker's true gender (and with the pooled
model). Gender is taken as known so that the figure is about emotion alone (the
gender model's own held-out check is :mod:`studies.gender_holdout`).

Labels a held-out corpus has but the others lack can never be predicted right
(without RAVDESS, no training corpus has ``calm``), so the report also gives
accuracy on the rows whose label the training knew, and the chance level (the
share of the commonest label). Beside it, the shipped models (C seen) and the
held-out models (C never seen) on C's ``test`` rows: the same speakers, new to
both. Intervals: 95% bootstrap over speakers. Nothing is chosen on these numbers.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from training.corpus import Utterance, read_manifest
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from training.reporting import command_line, pct, write_report

#: Where the report goes by default, beside this module.
STUDY_DIR = Path(__file__).resolve().parent

#: Corpora a held-out check makes sense for (SAVEE has male speakers only: no female model changes).
DEFAULT_CORPORA = ("ravdess", "ased", "emovo")


@dataclass
class CorpusResult:
    """Emotion on one held-out corpus.

    Attributes:
        corpus: the corpus left out of training.
        trained_on: the corpora the held-out models were fitted on.
        n, n_speakers: emotional rows (clips) and speakers of the corpus scored.
        routed: :func:`pipeline.evaluate.emotion_metrics` of the gender models routed by true gender.
        interval: 95% speaker-bootstrap interval of ``routed`` accuracy, ``[low, high]``.
        pooled: the same for the pooled (gender-agnostic) model.
        per_gender: ``routed`` metrics per speaker gender.
        known_labels: labels of the corpus that the training rows contain.
        routed_known: ``routed`` metrics on the rows whose label is in ``known_labels``.
        chance: share of the corpus's commonest label (accuracy of always guessing it).
        test_seen, test_unseen: routed metrics on the corpus's ``test`` rows of the shipped
            models (corpus seen) and of the held-out models (corpus never seen); ``None``
            when no shipped models were given.
    """

    corpus: str
    trained_on: list[str]
    n: int
    n_speakers: int
    routed: dict
    interval: list[float]
    pooled: dict
    per_gender: dict
    known_labels: list[str]
    routed_known: dict
    chance: float
    test_seen: dict | None
    test_unseen: dict


def route_by_gender(models: Mapping[str, EmotionModel], X: np.ndarray, genders: Sequence[str]) -> np.ndarray:
    """Emotion labels for feature rows ``X [n, n_features]``, each scored by ``models[gender]``
    (:func:`training.emotion_conditions.routed_labels`). ``genders [n]``: ``"male"`` / ``"female"``."""
    from training.emotion_conditions import routed_labels

    return routed_labels(models, X, genders)


def score_corpus(corpus: str, rows: Sequence[Utterance], X: np.ndarray, held_out: Mapping[str, EmotionModel],
                 *, trained_labels: Sequence[str], trained_on: Sequence[str],
                 shipped: Mapping[str, EmotionModel] | None = None, n_boot: int = 2000) -> CorpusResult:
    """Score the rows of the held-out ``corpus`` (features ``X [n, n_features]``) with ``held_out`` models.

    ``held_out`` and ``shipped`` map ``"male"``, ``"female"`` (and ``"pooled"`` for
    ``held_out``) to emotion models; ``trained_labels`` are the labels present in
    the held-out models' training rows.
    """
    from training.evaluate import emotion_metrics
    from training.stats import speaker_bootstrap

    truth = np.array([u.emotion for u in rows], dtype=object)
    genders = [u.gender for u in rows]
    routed = route_by_gender(held_out, X, genders)
    pooled = np.asarray(EMOTION_LABELS, dtype=object)[held_out["pooled"].predict_proba(X).argmax(1)]
    right = truth == routed
    interval = speaker_bootstrap([u.speaker for u in rows], lambda idx: float(right[idx].mean()), n_boot=n_boot)
    known = [label for label in EMOTION_LABELS if label in set(truth) and label in set(trained_labels)]
    in_known = np.isin(truth, known)
    labels, counts = np.unique(truth, return_counts=True)
    test = np.array([u.split == "test" for u in rows])
    return CorpusResult(
        corpus=corpus,
        trained_on=sorted(trained_on),
        n=len(rows),
        n_speakers=len({u.speaker for u in rows}),
        routed=emotion_metrics(truth, routed),
        interval=[interval.low, interval.high],
        pooled=emotion_metrics(truth, pooled),
        per_gender={g: emotion_metrics(truth[np.asarray(genders) == g], routed[np.asarray(genders) == g])
                    for g in ("female", "male") if g in genders},
        known_labels=known,
        routed_known=emotion_metrics(truth[in_known], routed[in_known]),
        chance=float(counts.max() / counts.sum()),
        test_seen=(emotion_metrics(truth[test], route_by_gender(shipped, X[test], np.asarray(genders)[test]))
                   if shipped is not None and test.any() else None),
        test_unseen=emotion_metrics(truth[test], routed[test]),
    )


def run(corpora: Sequence[str] = DEFAULT_CORPORA, *, n_seeds: int | None = None,
        shipped_dirs: Mapping[str, str | Path] | None = None, jobs: int | None = None) -> list[CorpusResult]:
    """Train a held-out family per corpus in ``corpora`` and score it (see the module docstring).

    ``n_seeds`` overrides the shipped ensemble size (default: the shipped recipe's).
    ``shipped_dirs`` maps ``"male"`` / ``"female"`` to the shipped model folders
    (``None``: skip the seen-vs-never-seen comparison).
    """
    from training.dataset import build_table
    from training.emotion_train import EMOTION_CORPORA, TrainConfig, emotion_rows, train_family

    rows = emotion_rows(read_manifest())
    present = {u.corpus for u in rows}
    unknown = [c for c in corpora if c not in EMOTION_CORPORA or c not in present]
    if unknown:
        raise ValueError(f"cannot hold out {unknown}: emotional corpora here are {sorted(present)}")
    table = build_table(rows, jobs=jobs)
    shipped = ({g: EmotionModel.load(d) for g, d in shipped_dirs.items()} if shipped_dirs else None)
    results = []
    for corpus in corpora:
        others = tuple(c for c in EMOTION_CORPORA if c != corpus and c in present)
        config = replace(TrainConfig(), corpora=others, **({"n_seeds": n_seeds} if n_seeds else {}))
        print(f"{corpus}: training on {', '.join(others)}", file=sys.stderr, flush=True)
        models, _ = train_family(config, jobs=jobs, verbose=False)
        trained_labels = {u.emotion for u in rows if u.corpus in others and u.split in config.fit_splits}
        keep = [i for i, u in enumerate(rows) if u.corpus == corpus and table.ok[i]]
        result = score_corpus(corpus, [rows[i] for i in keep], table.X[keep], models,
                              trained_labels=sorted(trained_labels), trained_on=others, shipped=shipped)
        print(f"{corpus}: {100 * result.routed['accuracy']:.1f}% of {result.n}", file=sys.stderr, flush=True)
        results.append(result)
    return results


def _accuracy(m: dict | None) -> str:
    """The accuracy of an :func:`~training.evaluate.emotion_metrics` dict, ``–`` when it scored nothing."""
    return pct(m["accuracy"]) if m and m.get("n") else "–"


def to_markdown(results: Sequence[CorpusResult], *, command: str, n_seeds: int) -> str:
    """The report: one row per held-out corpus, per-class recall, seen vs never seen on ``test``."""
    lines = [
        "# Emotion on corpora the models never saw", "",
        f"Generated by `{command}`. For each corpus, the pooled, male and female emotion models are trained "
        f"with the shipped recipe ({n_seeds}-member ensembles, `train` + `val` of every other emotional corpus) "
        "and score every emotional clip of the held-out corpus, routed by the speaker's true gender, so the "
        "figures are about emotion alone. Intervals: 95% bootstrap over speakers. Nothing was chosen on these "
        "numbers.", "",
        "| held out | trained on | clips | speakers | accuracy | 95% interval | macro-F1 | women | men "
        "| pooled model | labels the training knew | accuracy on those | chance |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.corpus} | {', '.join(r.trained_on)} | {r.n} | {r.n_speakers} | {_accuracy(r.routed)} "
            f"| {100 * r.interval[0]:.1f}%-{100 * r.interval[1]:.1f}% | {r.routed['macro_f1']:.3f} "
            f"| {_accuracy(r.per_gender.get('female'))} | {_accuracy(r.per_gender.get('male'))} | {_accuracy(r.pooled)} "
            f"| {len(r.known_labels)} of {len(r.routed['recall'])} | {_accuracy(r.routed_known)} | {100 * r.chance:.1f}% |")
    lines += ["", "## Recall per emotion (routed by true gender)", "",
              "| held out | " + " | ".join(EMOTION_LABELS) + " |", "|---|" + "---:|" * len(EMOTION_LABELS)]
    for r in results:
        cells = [f"{100 * r.routed['recall'][label]:.0f}%" if label in r.routed["recall"] else "–"
                 for label in EMOTION_LABELS]
        lines.append(f"| {r.corpus} | " + " | ".join(cells) + " |")
    if any(r.test_seen is not None for r in results):
        lines += ["", "## The same `test` rows, corpus seen vs never seen", "",
                  "The shipped models saw the corpus's `train` and `val` speakers; the held-out models saw none "
                  "of it. Both meet these `test` speakers for the first time (routed by true gender).", "",
                  "| corpus | test clips | shipped models (corpus seen) | held-out models (corpus never seen) |",
                  "|---|---:|---:|---:|"]
        for r in results:
            lines.append(f"| {r.corpus} | {r.test_unseen.get('n', 0)} | {_accuracy(r.test_seen)} | {_accuracy(r.test_unseen)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.emotion_holdout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=list(DEFAULT_CORPORA), help="corpora to hold out, one at a time")
    parser.add_argument("--seeds", type=int, default=None, help="ensemble size (default: the shipped recipe's)")
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.md and STEM.json (default studies/emotion_holdout/report)")
    parser.add_argument("--no-shipped", action="store_true", help="skip the comparison with the shipped models")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    args = parser.parse_args(argv)
    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR
    from pipeline.emotion import configure_tensorflow
    from training.emotion_train import TrainConfig

    configure_tensorflow(args.threads)
    try:
        results = run(args.corpora, n_seeds=args.seeds,
                      shipped_dirs=None if args.no_shipped else {"male": MALE_MODEL_DIR, "female": FEMALE_MODEL_DIR})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = command_line("studies.emotion_holdout", argv)
    n_seeds = args.seeds or TrainConfig().n_seeds
    text = to_markdown(results, command=command, n_seeds=n_seeds)
    write_report(args.out, {"command": command, "n_seeds": n_seeds, "results": [asdict(r) for r in results]}, text,
                 command=command, config=args)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
