"""Emotion judged against the voice's own baseline.

``python -m studies.voice_baseline`` compares single-clip emotion features with features taken
relative to the speaker's other clips (a *voice*: true manifest speaker ids), on the cached 483
feature statistics, with one pooled RBF SVM (see ``plan.md`` beside this module, written before the
run):

* variants: ``raw`` (single clip), ``sub`` (voice mean subtracted), ``raw+std`` (raw plus
  voice-standardised), ``raw+shrunk`` (raw plus minus a voice mean shrunk toward the population by
  ``k/(k+n)``), ``raw+calm`` (baseline = the voice's lowest-arousal third), ``raw+typical``
  (baseline = the voice's coordinate-wise median) and ``groups`` (raw + shrunk, plus context
  size and spread, trained on sampled voice groups of one, two or all emotions and small chunks);
* hyper-parameters by 5-fold cross-validation grouped by speaker over ``train`` + ``val``; the
  chosen setting is refitted there and scored once on ``test``: each test speaker as one voice, each
  speaker x emotion group and each two-emotion group as one voice (steady moods), random chunks of
  1, 2, 4, 8 clips (minimum speech), and leave-one-corpus-out over RAVDESS, ASED and EMOVO;
* reference: the shipped CNNs routed by true gender, per clip, on the same clips.

It writes ``studies/voice_baseline/report.json`` and ``report.md``.
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: Where the report goes by default, beside this module.
from studies.voice_baseline.contexts import (
    voice_contexts,
    emotion_contexts,
    pair_contexts,
    chunk_contexts,
    featurise,
)
from training.reporting import pct as _p

STUDY_DIR = Path(__file__).resolve().parent
CV_FOLDS = 5
N_BOOT = 1000
#: Pseudo-clips that shrink a voice's variance toward the population's (1 in standardised units).
CHUNK_SIZES = (1, 2, 4, 8)
TRAIN_CHUNK_SIZES = (2, 4, 8)
CHUNK_REPEATS = 3
HOLDOUT_CORPORA = ("ravdess", "ased", "emovo")
HIGH_AROUSAL = ("angry", "happy", "fearful", "surprised")
LOW_AROUSAL = ("neutral", "calm", "sad")
#: Issue targets (accuracy, 0-1).
TARGET_VOICES_ALL = 0.72
TARGET_VOICES_RAVDESS = 0.62
STEADY_MARGIN = 0.01
HOLDOUT_GAIN = 0.10


@dataclass(frozen=True)
class Variant:
    name: str
    grid: tuple[dict, ...]


def _grid(ks: Sequence[float] | None) -> tuple[dict, ...]:
    return tuple({"C": c, **({"k": k} if k is not None else {})} for c in (1.0, 10.0) for k in (ks or [None]))


VARIANTS = (
    Variant("raw", _grid(None)),
    Variant("sub", _grid(None)),
    Variant("raw+std", _grid(None)),
    Variant("raw+shrunk", _grid((2.0, 8.0, 32.0))),
    Variant("raw+calm", _grid(None)),
    Variant("raw+typical", _grid(None)),
    Variant("groups", _grid((2.0, 8.0, 32.0))),
)


def arousal_labels(emotions: Sequence[str]) -> np.ndarray:
    """1 high arousal, 0 low, -1 left out (disgust and unknown)."""
    return np.array([1 if e in HIGH_AROUSAL else 0 if e in LOW_AROUSAL else -1 for e in emotions])


def training_contexts(variant: str, speakers, emotions, rng: np.random.Generator) -> list[np.ndarray]:
    """What a variant learns from: single clips (``raw``), whole voices, or sampled voice groups (``groups``)."""
    if variant == "raw":
        return [np.arange(len(speakers))]
    if variant != "groups":
        return voice_contexts(speakers)
    return (voice_contexts(speakers) + emotion_contexts(speakers, emotions)
            + pair_contexts(speakers, emotions, all_pairs=False, rng=rng)
            + chunk_contexts(speakers, TRAIN_CHUNK_SIZES, rng))


class VoiceModel:
    """A population scaler, an optional arousal model and an RBF SVM over one variant's features."""

    def __init__(self, variant: str, params: dict, *, seed: int = 0) -> None:
        self.variant, self.params, self.seed = variant, dict(params), seed

    def _z(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _arousal(self, Z: np.ndarray) -> np.ndarray | None:
        return self.arousal_.decision_function(Z) if self.variant == "raw+calm" else None

    def fit(self, X: np.ndarray, emotions: Sequence[str], speakers: Sequence[str]) -> "VoiceModel":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        emotions = np.asarray(emotions)
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        Z = self._z(X)
        if self.variant == "raw+calm":
            a = arousal_labels(emotions)
            keep = a >= 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.arousal_ = LogisticRegression(C=0.1, max_iter=2000).fit(Z[keep], a[keep])
        contexts = training_contexts(self.variant, speakers, emotions, np.random.default_rng(self.seed))
        F, rows = featurise(self.variant, Z, contexts, k=self.params.get("k"), arousal=self._arousal(Z))
        self.model_ = Pipeline([("scale", StandardScaler()), ("svm", SVC(C=self.params["C"], gamma="scale"))])
        self.model_.fit(F, emotions[rows])
        self.n_train_rows_ = int(F.shape[0])
        return self

    def predict(self, X: np.ndarray, contexts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted labels per scoring and the row each scoring belongs to (``(pred [m], rows [m])``)."""
        Z = self._z(X)
        if self.variant == "raw":  # context-free: one prediction per row, repeated
            rows = np.concatenate(contexts)
            per_row = self.model_.predict(Z)
            return per_row[rows], rows
        F, rows = featurise(self.variant, Z, contexts, k=self.params.get("k"), arousal=self._arousal(Z))
        return self.model_.predict(F), rows


# --------------------------------------------------------------------------------------------
# Scoring.

def accuracy(truth: np.ndarray, pred: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean(truth[rows] == pred))


def interval(groups: np.ndarray, values: np.ndarray, *, n_boot: int = N_BOOT) -> dict:
    """Mean of ``values`` with a 95% speaker-bootstrap interval."""
    from training.stats import speaker_bootstrap

    r = speaker_bootstrap(groups, lambda idx: float(values[idx].mean()), n_boot=n_boot)
    return {"estimate": r.estimate, "low": r.low, "high": r.high, "n": int(values.size), "speakers": r.n_groups}


def scored(truth, speakers, pred, rows, reference=None, *, n_boot: int = N_BOOT) -> dict:
    """Accuracy with interval; with ``reference`` (per-row predictions), its accuracy and the difference."""
    right = (truth[rows] == pred).astype(float)
    out = {"accuracy": interval(speakers[rows], right, n_boot=n_boot)}
    if reference is not None:
        ref = (truth[rows] == reference[rows]).astype(float)
        out["reference"] = float(ref.mean())
        out["difference"] = interval(speakers[rows], right - ref, n_boot=n_boot)
    return out


def cross_validate(X, emotions, speakers, variants=VARIANTS, *, folds: int = CV_FOLDS, progress=print) -> dict:
    """Grouped CV over the fitting rows; per variant the grid's scores and the chosen setting."""
    from sklearn.model_selection import GroupKFold

    emotions, speakers = np.asarray(emotions), np.asarray(speakers)
    results = {v.name: [{"params": p, "voice": [], "one_emotion": [], "two_emotions": [], "single": []}
                        for p in v.grid] for v in variants}
    for fold, (tr, ho) in enumerate(GroupKFold(n_splits=folds).split(X, emotions, speakers)):
        rng = np.random.default_rng(100 + fold)
        e_ho, s_ho = emotions[ho], speakers[ho]
        ctx = {"voice": voice_contexts(s_ho), "one_emotion": emotion_contexts(s_ho, e_ho),
               "two_emotions": pair_contexts(s_ho, e_ho, all_pairs=False, rng=rng),
               "single": [np.arange(ho.size)]}
        for v in variants:
            for cell in results[v.name]:
                start = time.perf_counter()
                model = VoiceModel(v.name, cell["params"]).fit(X[tr], emotions[tr], speakers[tr])
                for key, contexts in ctx.items():
                    if key == "single" and v.name != "raw":
                        continue
                    pred, rows = model.predict(X[ho], contexts)
                    cell[key].append(accuracy(e_ho, pred, rows))
                progress(f"cv fold {fold} {v.name} {cell['params']}: voice {cell['voice'][-1]:.3f} "
                         f"one {cell['one_emotion'][-1]:.3f} two {cell['two_emotions'][-1]:.3f} "
                         f"({time.perf_counter() - start:.0f}s, {model.n_train_rows_} rows)")
    out = {}
    for v in variants:
        cells = []
        for cell in results[v.name]:
            means = {key: float(np.mean(cell[key])) for key in ("voice", "one_emotion", "two_emotions", "single")
                     if cell[key]}
            objective = means["single"] if v.name == "raw" else float(np.mean(
                [means["voice"], means["one_emotion"], means["two_emotions"]]))
            cells.append({"params": cell["params"], "objective": objective, **means})
        best = max(cells, key=lambda c: c["objective"])
        out[v.name] = {"grid": cells, "chosen": best["params"], "objective": best["objective"]}
    return out


def cnn_predictions(X: np.ndarray, genders: Sequence[str]) -> np.ndarray:
    """The shipped emotion CNNs per clip, routed by the true gender."""
    from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR
    from pipeline.emotion import EmotionModel
    from studies.emotion_holdout.study import route_by_gender

    models = {"male": EmotionModel.load(MALE_MODEL_DIR), "female": EmotionModel.load(FEMALE_MODEL_DIR)}
    return route_by_gender(models, X, genders).astype(str)


def evaluate_test(fit_X, fit_e, fit_s, X, emotions, speakers, corpora, chosen: dict, cnn: np.ndarray,
                  *, progress=print) -> dict:
    """Every variant's chosen setting refitted on the fitting rows and scored on the test rows."""
    emotions, speakers, corpora = (np.asarray(a) for a in (emotions, speakers, corpora))
    voices = voice_contexts(speakers)
    contexts = {"one_emotion": emotion_contexts(speakers, emotions),
                "two_emotions": pair_contexts(speakers, emotions, all_pairs=True)}
    chunk_sets = {n: [chunk_contexts(speakers, n, np.random.default_rng(1000 * n + r)) for r in range(CHUNK_REPEATS)]
                  for n in CHUNK_SIZES}
    ravdess = np.flatnonzero(corpora == "ravdess")
    out = {"cnn": {"all": scored(emotions, speakers, cnn, np.arange(len(emotions))),
                   "ravdess": scored(emotions, speakers, cnn[ravdess], ravdess)}}
    for name, params in chosen.items():
        start = time.perf_counter()
        model = VoiceModel(name, params).fit(fit_X, fit_e, fit_s)
        pred, rows = model.predict(X, voices)
        per_row = np.empty(len(emotions), dtype=object)
        per_row[rows] = pred
        per_row = per_row.astype(str)
        r = {"params": params,
             "voices_all": scored(emotions, speakers, per_row, np.arange(len(emotions)), cnn),
             "voices_ravdess": scored(emotions, speakers, per_row[ravdess], ravdess, cnn)}
        for key, ctx in contexts.items():
            p, rw = model.predict(X, ctx)
            r[key] = scored(emotions, speakers, p, rw, cnn)
        curve = {}
        for n, sets in chunk_sets.items():
            accs = []
            for ctx in sets:
                p, rw = model.predict(X, ctx)
                accs.append(accuracy(emotions, p, rw))
            curve[str(n)] = float(np.mean(accs))
        curve["all"] = r["voices_all"]["accuracy"]["estimate"]
        r["chunks"] = curve
        out[name] = r
        progress(f"test {name}: voices {r['voices_all']['accuracy']['estimate']:.3f} ravdess "
                 f"{r['voices_ravdess']['accuracy']['estimate']:.3f} one {r['one_emotion']['accuracy']['estimate']:.3f} "
                 f"(cnn {r['one_emotion']['reference']:.3f}) two {r['two_emotions']['accuracy']['estimate']:.3f} "
                 f"(cnn {r['two_emotions']['reference']:.3f}) chunks {curve} ({time.perf_counter() - start:.0f}s)")
    return out


def evaluate_holdout(X, emotions, speakers, corpora, splits, chosen: dict, *, progress=print) -> dict:
    """Leave-one-corpus-out: fit on train+val of the other corpora, score every clip of the held-out one as voices."""
    emotions, speakers, corpora, splits = (np.asarray(a) for a in (emotions, speakers, corpora, splits))
    out = {}
    for corpus in HOLDOUT_CORPORA:
        fit = np.flatnonzero((corpora != corpus) & np.isin(splits, ("train", "val")))
        held = np.flatnonzero(corpora == corpus)
        e, s = emotions[held], speakers[held]
        out[corpus] = {}
        for name, params in chosen.items():
            model = VoiceModel(name, params).fit(X[fit], emotions[fit], speakers[fit])
            pred, rows = model.predict(X[held], voice_contexts(s))
            out[corpus][name] = scored(e, s, pred, rows)["accuracy"]
            progress(f"holdout {corpus} {name}: {out[corpus][name]['estimate']:.3f}")
    return out


def holdout_reference() -> dict:
    """Single-clip CNN accuracy per held-out corpus from ``studies/emotion_holdout/report.json``."""
    import json

    report = json.loads((STUDY_DIR.parent / "emotion_holdout" / "report.json").read_text(encoding="utf-8"))
    return {r["corpus"]: float(r["routed"]["accuracy"]) for r in report["results"]}


def minimum_clips(curve: dict, reference: float) -> int | None:
    """Smallest n in 2, 4, 8 whose chunked accuracy reaches ``reference``; None when none does."""
    for n in (2, 4, 8):
        if curve[str(n)] >= reference:
            return n
    return None


def decide(cv: dict, test: dict, holdout: dict, reference: dict) -> dict:
    """Apply the plan's decision rule; returns per-variant checks and the verdict."""
    checks = {}
    for name in cv:
        t = test[name]
        c = {
            "voices_all": t["voices_all"]["accuracy"]["estimate"] >= TARGET_VOICES_ALL,
            "voices_ravdess": t["voices_ravdess"]["accuracy"]["estimate"] >= TARGET_VOICES_RAVDESS,
            "one_emotion": t["one_emotion"]["difference"]["estimate"] >= -STEADY_MARGIN,
            "two_emotions": t["two_emotions"]["difference"]["estimate"] >= -STEADY_MARGIN,
            "holdout": all(holdout[k][name]["estimate"] >= reference[k] + HOLDOUT_GAIN for k in HOLDOUT_CORPORA),
        }
        c["meets_issue"] = all(c.values())
        c["promising"] = (c["one_emotion"] and c["two_emotions"]
                          and t["voices_all"]["difference"]["low"] > 0
                          and t["voices_ravdess"]["difference"]["estimate"] > 0
                          and all(holdout[k][name]["estimate"] > reference[k] for k in HOLDOUT_CORPORA))
        c["minimum_clips"] = minimum_clips(t["chunks"], test["cnn"]["all"]["accuracy"]["estimate"])
        checks[name] = c
    meets = [n for n in checks if checks[n]["meets_issue"]]
    promising = [n for n in checks if checks[n]["promising"]]
    if meets:
        best = max(meets, key=lambda n: cv[n]["objective"])
        verdict = {"verdict": "meets the issue", "variant": best}
    elif promising:
        best = max(promising, key=lambda n: cv[n]["objective"])
        verdict = {"verdict": "promising, not shipped", "variant": best}
    else:
        verdict = {"verdict": "rejected", "variant": None}
    if verdict["variant"]:
        verdict["minimum_clips"] = checks[verdict["variant"]]["minimum_clips"]
    return {"checks": checks, **verdict}


# --------------------------------------------------------------------------------------------
# Report.

def _ci(d: dict) -> str:
    return f"{_p(d['estimate'])} ({100 * d['low']:.1f}-{100 * d['high']:.1f})"


def _diff(d: dict) -> str:
    return f"{100 * d['estimate']:+.1f} ({100 * d['low']:+.1f} to {100 * d['high']:+.1f})"


def to_markdown(payload: dict, command: str) -> str:
    cv, test, hold, ref, dec = (payload[k] for k in ("cv", "test", "holdout", "holdout_reference", "decision"))
    lines = ["# Emotion against the voice's own baseline", "",
             f"Generated by `{command}` ({payload['minutes']:.0f} minutes, one thread). One pooled RBF SVM on the "
             "483 feature statistics; a voice = a true manifest speaker id. Settings chosen by 5-fold CV grouped by "
             "speaker over train+val (objective: mean of held-out accuracy as whole voices, per speaker x emotion "
             "and per two-emotion group; single-clip accuracy for `raw`), refitted on train+val, scored once on "
             "test. Intervals: 95% bootstrap over speakers. Reference: the shipped CNNs per clip, routed by true "
             "gender, on the same clips. Plan: [plan.md](plan.md).", "",
             "## Cross-validation (train+val)", "",
             "| variant | chosen | objective | voice | one emotion | two emotions |", "|---|---|---:|---:|---:|---:|"]
    for name, r in cv.items():
        best = next(c for c in r["grid"] if c["params"] == r["chosen"])
        lines.append(f"| {name} | `{r['chosen']}` | {_p(r['objective'])} | {_p(best['voice'])} | "
                     f"{_p(best['one_emotion'])} | {_p(best['two_emotions'])} |")
    c = test["cnn"]
    lines += ["", "## Targets on test (and corpora never seen)", "",
              f"Shipped CNNs, single clip: all {_ci(c['all']['accuracy'])}, RAVDESS {_ci(c['ravdess']['accuracy'])}. "
              "Steady-mood columns: accuracy, then the difference from the CNN single-clip accuracy on the same "
              "scorings (points). Held-out columns: every clip of the corpus, speakers as voices; single-clip CNN "
              + ", ".join(f"{k} {_p(v)}" for k, v in ref.items()) + ".", "",
              "| variant | voices: all (>= 72%) | voices: RAVDESS (>= 62%) | one emotion: acc | vs CNN (>= -1) "
              "| two emotions: acc | vs CNN (>= -1) | never seen: RAVDESS | ASED | EMOVO | meets | promising |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for name in cv:
        t, ch = test[name], dec["checks"][name]
        lines.append(
            f"| {name} | {_ci(t['voices_all']['accuracy'])} | {_ci(t['voices_ravdess']['accuracy'])} "
            f"| {_p(t['one_emotion']['accuracy']['estimate'])} | {_diff(t['one_emotion']['difference'])} "
            f"| {_p(t['two_emotions']['accuracy']['estimate'])} | {_diff(t['two_emotions']['difference'])} "
            + "".join(f"| {_ci(hold[k][name])} " for k in HOLDOUT_CORPORA)
            + f"| {'yes' if ch['meets_issue'] else 'no'} | {'yes' if ch['promising'] else 'no'} |")
    lines += ["", "Difference of each variant's whole-voice accuracy from the CNN on the same test clips (points): "
              + "; ".join(f"{n} {_diff(test[n]['voices_all']['difference'])}" for n in cv) + ".", "",
              "## Minimum speech: test voices cut into random chunks of n clips (3 partitions)", "",
              "| variant | n=1 | n=2 | n=4 | n=8 | all | smallest n >= CNN single clip |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in cv:
        curve, m = test[name]["chunks"], dec["checks"][name]["minimum_clips"]
        lines.append(f"| {name} | " + " | ".join(_p(curve[k]) for k in ("1", "2", "4", "8", "all"))
                     + f" | {m if m else 'none'} |")
    lines.append("| shipped CNN (single clip) | " + " | ".join([_p(c["all"]["accuracy"]["estimate"])] * 5) + " | – |")
    lines += ["", "## Decision (rule in plan.md)", "",
              f"Verdict: **{dec['verdict']}**" + (f", variant `{dec['variant']}`, minimum {dec['minimum_clips']} "
                                                  "clips per voice" if dec["variant"] else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.voice_baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.json and STEM.md (default studies/voice_baseline/report)")
    parser.add_argument("--variants", nargs="+", default=[v.name for v in VARIANTS], help="variants to run")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from pipeline.emotion import configure_tensorflow
    from training.corpus import read_manifest
    from training.dataset import build_table
    from training.reporting import command_line, write_report

    threadpool_limits(1)
    configure_tensorflow(1)
    start = time.perf_counter()
    table = build_table(read_manifest()).select(lambda u: bool(u.emotion))
    X = table.X.astype(np.float64)
    e, s, g, c, sp = (table.labels(f) for f in ("emotion", "speaker", "gender", "corpus", "split"))
    fit = np.isin(sp, ("train", "val"))
    test = sp == "test"
    variants = [v for v in VARIANTS if v.name in args.variants]
    log = lambda msg: print(f"[{time.perf_counter() - start:6.0f}s] {msg}", flush=True)  # noqa: E731
    cv = cross_validate(X[fit], e[fit], s[fit], variants, progress=log)
    chosen = {name: r["chosen"] for name, r in cv.items()}
    cnn = cnn_predictions(table.X[test], g[test])
    test_results = evaluate_test(X[fit], e[fit], s[fit], X[test], e[test], s[test], c[test], chosen, cnn, progress=log)
    holdout = evaluate_holdout(X, e, s, c, sp, chosen, progress=log)
    reference = holdout_reference()
    decision = decide(cv, test_results, holdout, reference)
    payload = {"cv": cv, "test": test_results, "holdout": holdout, "holdout_reference": reference,
               "decision": decision, "minutes": (time.perf_counter() - start) / 60,
               "n_fit": int(fit.sum()), "n_test": int(test.sum())}
    command = command_line("studies.voice_baseline", argv)
    text = to_markdown(payload, command)
    write_report(args.out, payload, text, command=command, config=args)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
