"""The Whisper encoder block as a third gender opinion (``plan.md``, amendment 7).

Usage::

    python -m studies.gender_fusion.whisper --part clean        # features of every clip the rule scores (cached)
    python -m studies.gender_fusion.whisper --part copies       # ...of one degraded copy of each fitting clip
    python -m studies.gender_fusion.whisper --part conditions   # ...of every `test` clip under each condition
    python -m studies.gender_fusion.whisper                     # all three (what is cached is reused), fit, report

The three ``--part`` runs may go side by side (each has its own cache under ``cache/whisper_gender/``).

Candidates: ``W``, a logistic regression on :func:`pipeline.whisper_encoder.encoder_block` (the features
the emotion models read, 3,840 values) fitted on clean clips plus copy 0 of
:func:`training.ge2e_copies.degrade`; ``F*(R,W)`` and ``F*(R,Gd,W)``, late fusions in log-odds fitted on
corpora never seen; ``F*(R,Gd)`` recomputed from the kept probabilities as a check of the rule run.
R's and Gd's log-odds come from ``folds/robust_<corpus>.csv``, ``rule_probs.csv.gz`` and, for degraded
`test`, ``robust_probs.csv.gz``. Writes ``whisper_report.md`` / ``.json`` and ``whisper_probs.csv.gz``.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance, read_manifest
from training.gender_conditions import CONDITIONS
from training.reporting import pct, write_report

from .rule import DEGRADED, DOUBTFUL_TEST_SPEAKERS, _acc, _correct, _log, _z
from .study import CORPORA, PITCH_CONTRADICTED, accuracy, fold_rows

HERE = Path(__file__).resolve().parent
CACHE = PROJECT_ROOT / "cache" / "whisper_gender"
C_GRID = (0.001, 0.01, 0.1)
WEIGHT_STEP = 0.25
MIN_GAIN_OVER_PICK_PTS = 1.0
MAX_CLEAN_LOSS_PTS = 1.0
PICK = "F*(R,Gd)"
WIDTH = 3840


def _whisper_blocks(signals: list[np.ndarray]) -> np.ndarray:
    """``[shape=(len(signals), 3840)]``: :func:`pipeline.whisper_encoder.encoder_block` of each prepared signal."""
    from pipeline.whisper_encoder import encoder_block

    return np.stack([encoder_block(s) for s in signals])


@dataclass(frozen=True)
class Features:
    """Whisper blocks by key (``vectors``) and the one text recorded beside each (``extra``)."""

    vectors: dict[str, np.ndarray]
    extra: dict[str, str]


def _features(items: Iterable, name: str) -> Features:
    """The blocks of ``items`` (``(key, make)`` pairs, see :func:`training.ge2e_copies.embed_versions`), cached."""
    from training.ge2e_copies import embed_versions

    out = embed_versions(items, CACHE / f"{name}.npz", extra="extra", label=name, save_every=500,
                         embed=_whisper_blocks, width=WIDTH)
    keys = out["keys"].tolist()
    return Features(dict(zip(keys, out["embeddings"])), dict(zip(keys, map(str, out["extra"].tolist()))))


def clean_part(rows: Sequence[Utterance]) -> Features:
    from pipeline.audio import load_audio

    return _features(((u.relpath, partial(lambda u: (load_audio(u.path).samples, ""), u)) for u in rows), "clean")


def copies_part(fit_rows: Sequence[Utterance]) -> Features:
    """Copy 0 of :func:`training.ge2e_copies.degrade` of each fitting clip (Gd's first copy), keyed ``path#0``."""
    from pipeline.audio import DEFAULT_AUDIO_CONFIG, decode_audio, prepare_signal, resample
    from training.ge2e_copies import SR, clip_seed, degrade, fitting_babble

    babble: list[np.ndarray] = []

    def make(u: Utterance) -> tuple[np.ndarray, str]:
        if not babble:
            babble.extend(fitting_babble(fit_rows))
        decoded = decode_audio(u.path, mono=True, max_seconds=DEFAULT_AUDIO_CONFIG.max_duration_s)
        out, _, kind, _ = degrade(resample(decoded.samples, decoded.sample_rate, SR), clip_seed(f"{u.relpath}#0"), babble)
        return prepare_signal(out, SR, config=DEFAULT_AUDIO_CONFIG).samples, kind

    return _features([(f"{u.relpath}#0", partial(make, u)) for u in fit_rows], "copies")


def conditions_part(test: Sequence[Utterance], manifest: Sequence[Utterance]) -> Features:
    """Every `test` clip under each condition of :mod:`training.gender_conditions`, keyed ``path|condition``.

    The conditions are made a batch at a time (each clip decoded once), only when some are not cached.
    """
    from training.gender_conditions import condition_batches, study_babble

    cached = _features([], "conditions")
    if all(f"{u.relpath}|{c}" in cached.vectors for u in test for c in CONDITIONS):
        return cached

    def items():
        for indices, prepared in condition_batches(test, babble=study_babble(manifest, scored=test)):
            for condition, signals in prepared.items():
                for i, s in zip(indices, signals):
                    if s is not None:
                        yield f"{test[i].relpath}|{condition}", partial(lambda s: (s, ""), s)

    return _features(items(), "conditions")


# ---- the head and the fusion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperHead:
    """Standardised logistic regression: ``log_odds(X [shape=(n, 3840)]) -> [shape=(n,)]`` of female."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.mean) / self.scale) @ self.coef + self.intercept


def fit_head(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> WhisperHead:
    """``C`` from :data:`C_GRID` by 3-fold GroupKFold over speakers (clip accuracy), then refitted on all rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
    Xs = ((X - mean) / scale).astype(np.float64)

    def make(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)

    folds = list(GroupKFold(n_splits=3).split(Xs, y, groups))
    cv = {c: sum(int((make(c).fit(Xs[tr], y[tr]).predict(Xs[te]) == y[te]).sum()) for tr, te in folds) / len(y)
          for c in C_GRID}
    best = max(C_GRID, key=lambda c: (cv[c], -c))
    model = make(best).fit(Xs, y)
    return WhisperHead(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]), best)


def simplex(k: int, step: float = WEIGHT_STEP) -> list[tuple[float, ...]]:
    """Every weight vector of ``k`` non-negative multiples of ``step`` summing to 1."""
    n = round(1 / step)
    return [tuple(i * step for i in c) for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n]


def fit_multi(zs: Sequence[np.ndarray], y: np.ndarray) -> tuple[list[float], tuple[float, ...]]:
    """Each opinion's temperature by log-loss, then the simplex weights by log-loss (ties: nearest equal weights)."""
    from training.gender_fusion import fit_temperature, log_loss

    temps = [fit_temperature(z, y) for z in zs]
    scaled = [z / t for z, t in zip(zs, temps)]
    equal = 1 / len(zs)
    losses = {w: log_loss(sum(wi * s for wi, s in zip(w, scaled)), y) for w in simplex(len(zs))}
    best = min(losses, key=lambda w: (round(losses[w], 6), sum(abs(wi - equal) for wi in w)))
    return temps, best


def fuse(zs: Sequence[np.ndarray], temps: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    return sum(w * z / t for z, t, w in zip(zs, temps, weights))


# ---- the rule's parts -------------------------------------------------------------------------------------


FUSIONS = {"F*(R,Gd)": ("R", "Gd"), "F*(R,W)": ("R", "W"), "F*(R,Gd,W)": ("R", "Gd", "W")}


def kept_probabilities() -> tuple[dict, dict]:
    """``(folds, test)``: ``folds[corpus][model][path]`` and ``test[condition][model][path]`` log-odds of R and Gd."""
    import csv

    from .robust import read_probs

    folds: dict = {c: {"R": {}, "Gd": {}} for c in CORPORA}
    for c in CORPORA:
        with (HERE / "folds" / f"robust_{c}.csv").open(newline="", encoding="utf-8") as f:
            folds[c]["R"] = {r["path"]: float(_z(float(r["p_female"]))) for r in csv.DictReader(f)}
    test: dict = {cond: {"R": {}, "Gd": {}} for cond in CONDITIONS}
    for r in read_probs(HERE / "rule_probs.csv.gz"):
        if r["model"] != "Gd" or r["p_female"] == "":
            continue
        kind, where = r["part"].split(":", 1)
        (folds if kind == "fold" else test)[where]["Gd"][r["path"]] = float(_z(float(r["p_female"])))
    for r in read_probs(HERE / "robust_probs.csv.gz"):
        if r["model"] == "candidate" and r["p_female"] != "":
            test[r["condition"]]["R"][r["path"]] = float(_z(float(r["p_female"])))
    return folds, test


def _matrix(rows: Sequence[Utterance], clean: Features, copies: Features, *, no_babble: bool):
    X, y, g = [], [], []
    for u in rows:
        versions = [clean.vectors[u.relpath]] if u.relpath in clean.vectors else []
        key = f"{u.relpath}#0"
        if key in copies.vectors and not (no_babble and copies.extra[key] == "babble"):
            versions.append(copies.vectors[key])
        X += versions
        y += [int(u.gender == "female")] * len(versions)
        g += [u.speaker] * len(versions)
    return np.stack(X).astype(np.float64), np.array(y), np.array(g)


def run_folds(rows: Sequence[Utterance], clean: Features, copies: Features, kept: dict,
              probs_out: list[dict]) -> tuple[dict, dict]:
    """W per fold; then the fusions fitted on the other five folds' held-out clips. Returns (folds, settings)."""
    folds: dict = {}
    held_z: dict = {}
    for corpus in CORPORA:
        fit, _, held = fold_rows(rows, corpus)
        X, y, g = _matrix(fit, clean, copies, no_babble=corpus == "librispeech")
        head = fit_head(X, y, g)
        held = [u for u in held if u.relpath in clean.vectors and all(u.relpath in kept[corpus][m] for m in ("R", "Gd"))]
        z_w = head.log_odds(np.stack([clean.vectors[u.relpath] for u in held]))
        held_z[corpus] = {"W": z_w, "R": np.array([kept[corpus]["R"][u.relpath] for u in held]),
                          "Gd": np.array([kept[corpus]["Gd"][u.relpath] for u in held]),
                          "y": np.array([u.gender == "female" for u in held], int), "rows": held}
        folds[corpus] = {"W_C": head.C, "fit_rows": int(len(y)), "candidates": {}}
        _log(f"fold {corpus}: W {pct(((z_w > 0) == held_z[corpus]['y']).mean())} (C {head.C}, {len(y)} rows)")
    settings: dict = {}
    for corpus in CORPORA:
        h = held_z[corpus]
        for name in ("R", "Gd", "W"):
            folds[corpus]["candidates"][name] = _acc(_correct(h[name], h["rows"]), h["rows"])
        for key, parts in FUSIONS.items():
            others = [c for c in CORPORA if c != corpus]
            temps, weights = fit_multi([np.concatenate([held_z[c][p] for c in others]) for p in parts],
                                       np.concatenate([held_z[c]["y"] for c in others]))
            z = fuse([h[p] for p in parts], temps, weights)
            folds[corpus]["candidates"][key] = _acc(_correct(z, h["rows"]), h["rows"])
            settings.setdefault(key, {})[corpus] = {"temperatures": temps, "weights": list(weights)}
            probs_out += [{"path": u.relpath, "part": f"fold:{corpus}", "model": key, "p_female": f"{1 / (1 + np.exp(-v)):.6f}"}
                          for u, v in zip(h["rows"], z)]
        probs_out += [{"path": u.relpath, "part": f"fold:{corpus}", "model": "W", "p_female": f"{1 / (1 + np.exp(-v)):.6f}"}
                      for u, v in zip(h["rows"], h["W"])]
        _log(f"fold {corpus}: " + ", ".join(f"{k} {pct(v['accuracy']['estimate'])}" for k, v in folds[corpus]["candidates"].items()))
    for key, parts in FUSIONS.items():
        temps, weights = fit_multi([np.concatenate([held_z[c][p] for c in CORPORA]) for p in parts],
                                   np.concatenate([held_z[c]["y"] for c in CORPORA]))
        settings[key]["six"] = {"temperatures": temps, "weights": list(weights)}
    return folds, settings


def run_test(rows: Sequence[Utterance], clean: Features, copies: Features, conditions: Features,
             kept: dict, settings: dict, probs_out: list[dict]) -> dict:
    """Six-corpus W (``train`` + ``val``, the 7 pitch-contradicted speakers left out) and the fusions on `test`."""
    fit = [u for u in rows if u.split in ("train", "val") and u.speaker not in PITCH_CONTRADICTED]
    X, y, g = _matrix(fit, clean, copies, no_babble=False)
    head = fit_head(X, y, g)
    test = [u for u in rows if u.split == "test"]
    keep = np.array([u.speaker not in DOUBTFUL_TEST_SPEAKERS for u in test])
    out: dict = {}
    for condition in CONDITIONS:
        z = {"R": np.array([kept[condition]["R"].get(u.relpath, np.nan) for u in test]),
             "Gd": np.array([kept[condition]["Gd"].get(u.relpath, np.nan) for u in test])}
        have = np.array([f"{u.relpath}|{condition}" in conditions.vectors for u in test])
        X = np.stack([conditions.vectors.get(f"{u.relpath}|{condition}", np.zeros(WIDTH, np.float32)) for u in test])
        z["W"] = np.where(have, head.log_odds(X), np.nan)
        for key, parts in FUSIONS.items():
            s = settings[key]["six"]
            z[key] = fuse([z[p] for p in parts], s["temperatures"], s["weights"])
        for name, values in z.items():
            right = np.where(np.isfinite(values), ((np.nan_to_num(values) > 0) ==
                                                   np.array([u.gender == "female" for u in test])), False).astype(float)
            entry = out.setdefault(name, {})
            entry[condition] = accuracy(right, np.array([u.speaker for u in test]), np.array([u.gender for u in test]))
            if condition == "clean":
                entry["clean_without_doubtful"] = accuracy(right[keep], np.array([u.speaker for u in test])[keep],
                                                           np.array([u.gender for u in test])[keep])
            if name in ("W", *FUSIONS):
                probs_out += [{"path": u.relpath, "part": f"test:{condition}", "model": name,
                               "p_female": f"{1 / (1 + np.exp(-v)):.6f}" if np.isfinite(v) else ""}
                              for u, v in zip(test, values)]
    return {"test": out, "W_C": head.C, "fit_rows": int(len(y))}


def decide(folds: dict, test: dict) -> dict:
    """Amendment 3's score and clean `test` per candidate; amendment 7's rule against F*(R,Gd)."""
    out = {}
    for name in test["test"]:
        parts = [folds[c]["candidates"].get(name) for c in CORPORA]
        if any(p is None for p in parts):
            continue
        t = test["test"][name]
        fold_means = [p["accuracy"]["estimate"] for p in parts]
        degraded = [t[c]["accuracy"]["estimate"] for c in DEGRADED]
        out[name] = {"score": float(np.mean(fold_means + degraded)), "folds_mean": float(np.mean(fold_means)),
                     "degraded_mean": float(np.mean(degraded)), "clean": t["clean"]["accuracy"]["estimate"],
                     "clean_without_doubtful": t["clean_without_doubtful"]["accuracy"]["estimate"],
                     "folds_female": float(np.mean([p["female"] for p in parts if p["female"] is not None])),
                     "folds_male": float(np.mean([p["male"] for p in parts if p["male"] is not None])),
                     "clean_female": t["clean"]["female"], "clean_male": t["clean"]["male"]}
    pick = out[PICK]
    for name, d in out.items():
        if name in ("W", "F*(R,W)", "F*(R,Gd,W)"):
            d["gain_over_pick_pts"] = 100 * (d["score"] - pick["score"])
            d["clean_change_pts"] = 100 * (d["clean"] - pick["clean"])
            d["ships_instead"] = d["gain_over_pick_pts"] >= MIN_GAIN_OVER_PICK_PTS and d["clean_change_pts"] >= -MAX_CLEAN_LOSS_PTS
    shipping = [n for n, d in out.items() if d.get("ships_instead")]
    return {"candidates": out, "ships": max(shipping, key=lambda n: out[n]["score"]) if shipping else PICK}


def render(payload: dict) -> str:
    d = payload["decision"]["candidates"]
    lines = ["# Gender: the Whisper encoder block as a third opinion", "",
             "Amendment 7 of [plan.md](plan.md), written before the run. Every figure is a clip accuracy; folds are "
             "leave-one-corpus-out (every clip of a corpus no candidate was fitted on), degraded conditions are the six "
             "of `training/gender_conditions.py` on `test`. Score = mean of those twelve (amendment 3).", "",
             "| candidate | " + " | ".join(CORPORA) + " | folds mean | " + " | ".join(DEGRADED)
             + " | score | clean test | without 2 doubtful | women / men (folds) | women / men (test) |",
             "|---|" + "---:|" * (len(CORPORA) + len(DEGRADED) + 6)]
    for name, s in d.items():
        folds = [pct(payload["folds"][c]["candidates"][name]["accuracy"]["estimate"]) for c in CORPORA]
        degraded = [pct(payload["test"]["test"][name][c]["accuracy"]["estimate"]) for c in DEGRADED]
        lines.append(f"| {name} | " + " | ".join(folds) + f" | {pct(s['folds_mean'])} | " + " | ".join(degraded)
                     + f" | **{pct(s['score'])}** | {pct(s['clean'])} | {pct(s['clean_without_doubtful'])} | "
                       f"{pct(s['folds_female'])} / {pct(s['folds_male'])} | {pct(s['clean_female'])} / {pct(s['clean_male'])} |")
    lines += ["", "95% speaker-bootstrap intervals of every figure are in `whisper_report.json`.", "",
              "## Fusion settings (six-corpus form, fitted on the six folds' held-out clips)", ""]
    for key, s in payload["settings"].items():
        six = s["six"]
        lines.append(f"- {key}: weights {', '.join(f'{w:.2f}' for w in six['weights'])}; "
                     f"temperatures {', '.join(f'{t:.2f}' for t in six['temperatures'])}")
    lines += ["", "## Decision (amendment 7)", ""]
    for name in ("W", "F*(R,W)", "F*(R,Gd,W)"):
        s = d[name]
        lines.append(f"- {name}: score {s['gain_over_pick_pts']:+.1f} points against {PICK}, clean `test` "
                     f"{s['clean_change_pts']:+.1f}: {'ships instead' if s['ships_instead'] else 'does not ship'}.")
    ships = payload["decision"]["ships"]
    lines += ["", f"**What ships: {ships}.**" + (" The Whisper candidates are reported as measured." if ships == PICK else "")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from .robust import write_probs

    parser = argparse.ArgumentParser(prog="python -m studies.gender_fusion.whisper", description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("clean", "copies", "conditions"), help="only compute this part's features")
    parser.add_argument("--out", type=Path, default=HERE / "whisper_report")
    args = parser.parse_args(argv)
    manifest = read_manifest()
    rows = [u for u in manifest if u.gender in ("male", "female") and u.corpus in CORPORA]
    test = [u for u in rows if u.split == "test"]
    fit_rows = [u for u in rows if u.split in ("train", "val")]
    if args.part:
        {"clean": lambda: clean_part(rows), "copies": lambda: copies_part(fit_rows),
         "conditions": lambda: conditions_part(test, manifest)}[args.part]()
        return 0
    clean, copies, conditions = clean_part(rows), copies_part(fit_rows), conditions_part(test, manifest)
    kept_folds, kept_test = kept_probabilities()
    probs: list[dict] = []
    folds, settings = run_folds(rows, clean, copies, kept_folds, probs)
    test_out = run_test(rows, clean, copies, conditions, kept_test, settings, probs)
    payload = {"folds": folds, "settings": settings, "test": test_out, "decision": decide(folds, test_out)}
    write_probs(HERE / "whisper_probs.csv.gz", probs, ("path", "part", "model", "p_female"))
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md; ships {payload['decision']['ships']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
