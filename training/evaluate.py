"""Speaker-independent evaluation of the shipped models.

``python -m pipeline.evaluate`` scores every ``test``-split clip of the shared
corpus (speakers never seen in training) and writes ``reports/metrics.json``,
``reports/metrics.md`` and ``reports/test_predictions.csv``; on the full ``test`` split with the
shipped models it also rewrites ``docs/results.md`` (:mod:`training.metrics_report`), the emotion
model cards (:mod:`training.cards`) and the gender model card (:func:`training.gender_cards.write_gender_card`).
It never touches the README:

* gender accuracy overall, per corpus and per language, with the errors listed;
* emotion accuracy, macro-F1 and per-class recall, per gender and per corpus, for
  (a) the real cascade (predicted gender, hard routing), (b) routing by the true
  gender, (c) one pooled gender-agnostic model trained the same way, and
  (d) the cascade with soft routing;
* robustness to recording level: agreement of the predictions for the clip scaled
  by x0.1, x3 and peak-normalised with those for the original;
* gender calibration: expected calibration error and reliability bins of P(female);
* gender robustness: gender accuracy on every gender-labelled clip as recorded, as 8-bit PCM,
  telephone band, MP3 32 kbit/s, Opus 16 kbit/s, and with pink noise or babble at 10 dB SNR
  (:mod:`training.gender_conditions`; the slowest part, skipped by ``--no-robustness``).

Macro-F1 averages over the emotions present in the evaluated rows (ASED has five,
SAVEE and EMOVO seven).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR, Cascade
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.gender import GENDER_LABELS
from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance, read_manifest, spread
from training.metrics_report import to_markdown, write_results_doc
from training.reporting import command_line, write_report

REPORT_DIR = PROJECT_ROOT / "reports"
POOLED_MODEL_DIR = PROJECT_ROOT / "pooled_model"
LEVEL_CONDITIONS = {"x0.1": 0.1, "x3": 3.0, "peak": None}
GENDER_ROBUSTNESS_TARGET_PTS = 2.0
"""Target (reported, not enforced): at most this many points below clean under each condition."""


def emotion_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class recall for label strings; ``n`` rows."""
    from sklearn.metrics import f1_score, recall_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return {"n": 0}
    labels = [label for label in EMOTION_LABELS if label in set(y_true)]
    recalls = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall": {label: float(r) for label, r in zip(labels, recalls)},
    }


def _grouped(frame, truth: str, pred: str) -> dict:
    out = {"overall": emotion_metrics(frame[truth], frame[pred])}
    for key in ("gender", "corpus"):
        out[f"per_{key}"] = {
            value: emotion_metrics(part[truth], part[pred]) for value, part in frame.groupby(key, sort=True)
        }
    ravdess = frame[frame.corpus == "ravdess"]
    out["ravdess"] = emotion_metrics(ravdess[truth], ravdess[pred])
    out["ravdess_per_intensity"] = {
        value: emotion_metrics(part[truth], part[pred]) for value, part in ravdess.groupby("intensity", sort=True)
    }
    return out


def predict_split(cascade: Cascade, utterances: Sequence[Utterance], *, pooled: EmotionModel | None = None,
                  batch_size: int = 32, features_out: dict | None = None):
    """Score ``utterances`` with the cascade (hard and soft routing), true-gender routing and ``pooled``.

    Returns a ``pandas.DataFrame``, one row per clip: manifest columns, the
    predicted gender and its probabilities, and per method the predicted
    emotion and the eight probabilities (``<method>_prob_<label>``).
    ``features_out``, if given, receives ``relpath -> np.ndarray [n_features]``
    for every scored clip (the vectors the emotion models read).
    """
    import pandas as pd

    records = []
    for start in range(0, len(utterances), batch_size):
        chunk = list(utterances[start:start + batch_size])
        # The cascade's own two stages; the features are kept for the other methods.
        items = [cascade.featurise_file(u.path, u.relpath) for u in chunk]
        predictions = cascade.score(items)
        good = [i for i, p in enumerate(predictions) if p.ok]
        X = np.stack([items[i].features for i in good]) if good else np.zeros((0, 1))
        per_model = {g: m.predict_proba(X) for g, m in cascade.emotion_models.items()} if good else {}
        pooled_probs = pooled.predict_proba(X) if (pooled is not None and good) else None
        row_of = {i: r for r, i in enumerate(good)}
        if features_out is not None:
            features_out.update({chunk[i].relpath: items[i].features for i in good})
        for i, (u, p) in enumerate(zip(chunk, predictions)):
            record = {
                "path": u.relpath, "corpus": u.corpus, "speaker": u.speaker, "gender": u.gender,
                "emotion": u.emotion, "intensity": u.intensity, "language": u.language,
                "duration_s": u.duration_s, "status": p.status, "error": p.error,
                "pred_gender": p.gender, "p_female": p.gender_probabilities.get("female"),
            }
            if p.ok:
                r = row_of[i]
                g = np.array([p.gender_probabilities[x] for x in GENDER_LABELS])
                methods = {
                    "cascade": per_model[p.gender][r],
                    "soft": g[0] * per_model["male"][r] + g[1] * per_model["female"][r],
                    "true_gender": per_model[u.gender][r],
                }
                if pooled_probs is not None:
                    methods["pooled"] = pooled_probs[r]
                for name, probs in methods.items():
                    record[f"{name}_pred"] = EMOTION_LABELS[int(np.argmax(probs))]
                    for j, label in enumerate(EMOTION_LABELS):
                        record[f"{name}_prob_{label}"] = float(probs[j])
                assert record["cascade_pred"] == p.emotion, "cascade and direct model call disagree"
            records.append(record)
    return pd.DataFrame.from_records(records)


def gender_metrics(frame, *, training_corpora: Sequence[str] | None = None) -> dict:
    """Gender accuracy overall (with a 95% bootstrap interval over speakers), per corpus, per language
    and per emotion, plus the errors.

    With ``training_corpora`` (the corpora the gender model was fitted on, from its
    ``metadata.json``), ``seen_corpora`` scores the rows of those corpora (new speakers of known
    corpora) and ``never_seen`` each other corpus (recordings unlike the training data), each with
    its own speaker interval; both are None without it (e.g. a hub model).
    """
    from training.stats import speaker_bootstrap

    scored = frame[frame.status == "ok"]
    correct = scored.pred_gender == scored.gender
    hits = correct.to_numpy(dtype=float)
    speakers = scored.speaker.to_numpy()

    def acc(mask) -> dict:
        return {"n": int(mask.sum()), "accuracy": float(correct[mask].mean()) if mask.sum() else None}

    def with_interval(mask) -> dict:
        index = np.flatnonzero(mask)
        interval = speaker_bootstrap(speakers[index], lambda idx: float(hits[index][idx].mean())) if index.size else None
        return {**acc(mask), "interval": interval.to_dict() if interval else None}

    errors = scored[~correct][["path", "corpus", "gender", "emotion", "p_female"]]
    interval = speaker_bootstrap(speakers, lambda idx: float(hits[idx].mean())) if len(scored) else None
    seen = never_seen = None
    if training_corpora is not None:
        known = scored.corpus.isin(list(training_corpora)).to_numpy()
        seen = {"corpora": sorted(set(training_corpora)), **with_interval(known)}
        never_seen = {c: with_interval((scored.corpus == c).to_numpy())
                      for c in sorted(scored.corpus[~known].unique())}
    return {
        "overall": acc(np.ones(len(scored), dtype=bool)),
        "overall_interval": interval.to_dict() if interval else None,
        "seen_corpora": seen,
        "never_seen": never_seen,
        "per_corpus": {c: acc((scored.corpus == c).to_numpy()) for c in sorted(scored.corpus.unique())},
        "per_language": {c: acc((scored.language == c).to_numpy()) for c in sorted(scored.language.unique())},
        "per_gender": {g: acc((scored.gender == g).to_numpy()) for g in GENDER_LABELS},
        "per_gender_emotion": {
            f"{g}/{e}": acc(((scored.gender == g) & (scored.emotion == e)).to_numpy())
            for g in GENDER_LABELS for e in EMOTION_LABELS
            if ((scored.gender == g) & (scored.emotion == e)).any()
        },
        "not_scored": int((frame.status != "ok").sum()),
        "errors": errors.sort_values("path").to_dict(orient="records"),
    }


ROUTING_CONTRASTS = (("cascade", "true_gender"), ("cascade", "pooled"), ("soft", "cascade"))


def routing_comparison(emotional, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy differences between methods with 95% bootstrap intervals over speakers.

    ``emotional``: the emotional, scored rows of :func:`predict_split`'s frame.
    Returns ``{"all" | "ravdess": {"a - b": Interval.to_dict()}}`` for the contrasts
    in :data:`ROUTING_CONTRASTS` whose methods are present.
    """
    from training.stats import accuracy_difference

    out: dict = {}
    for subset, part in (("all", emotional), ("ravdess", emotional[emotional.corpus == "ravdess"])):
        if part.empty:
            continue
        out[subset] = {
            f"{a} - {b}": accuracy_difference(part.emotion, part[f"{a}_pred"], part[f"{b}_pred"], part.speaker,
                                              n_boot=n_boot, seed=seed).to_dict()
            for a, b in ROUTING_CONTRASTS if f"{a}_pred" in part and f"{b}_pred" in part
        }
    return out


def calibration(emotional) -> dict:
    """Expected calibration error (10 bins) of each method's emotion probabilities."""
    from training.stats import reliability

    y = emotional.emotion.map({label: i for i, label in enumerate(EMOTION_LABELS)}).to_numpy()
    out = {}
    for method in ("cascade", "true_gender", "pooled", "soft"):
        columns = [f"{method}_prob_{label}" for label in EMOTION_LABELS]
        if all(c in emotional for c in columns) and len(emotional):
            out[method] = {"ece": reliability(emotional[columns].to_numpy(), y).ece, "n": int(len(emotional))}
    return out


def gender_calibration(frame, *, training_corpora: Sequence[str] | None = None) -> dict:
    """How well P(female) is calibrated on the scored rows of :func:`predict_split`'s frame.

    ``p_female``: expected calibration error and reliability bins of P(female) against the share of
    female voices, 10 equal-width bins on [0, 1] (:func:`training.stats.binary_reliability`).
    ``top_label``: the same on the confidence of the predicted gender, 10 bins on [0, 1] (only the
    five from 0.5 up can fill), as the emotion ``calibration`` is measured. ``seen_corpora``: both
    ECEs on the corpora the model was trained on, when ``training_corpora`` is given.
    """
    from training.stats import binary_reliability, reliability

    def measure(rows) -> tuple:
        p = rows.p_female.to_numpy(dtype=float)
        female = (rows.gender == "female").to_numpy()
        return binary_reliability(p, female), reliability(np.stack([1 - p, p], axis=1), female.astype(int))

    def bins(r, predicted: str, observed: str) -> list[dict]:
        return [{"low": round(float(lo), 6), "high": round(float(hi), 6), "n": int(n),
                 predicted: float(c) if n else None, observed: float(a) if n else None}
                for lo, hi, n, c, a in zip(r.bin_edges[:-1], r.bin_edges[1:], r.count, r.confidence, r.accuracy)]

    scored = frame[frame.status == "ok"]
    if scored.empty:
        return {}
    by_p, top = measure(scored)
    out = {"n": len(scored),
           "p_female": {"ece": by_p.ece, "bins": bins(by_p, "mean_p_female", "share_female")},
           "top_label": {"ece": top.ece, "bins": bins(top, "mean_confidence", "accuracy")}}
    if training_corpora is not None:
        seen = scored[scored.corpus.isin(list(training_corpora))]
        if len(seen):
            seen_p, seen_top = measure(seen)
            out["seen_corpora"] = {"n": len(seen), "p_female_ece": seen_p.ece, "top_label_ece": seen_top.ece}
    return out


def gender_robustness(cascade: Cascade, rows: Sequence[Utterance], manifest: Sequence[Utterance], *,
                      split: str) -> dict:
    """The gender model's accuracy on the gender-labelled ``rows`` under each condition of
    :data:`training.gender_conditions.CONDITIONS`, prepared as the cascade prepares a file."""
    from training.gender_conditions import score_conditions, study_babble

    labelled = [u for u in rows if u.gender in GENDER_LABELS]
    start = time.perf_counter()
    table = score_conditions(cascade.gender, labelled, babble=study_babble(manifest, scored=labelled),
                             audio_config=cascade.audio_config)
    print(f"gender robustness: {len(labelled)} clips x {len(table.scores)} conditions in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return {"split": split, "target_pts": GENDER_ROBUSTNESS_TARGET_PTS, "conditions": table.to_dict()}


def emotion_robustness(cascade: Cascade, rows: Sequence[Utterance], manifest: Sequence[Utterance], *,
                       split: str) -> dict:
    """The emotion models' accuracy on the emotional ``rows`` under pink noise and babble at 10 dB and the
    telephone band (:mod:`training.emotion_conditions`), routed by the speaker's true gender, beside clean."""
    from training.emotion_conditions import condition_rows, robustness_table

    emotional = [u for u in rows if u.emotion]
    start = time.perf_counter()
    data = condition_rows(emotional, manifest)
    table = robustness_table(cascade.emotion_models, data)
    print(f"emotion robustness: {table['n']} clips x {len(table['accuracy'])} conditions in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return {"split": split, **table}


def level_robustness(cascade: Cascade, utterances: Sequence[Utterance]) -> dict:
    """Share of clips whose gender / emotion is unchanged when the level changes."""
    import soundfile as sf

    out: dict = {}
    base, scaled = [], {name: [] for name in LEVEL_CONDITIONS}
    for u in utterances:
        y, sr = sf.read(u.path, dtype="float32")
        base.append(cascade.predict_signal(y, sr))
        for name, gain in LEVEL_CONDITIONS.items():
            z = y * gain if gain is not None else y / max(float(np.abs(y).max()), 1e-9)
            scaled[name].append(cascade.predict_signal(z, sr))
    for name, preds in scaled.items():
        pairs = [(b, p) for b, p in zip(base, preds) if b.ok and p.ok]
        out[name] = {
            "n": len(pairs),
            "gender_unchanged": float(np.mean([b.gender == p.gender for b, p in pairs])) if pairs else None,
            "emotion_unchanged": float(np.mean([b.emotion == p.emotion for b, p in pairs])) if pairs else None,
        }
    return out


def evaluate(*, cascade: Cascade | None = None, pooled_dir: Path | None = POOLED_MODEL_DIR,
             split: str = "test", limit: int | None = None, robustness_clips: int = 120,
             gender_conditions: bool = True, features_out: dict | None = None) -> tuple[dict, object]:
    """Run the whole evaluation; returns ``(metrics, predictions_frame)``.

    ``limit`` keeps every n-th row so that about ``limit`` clips remain (for quick checks).
    ``robustness_clips``: RAVDESS clips of the level check (0 skips it). ``gender_conditions``:
    score the gender and emotion robustness tables (:func:`gender_robustness`: seven passes of the
    gender model over the rows; :func:`emotion_robustness`: four conditions of the emotional rows). ``features_out``: see :func:`predict_split`.
    """
    cascade = cascade or Cascade.load()
    pooled = EmotionModel.load(pooled_dir) if pooled_dir is not None and Path(pooled_dir).is_dir() else None
    manifest = read_manifest()
    rows = spread([u for u in manifest if u.split == split], limit)
    frame = predict_split(cascade, rows, pooled=pooled, features_out=features_out)
    emotional = frame[(frame.emotion != "") & (frame.status == "ok")]
    methods = [m for m in ("cascade", "true_gender", "pooled", "soft") if f"{m}_pred" in frame]
    ravdess = [u for u in rows if u.corpus == "ravdess"]
    step = max(1, len(ravdess) // max(robustness_clips, 1))
    training_corpora = cascade.gender.info.get("training", {}).get("corpora")
    metrics = {
        "split": split,
        "n_clips": int(len(frame)),
        "n_speakers": int(frame.speaker.nunique()),
        "gender": gender_metrics(frame, training_corpora=training_corpora),
        "emotion": {m: _grouped(emotional, "emotion", f"{m}_pred") for m in methods},
        "routing_comparison": routing_comparison(emotional),
        "calibration": calibration(emotional),
        "level_robustness": level_robustness(cascade, ravdess[::step][:robustness_clips]) if robustness_clips else {},
        "gender_calibration": gender_calibration(frame, training_corpora=training_corpora),
        "gender_robustness": gender_robustness(cascade, rows, manifest, split=split) if gender_conditions else {},
        "emotion_robustness": emotion_robustness(cascade, rows, manifest, split=split) if gender_conditions else {},
        "gender_model": cascade.gender.source,
    }
    return metrics, frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPORT_DIR, help="folder for metrics.json/.md (default reports/)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--gender-model", default=None, help="gender model folder or hub id (default: shipped)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate about this many clips (quick check)")
    parser.add_argument("--robustness-clips", type=int, default=120, help="RAVDESS clips of the level check")
    parser.add_argument("--no-robustness", action="store_true",
                        help="skip the robustness checks (gender under degraded recordings, recording level): quick runs")
    args = parser.parse_args(argv)
    metrics, frame = evaluate(cascade=Cascade.load(args.gender_model), split=args.split, limit=args.limit,
                              robustness_clips=0 if args.no_robustness else args.robustness_clips,
                              gender_conditions=not args.no_robustness)
    write_report(args.out / "metrics", metrics, to_markdown(metrics), command=command_line("pipeline.evaluate", argv),
                 config=args)
    frame.to_csv(args.out / "test_predictions.csv" if args.split == "test" else args.out / f"{args.split}_predictions.csv",
                 index=False)
    if args.split == "test" and args.limit is None and args.gender_model is None:
        from pipeline.gender import DEFAULT_GENDER_MODEL_DIR
        from training.cards import write_emotion_card
        from training.gender_cards import write_gender_card

        for folder in (MALE_MODEL_DIR, FEMALE_MODEL_DIR, POOLED_MODEL_DIR):
            if folder.is_dir():
                write_emotion_card(folder, metrics)
        if (DEFAULT_GENDER_MODEL_DIR / "metadata.json").is_file():
            write_gender_card(DEFAULT_GENDER_MODEL_DIR, metrics)
        write_results_doc(metrics)
    print(to_markdown(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
