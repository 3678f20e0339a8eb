"""A pretrained speech encoder inside the gender-routed emotion models: which way, if any (plan.md).

Usage::

    python -m studies.emotion_encoder.tables                     # cache librosa + encoder tables (once)
    python -m studies.emotion_encoder fit CANDIDATE FOLD         # one fit -> preds/CANDIDATE/FOLD.csv.gz
    studies/emotion_encoder/queue.sh                             # every fit the plan names, two at a time
    python -m studies.emotion_encoder report                     # -> report.{json,md} and the verdict

A fold is ``val`` (fit on ``train`` of every corpus of the candidate, score the ``val`` clips) or
a corpus name (fit on ``train`` + ``val`` of the other corpora, score every clip of that corpus).
Every fit uses the shipped emotion recipe with one seed (``n_seeds: 1``), without the augmented
copies (:data:`SCREENING`, plan amendment 1), and the candidate's encoder keys; clips are routed to the model of the speaker's true gender, so the figures are
about emotion alone. Nothing reads the ``test`` split except the fits' own exclusion of it.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.emotion import EMOTION_LABELS
from training.corpus import Utterance
from training.reporting import command_line, pct, write_report

STUDY_DIR = Path(__file__).resolve().parent
PREDS_DIR = STUDY_DIR / "preds"
CORPORA = ("ravdess", "savee", "ased", "emovo", "nemo")
FOLDS = ("val", *CORPORA)

#: Recipe keys of each candidate (plan.md); ``late_last`` is computed from ``librosa`` and ``enc_last``.
_ENCODER = {"encoder_pooling": "mean_std", "encoder_combine": "concat"}  # every key spelt out: the recipe's own
CANDIDATES: dict[str, dict] = {                                           # values changed when the winner shipped
    "librosa": {**_ENCODER, "encoder_layers": ()},
    "enc_last": {**_ENCODER, "encoder_layers": (4,), "encoder_combine": "encoder_only"},
    "both_last": {**_ENCODER, "encoder_layers": (4,)},
    "both_all": {**_ENCODER, "encoder_layers": (0, 1, 2, 3, 4)},
    "both_wsum": {**_ENCODER, "encoder_layers": (0, 1, 2, 3, 4), "encoder_combine": "wsum"},
    "both_last_mean": {**_ENCODER, "encoder_layers": (4,), "encoder_pooling": "mean"},
}
LATE = {"late_last": ("librosa", "enc_last")}
#: Plan amendment 1: screening fits use the clean rows only (no augmented copies), to fit the session.
SCREENING = {"augmentations": ()}
#: Candidates that keep the librosa input (rule 1 chooses among these).
SHIPPABLE = ("both_last", "both_all", "both_wsum", "both_last_mean", "late_last")
NONEMO = "_nonemo"


def base_name(candidate: str) -> str:
    return candidate[: -len(NONEMO)] if candidate.endswith(NONEMO) else candidate


def fit_config(candidate: str, fold: str):
    """The recipe of one fit: the shipped recipe, one seed, the candidate's keys, the fold's corpora and splits."""
    from training.emotion_train import TrainConfig

    corpora = [c for c in CORPORA if not (candidate.endswith(NONEMO) and c == "nemo")]
    if fold == "val":
        return replace(TrainConfig(), n_seeds=1, corpora=tuple(corpora), fit_splits=("train",),
                       **SCREENING, **CANDIDATES[base_name(candidate)])
    if fold not in CORPORA:
        raise ValueError(f"fold must be one of {FOLDS}, got {fold!r}")
    return replace(TrainConfig(), n_seeds=1, corpora=tuple(c for c in corpora if c != fold),
                   fit_splits=("train", "val"), **SCREENING, **CANDIDATES[base_name(candidate)])


def scored_rows(fold: str, rows: Sequence[Utterance]) -> list[int]:
    """Indices into the emotional ``rows`` that a fold scores."""
    if fold == "val":
        return [i for i, u in enumerate(rows) if u.split == "val"]
    return [i for i, u in enumerate(rows) if u.corpus == fold]


def input_rows(*, jobs: int | None = None):
    """Every emotional row (clean) as the runtime's input rows: ``(rows, X [n, 483 + 3840], ok [n])``."""
    from training.dataset import build_table
    from training.emotion_train import emotion_rows
    from training.encoder_table import build_encoder_table

    rows = emotion_rows()
    librosa = build_table(rows, jobs=jobs)
    states = build_encoder_table(rows, jobs=jobs)
    X = np.concatenate([librosa.X, states.E.reshape(len(rows), -1)], axis=1)
    return rows, X, librosa.ok & states.ok


def fit(candidate: str, fold: str, *, jobs: int | None = 1) -> Path:
    """Train one candidate on one fold and write the routed probabilities of the fold's clips."""
    import pandas as pd

    from pipeline.emotion import configure_tensorflow
    from training.emotion_train import train_family

    configure_tensorflow(threads=1)
    config = fit_config(candidate, fold)
    models, _ = train_family(config, jobs=jobs, verbose=False)
    rows, X, ok = input_rows(jobs=jobs)
    idx = [i for i in scored_rows(fold, rows) if ok[i]]
    genders = np.array([rows[i].gender for i in idx])
    probs = np.zeros((len(idx), len(EMOTION_LABELS)))
    for gender in ("male", "female"):
        mine = np.flatnonzero(genders == gender)
        if mine.size:
            probs[mine] = models[gender].predict_proba(X[np.asarray(idx)[mine]])
    frame = pd.DataFrame({"path": [rows[i].relpath for i in idx], "corpus": [rows[i].corpus for i in idx],
                          "speaker": [rows[i].speaker for i in idx], "gender": genders,
                          "split": [rows[i].split for i in idx], "emotion": [rows[i].emotion for i in idx]})
    for k, label in enumerate(EMOTION_LABELS):
        frame[f"p_{label}"] = np.round(probs[:, k], 4)
    out = PREDS_DIR / candidate / f"{fold}.csv.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    right = (np.asarray(EMOTION_LABELS)[probs.argmax(1)] == frame["emotion"].to_numpy()).mean()
    print(f"{candidate} {fold}: {len(idx)} clips, accuracy {right:.3f}", flush=True)
    return out


# --------------------------------------------------------------------------- report


def load_preds(candidate: str, fold: str):
    """The fold's predictions of a candidate (``late_*`` averaged from its two parts), or ``None``."""
    import pandas as pd

    if base_name(candidate) in LATE:
        parts = [load_preds(p + (NONEMO if candidate.endswith(NONEMO) else ""), fold) for p in LATE[base_name(candidate)]]
        if any(p is None for p in parts):
            return None
        merged = parts[0].copy()
        cols = [f"p_{label}" for label in EMOTION_LABELS]
        merged[cols] = (parts[0][cols].to_numpy() + parts[1].set_index("path").loc[parts[0]["path"], cols].to_numpy()) / 2
        return merged
    path = PREDS_DIR / candidate / f"{fold}.csv.gz"
    if not path.is_file() and candidate.endswith(NONEMO) and fold == "nemo":
        path = PREDS_DIR / base_name(candidate) / "nemo.csv.gz"  # nEMO's fold never trains on nEMO: identical
    return pd.read_csv(path) if path.is_file() else None


def fold_summary(frame, *, n_boot: int = 2000) -> dict:
    """Accuracy, macro-F1, chance and a speaker-bootstrap interval of one fold's predictions."""
    from training.evaluate import emotion_metrics
    from training.stats import speaker_bootstrap

    cols = [f"p_{label}" for label in EMOTION_LABELS]
    predicted = np.asarray(EMOTION_LABELS, dtype=object)[frame[cols].to_numpy().argmax(1)]
    truth = frame["emotion"].to_numpy(dtype=object)
    right = predicted == truth
    interval = speaker_bootstrap(frame["speaker"].tolist(), lambda i: float(right[i].mean()), n_boot=n_boot)
    _, counts = np.unique(truth, return_counts=True)
    metrics = emotion_metrics(truth, predicted)
    corpora = sorted(set(frame["corpus"]))
    per_corpus = {c: float(right[(frame["corpus"] == c).to_numpy()].mean()) for c in corpora}
    return {"n": int(len(frame)), "accuracy": float(right.mean()), "macro_f1": metrics.get("macro_f1"),
            "interval": [interval.low, interval.high], "chance": float(counts.max() / counts.sum()),
            "per_corpus": per_corpus, "n_per_corpus": {c: int((frame["corpus"] == c).sum()) for c in corpora},
            "recall": metrics.get("recall", {})}


def candidate_summary(candidate: str) -> dict | None:
    """Every fold of a candidate, its LOCO mean, ``val`` accuracy and score S (``None`` when a fold is missing)."""
    folds = {}
    for fold in FOLDS:
        frame = load_preds(candidate, fold)
        if frame is None:
            return None
        folds[fold] = fold_summary(frame)
    loco = float(np.mean([folds[c]["accuracy"] for c in CORPORA]))
    val = folds["val"]["accuracy"]
    return {"folds": folds, "loco_mean": loco, "val": val, "score": 0.5 * loco + 0.5 * val}


def decide(summaries: Mapping[str, dict]) -> dict:
    """Apply plan.md's decision rule to the candidates' summaries."""
    reference = summaries["librosa"]
    dims = {"both_last": 768, "both_all": 3840, "both_wsum": 3840, "both_last_mean": 384, "late_last": 768}
    checks = {}
    for name in SHIPPABLE:
        s = summaries.get(name)
        if s is None:
            continue
        gain = s["loco_mean"] - reference["loco_mean"]
        val_drop = reference["val"] - s["val"]
        checks[name] = {"score": s["score"], "loco_gain_pts": 100 * gain, "val_drop_pts": 100 * val_drop,
                        "passes": gain >= 0.03 and val_drop <= 0.02}
    passing = [n for n, c in checks.items() if c["passes"]]
    winner = None
    if passing:
        best = max(checks[n]["score"] for n in passing)
        close = [n for n in passing if checks[n]["score"] >= best - 0.005]
        winner = min(close, key=lambda n: (dims[n], -checks[n]["score"]))
    nemo = None
    if winner is not None and summaries.get(winner + NONEMO) is not None:
        with_, without_ = summaries[winner], summaries[winner + NONEMO]
        without = without_["score"] - with_["score"]

        def val_other(s: dict) -> float:  # val accuracy on the other corpora's clips (nEMO's are unseen without it)
            per, n = s["folds"]["val"]["per_corpus"], s["folds"]["val"]["n_per_corpus"]
            return sum(per[c] * n[c] for c in per if c != "nemo") / sum(n[c] for c in per if c != "nemo")

        nemo = {"score_without_minus_with_pts": 100 * without, "keep_nemo": without <= 0.005,
                "loco_mean": {"with": with_["loco_mean"], "without": without_["loco_mean"]},
                "val_other_corpora": {"with": val_other(with_), "without": val_other(without_)}}
    return {"checks": checks, "winner": winner, "nemo": nemo}


def markdown(summaries: Mapping[str, dict], decision: dict, command: str) -> str:
    lines = ["# Emotion with a pretrained speech encoder: candidates (one seed each)", "",
             f"Command: `{command}`. Plan and rule: [plan.md](plan.md). LOCO = fit without the corpus, score every "
             "clip of it (routed by true gender); `val` = fit on `train`, score the `val` clips. "
             "Intervals: 95% bootstrap over speakers. S = 0.5 x LOCO mean + 0.5 x `val`.", "",
             "| candidate | " + " | ".join(f"LOCO {c}" for c in CORPORA) + " | LOCO mean | `val` | S |",
             "|---|" + "---:|" * (len(CORPORA) + 3)]
    for name, s in summaries.items():
        if s is None:
            lines.append(f"| {name} | " + " | ".join("not run" for _ in range(len(CORPORA) + 3)) + " |")
            continue
        cells = [f"{pct(s['folds'][c]['accuracy'])} ({pct(s['folds'][c]['interval'][0])}-"
                 f"{pct(s['folds'][c]['interval'][1])})" for c in CORPORA]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {pct(s['loco_mean'])} | {pct(s['folds']['val']['accuracy'])} "
                     f"| {pct(s['score'])} |")
    first = next(s for s in summaries.values() if s is not None)
    lines += ["", "Chance (always the commonest label): " + ", ".join(
        f"{c} {pct(first['folds'][c]['chance'])}" for c in CORPORA) + f", `val` {pct(first['folds']['val']['chance'])}.",
        "", "`val` per corpus:", "", "| candidate | " + " | ".join(sorted(first["folds"]["val"]["per_corpus"])) + " |",
        "|---|" + "---:|" * len(first["folds"]["val"]["per_corpus"])]
    for name, s in summaries.items():
        if s is not None:
            per = s["folds"]["val"]["per_corpus"]
            lines.append(f"| {name} | " + " | ".join(pct(per[c]) for c in sorted(per)) + " |")
    lines += ["", "## Decision (plan.md's rule)", "",
              "Rule 1: LOCO mean at least 3 points above `librosa`'s, `val` at most 2 points below it; highest S wins.", "",
              "| candidate | S | LOCO vs librosa | `val` vs librosa | passes rule 1 |", "|---|---:|---:|---:|---|"]
    for name, c in decision["checks"].items():
        lines.append(f"| {name} | {pct(c['score'])} | {c['loco_gain_pts']:+.1f} pts | {-c['val_drop_pts']:+.1f} pts | "
                     f"{'yes' if c['passes'] else 'no'} |")
    lines.append("")
    if decision["winner"] is None:
        lines.append("**No candidate passes rule 1: nothing ships.**")
    else:
        lines.append(f"**Winner: `{decision['winner']}`.**")
        if decision["nemo"] is not None:
            keep = "stays in training" if decision["nemo"]["keep_nemo"] else "leaves training"
            n = decision["nemo"]
            lines.append(f"nEMO {keep} (rule 2; S without nEMO minus with: {n['score_without_minus_with_pts']:+.1f} "
                         "points). Most of that gap is nEMO's own `val` speakers, a corpus the model without nEMO never "
                         f"heard; on the other corpora's `val` clips the two are {pct(n['val_other_corpora']['with'])} "
                         f"(with) and {pct(n['val_other_corpora']['without'])} (without), and the LOCO mean is "
                         f"{pct(n['loco_mean']['with'])} with and {pct(n['loco_mean']['without'])} without: nEMO in "
                         "training helps the corpora never seen.")
    return "\n".join(lines) + "\n"


def report(out: Path = STUDY_DIR / "report") -> dict:
    names = [*CANDIDATES, *LATE]
    summaries = {n: candidate_summary(n) for n in names}
    for n in SHIPPABLE:
        if (PREDS_DIR / (n + NONEMO)).is_dir() or (n in LATE and (PREDS_DIR / (LATE[n][0] + NONEMO)).is_dir()):
            summaries[n + NONEMO] = candidate_summary(n + NONEMO)
    done = {n: s for n, s in summaries.items() if s is not None}
    decision = decide(done) if "librosa" in done else {"checks": {}, "winner": None, "nemo": None}
    command = command_line("studies.emotion_encoder", ["report"])
    payload = {"candidates": summaries, "decision": decision}
    write_report(out, payload, markdown(summaries, decision, command), command=command)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    one = sub.add_parser("fit", help="train one candidate on one fold")
    one.add_argument("candidate", choices=[*CANDIDATES, *(c + NONEMO for c in CANDIDATES)])
    one.add_argument("fold", choices=FOLDS)
    sub.add_parser("report", help="summarise every fit and apply the rule")
    args = parser.parse_args(argv)
    if args.verb == "fit":
        fit(args.candidate, args.fold)
    else:
        payload = report()
        print(f"winner: {payload['decision']['winner']}", file=sys.stderr)
    return 0
