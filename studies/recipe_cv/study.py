"""Choose how long the emotion CNNs train, by cross-validation over speakers.

    python -m studies.recipe_cv          # writes studies/recipe_cv/report.{json,md}

The shipped emotion models are fitted on the ``train`` and ``val`` speakers
together, for a fixed number of epochs, without early stopping. Those two
numbers (pre-training epochs on both genders, then fine-tuning epochs on one
gender) are chosen here, without touching ``test``:

1. The emotional rows of ``train`` + ``val`` are split into ``folds`` groups of
   speakers (:class:`sklearn.model_selection.StratifiedGroupKFold`: no speaker
   in two folds; corpus x gender mixed evenly over the folds).
2. For every fold, a network is pre-trained on the other folds' speakers
   (clean rows plus their augmented copies, the recipe of
   :mod:`training.emotion_train`) for ``max_epochs`` epochs; after every epoch
   it predicts the held-out speakers' clean rows.
3. Each clip is thus predicted once per epoch by a network that never heard
   its speaker. The pre-training length is the epoch with the highest
   corpus-balanced accuracy (mean over corpora of held-out accuracy, smoothed
   over 3 epochs): ASED has half the clips, and the product is meant for any
   voice, not for Amharic first.
4. From each fold's network at that epoch, a copy is fine-tuned on each
   gender for up to ``max_finetune_epochs`` epochs, predicting that gender's
   held-out clips after every epoch; the fine-tuning length (0 allowed: no
   fine-tuning) is chosen the same way.

One network per fold (seed ``seed + fold``); the shipped models average
several seeds, so their curves are smoother than these.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from training.corpus import Utterance
from pipeline.emotion import EMOTION_LABELS, build_cnn, configure_tensorflow
from training.emotion_train import Split, TrainConfig, _fit, concatenate, training_rows
from training.reporting import command_line, write_report as _write

SMOOTHING = 3
#: Where the report goes by default (``report.json``, ``report.md``), beside this module.
STUDY_DIR = Path(__file__).resolve().parent


@dataclass
class Curve:
    """Held-out accuracy after each epoch (index 0 = epoch ``first_epoch``).

    ``balanced[e]`` is the mean over corpora of ``per_corpus[corpus][e]``.
    """

    first_epoch: int
    overall: list[float]
    balanced: list[float]
    per_corpus: dict[str, list[float]]
    per_gender: dict[str, list[float]]

    def at(self, epoch: int) -> dict:
        """Accuracies after ``epoch`` epochs."""
        i = epoch - self.first_epoch
        return {"overall": self.overall[i], "balanced": self.balanced[i],
                **{f"corpus/{c}": v[i] for c, v in self.per_corpus.items()},
                **{f"gender/{g}": v[i] for g, v in self.per_gender.items()}}


def speaker_folds(utterances: Sequence[Utterance], n_folds: int, *, seed: int = 0) -> np.ndarray:
    """Fold index ``[n]`` of each row: speakers never straddle folds; corpus x gender spread evenly."""
    from sklearn.model_selection import StratifiedGroupKFold

    strata = [f"{u.corpus}/{u.gender}" for u in utterances]
    groups = [u.speaker for u in utterances]
    fold = np.full(len(utterances), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(strata)), strata, groups)):
        fold[held] = k
    return fold


def curve(predictions: np.ndarray, utterances: Sequence[Utterance], *, first_epoch: int = 1) -> Curve:
    """Accuracy curves of ``predictions [epochs, n]`` (class indices) against ``utterances``' emotions."""
    truth = np.array([EMOTION_LABELS.index(u.emotion) for u in utterances])
    correct = predictions == truth[None, :]

    def mean_over(mask: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in correct[:, mask].mean(axis=1)]

    corpora = sorted({u.corpus for u in utterances})
    per_corpus = {c: mean_over(np.array([u.corpus == c for u in utterances])) for c in corpora}
    per_gender = {g: mean_over(np.array([u.gender == g for u in utterances])) for g in ("male", "female")}
    balanced = [round(float(np.mean([per_corpus[c][e] for c in corpora])), 4) for e in range(len(predictions))]
    return Curve(first_epoch, mean_over(np.ones(len(utterances), dtype=bool)), balanced, per_corpus, per_gender)


def best_epoch(c: Curve, *, width: int = SMOOTHING) -> int:
    """Epoch with the highest ``balanced`` accuracy after a centred moving average of ``width`` epochs."""
    values = np.asarray(c.balanced, dtype=np.float64)
    half = width // 2
    smoothed = np.array([values[max(0, i - half): i + half + 1].mean() for i in range(len(values))])
    return int(np.argmax(smoothed)) + c.first_epoch


def _recorder(X: np.ndarray, *, keep_weights: bool):
    """Keras callback storing held-out predictions (and optionally the weights) after every epoch."""
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.predictions: list[np.ndarray] = []
            self.weights: list[list[np.ndarray]] = []

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.predictions.append(np.argmax(self.model.predict(X, batch_size=1024, verbose=0), axis=1))
            if keep_weights:
                self.weights.append([w.copy() for w in self.model.get_weights()])

    return Recorder()


def cross_validate(config: TrainConfig, *, n_folds: int = 5, max_epochs: int = 60, max_finetune_epochs: int = 30,
                   seed: int = 0, jobs: int | None = None, verbose: bool = True) -> dict:
    """Run the procedure of the module docstring on the shared corpus; returns the report (JSON-ready).

    ``config`` supplies everything but the epoch counts (corpora, augmentation,
    learning rates, batch size, dropout, label smoothing, ``pretrain``).
    """
    clean, copies = training_rows(config, ("male", "female"), ("train", "val"), jobs=jobs)
    return run_folds(clean, copies, config, n_folds=n_folds, max_epochs=max_epochs,
                     max_finetune_epochs=max_finetune_epochs, seed=seed, verbose=verbose)


def run_folds(clean: Split, copies: Sequence[Split], config: TrainConfig, *, n_folds: int = 5, max_epochs: int = 60,
              max_finetune_epochs: int = 30, seed: int = 0, verbose: bool = True) -> dict:
    """Cross-validate on ``clean`` rows (scored) plus their augmented ``copies`` (fitted on only).

    ``clean.X [n, n_features]`` are raw features (standardised per fold);
    ``copies`` rows are assigned to folds by speaker. Returns the report of
    :func:`cross_validate`.
    """
    configure_tensorflow()
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    fixed = replace(config, early_stopping=False)
    fold = speaker_folds(clean.utterances, n_folds, seed=seed)
    speaker_fold = {u.speaker: int(f) for u, f in zip(clean.utterances, fold)}
    fit_all = concatenate([clean, *copies])
    fit_fold = np.array([speaker_fold[u.speaker] for u in fit_all.utterances])
    genders = np.array([u.gender for u in clean.utterances])
    fit_genders = np.array([u.gender for u in fit_all.utterances])

    pooled = np.full((max_epochs, len(clean.y)), -1, dtype=np.int64)
    snapshots, scalers = {}, {}
    for k in range(n_folds):
        fit = fit_all.subset(fit_fold != k)
        held = fold == k
        scalers[k] = scaler = StandardScaler().fit(fit.X)
        net = build_cnn(fit.X.shape[1], seed=seed + k, dropout=config.dropout)
        recorder = _recorder(scaler.transform(clean.X[held]).astype(np.float32), keep_weights=config.pretrain)
        _fit(net, scaler.transform(fit.X).astype(np.float32), fit.y, epochs=max_epochs, lr=config.learning_rate,
             config=fixed, seed=seed + k, callbacks=[recorder])
        pooled[:, held] = np.stack(recorder.predictions)
        snapshots[k] = recorder.weights
        if verbose:
            print(f"fold {k}: pre-trained on {len(fit.y)} rows, {held.sum()} held-out clips "
                  f"({time.time() - t0:.0f} s)", flush=True)
    pooled_curve = curve(pooled, clean.utterances)
    chosen_epochs = best_epoch(pooled_curve)
    report: dict = {
        "config": {k: v for k, v in fixed.to_dict().items() if k not in ("epochs", "finetune_epochs")},
        "n_folds": n_folds, "seed": seed, "smoothing_epochs": SMOOTHING,
        "n_clips": int(len(clean.y)), "n_fit_rows": int(len(fit_all.y)),
        "folds": [sorted({u.speaker for u, f in zip(clean.utterances, fold) if f == k}) for k in range(n_folds)],
        "pretrain": {"curve": asdict(pooled_curve), "chosen_epochs": chosen_epochs,
                     "at_chosen": pooled_curve.at(chosen_epochs)},
    }
    if config.pretrain:
        tuned = np.full((max_finetune_epochs + 1, len(clean.y)), -1, dtype=np.int64)
        tuned[0] = pooled[chosen_epochs - 1]
        for k in range(n_folds):
            scaler = scalers[k]
            for offset, gender in enumerate(("male", "female"), start=1):
                fit = fit_all.subset((fit_fold != k) & (fit_genders == gender))
                held = (fold == k) & (genders == gender)
                net = build_cnn(fit.X.shape[1], seed=seed + k, dropout=config.dropout)
                net.set_weights(snapshots[k][chosen_epochs - 1])
                recorder = _recorder(scaler.transform(clean.X[held]).astype(np.float32), keep_weights=False)
                _fit(net, scaler.transform(fit.X).astype(np.float32), fit.y, epochs=max_finetune_epochs,
                     lr=config.finetune_learning_rate, config=fixed, seed=seed + k + offset, callbacks=[recorder])
                tuned[1:, held] = np.stack(recorder.predictions)
            if verbose:
                print(f"fold {k}: fine-tuned ({time.time() - t0:.0f} s)", flush=True)
        tuned_curve = curve(tuned, clean.utterances, first_epoch=0)
        chosen_finetune = best_epoch(tuned_curve)
        report["finetune"] = {"curve": asdict(tuned_curve), "chosen_epochs": chosen_finetune,
                              "at_chosen": tuned_curve.at(chosen_finetune)}
    report["seconds"] = round(time.time() - t0, 1)
    return report


def to_markdown(report: dict) -> str:
    """Human-readable summary of :func:`cross_validate`'s report."""
    lines = [
        "# Emotion CNN: training length chosen by cross-validation over speakers", "",
        f"Generated by `python -m studies.recipe_cv`: {report['n_folds']} folds of the `train` + `val` speakers "
        f"({report['n_clips']} clips, {sum(len(f) for f in report['folds'])} speakers; no speaker in two folds), "
        "one network per fold; every clip predicted by a network that never heard its speaker. "
        f"Chosen: the epoch with the best corpus-balanced accuracy (mean over corpora), smoothed over "
        f"{report['smoothing_epochs']} epochs. The `test` split is not used.", "",
    ]
    stages = [("pre-training on both genders", report["pretrain"])]
    if "finetune" in report:
        stages.append(("fine-tuning on one gender (epoch 0 = the pre-trained network)", report["finetune"]))
    for title, stage in stages:
        c = stage["curve"]
        corpora = list(c["per_corpus"])
        lines += [f"## {title}: {stage['chosen_epochs']} epochs", "",
                  "| epoch | balanced | overall | " + " | ".join(corpora) + " | male | female |",
                  "|---:|---:|---:|" + "---:|" * (len(corpora) + 2)]
        n = len(c["overall"])
        shown = sorted({*range(0, n, 5), n - 1, stage["chosen_epochs"] - c["first_epoch"]})
        for i in shown:
            mark = " **(chosen)**" if i + c["first_epoch"] == stage["chosen_epochs"] else ""
            cells = [c["balanced"][i], c["overall"][i], *(c["per_corpus"][k][i] for k in corpora),
                     c["per_gender"]["male"][i], c["per_gender"]["female"][i]]
            lines.append(f"| {i + c['first_epoch']}{mark} | " + " | ".join(f"{100 * v:.1f}%" for v in cells) + " |")
        lines.append("")
    lines.append(f"Run time {report['seconds'] / 60:.0f} min.")
    return "\n".join(lines) + "\n"


def write_report(report: dict, stem: Path = STUDY_DIR / "report", *, command: str | None = None,
                 config=None) -> str:
    """Write ``STEM.json`` and ``STEM.md`` (:func:`training.reporting.write_report`); returns the Markdown."""
    text = to_markdown(report)
    _write(stem, report, text, command=command, config=config)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.recipe_cv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.json and STEM.md (default studies/recipe_cv/report)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--max-finetune-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    args = parser.parse_args(argv)
    configure_tensorflow(args.threads)
    report = cross_validate(TrainConfig(), n_folds=args.folds, max_epochs=args.max_epochs,
                            max_finetune_epochs=args.max_finetune_epochs)
    print(write_report(report, args.out, command=command_line("studies.recipe_cv", argv), config=args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
