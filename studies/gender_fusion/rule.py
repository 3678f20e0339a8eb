"""Every gender candidate on one rule: corpora never seen and degraded recordings (``plan.md``, amendment 3).

Usage::

    studies/gender_fusion/queue_robust.sh ravdess emovo savee librispeech   # the robust ECAPA folds (long)
    python -m studies.gender_fusion.rule                                     # embed, fit, score, report
    python -m studies.gender_fusion.rule --rerender                          # the kept figures, decision applied again

Score of a candidate: the mean of twelve accuracies, the six leave-one-corpus-out folds and the
six degraded conditions on `test`. It replaces the shipped stage (E0) when its score is at least
1.0 point higher and its clean `test` accuracy at most 1.0 point lower.

Candidates (names used in the report and in ``rule_probs.csv.gz``):

* ``E0``: the shipped six-corpus ECAPA; folds from ``folds/ecapa_<corpus>.csv``.
* ``R``: the robust-recipe ECAPA; folds from ``folds/robust_<corpus>.csv`` (scored here from
  ``artifacts/gender_loco_robust/<corpus>`` when the model exists) or, for the two folds run in an
  earlier session, their per-speaker counts (``robust_<corpus>.json``); degraded `test` from
  ``robust_probs.csv.gz`` (the six-corpus R scored then).
* ``G``: the GE2E logistic regression of ``report.json``; degraded `test` from ``robust_probs.csv.gz``.
* ``Gd``: the GE2E regression fitted on clean clips plus two degraded copies of each
  (:mod:`studies.gender_fusion.degraded`); in the LibriSpeech fold, copies with babble are left out.
* ``F(E0,Gd)`` / ``F(R,Gd)``: late fusion (:mod:`pipeline.gender_fusion`); per fold the temperatures
  and the ECAPA weight are fitted on the fold's clean `val` rows; the six-corpus form uses the median
  of the six folds' values.

nEMO (in no candidate's fitting) is scored whole, outside the rule. Writes ``rule_report.md`` /
``.json``, the per-clip P(female) of the candidates fitted here in ``rule_probs.csv.gz``, and
``rule_fusion.json`` (the six-corpus fusion of the winner, when it is a fusion) beside this file.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance, read_manifest
from training.gender_conditions import CONDITIONS
from training.reporting import pct, write_report

from .study import CORPORA, PITCH_CONTRADICTED, accuracy, ecapa_probabilities, fold_rows

HERE = Path(__file__).resolve().parent
CACHE = PROJECT_ROOT / "cache" / "ge2e"
DEGRADED = CONDITIONS[1:]
MIN_SCORE_GAIN_PTS = 1.0
MAX_CLEAN_LOSS_PTS = 1.0
DOUBTFUL_TEST_SPEAKERS = frozenset({"speechocean_3023", "speechocean_2430"})
SHIPPED_STAGE = "F*(R,Gd)"
"""The candidate that ``gender_model/`` holds now (``training/recipes/gender.yaml``): the rule's winner, shipped
once its six-corpus weights were retrained (``plan.md``, amendment 6). It changes only with the shipped
weights; the app's and the README's figures for corpora never seen are this candidate's folds."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _z(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _read_csv_probs(path: Path) -> dict[str, float]:
    with path.open(newline="", encoding="utf-8") as f:
        return {r["path"]: float(r["p_female"]) for r in csv.DictReader(f)}


def _correct(z: np.ndarray, us: Sequence[Utterance]) -> np.ndarray:
    return ((np.asarray(z) > 0) == np.array([u.gender == "female" for u in us])).astype(float)


def _acc(correct: np.ndarray, us: Sequence[Utterance]) -> dict:
    return accuracy(correct, np.array([u.speaker for u in us]), np.array([u.gender for u in us]))


def _acc_from_speaker_counts(path: Path, corpus: str, speakers: dict[str, str]) -> dict:
    """A fold scored in an earlier session: per-speaker right/total counts of ``gender_holdout``'s JSON."""
    result = next(r for r in json.loads(path.read_text())["results"] if r["corpus"] == corpus)
    correct, us = [], []
    for spk, c in sorted(result["metrics"]["per_speaker"].items()):
        correct += [1.0] * c["correct"] + [0.0] * (c["n"] - c["correct"])
        us += [(spk, speakers[spk])] * c["n"]
    return accuracy(np.array(correct), np.array([s for s, _ in us]), np.array([g for _, g in us]))


class Embeddings:
    """Clean GE2E embeddings by manifest path, and the degraded fitting copies by ``path#k``."""

    def __init__(self, rows: Sequence[Utterance], fit_rows: Sequence[Utterance]) -> None:
        """``rows``: every clip to embed clean; ``fit_rows``: the clips that get degraded copies."""
        from training.ge2e_copies import embed_corpus, embed_fitting_copies, embed_pitch_copies

        self.clean = embed_corpus(rows, CACHE / "embeddings.npz")["vectors"]
        copies = embed_fitting_copies(fit_rows, CACHE / "degraded_copies.npz")
        self.copies: dict[str, list[tuple[np.ndarray, str]]] = {}
        for key, vector, noise in zip(copies["keys"].tolist(), copies["embeddings"], copies["noise"].tolist()):
            self.copies.setdefault(key.rsplit("#", 1)[0], []).append((vector, noise))
        pitch = embed_pitch_copies(fit_rows, CACHE / "pitch_copies.npz")  # amendment 5 (about 10 min the first time)
        self.pitch = dict(zip(pitch["keys"].tolist(), pitch["embeddings"]))

    def fitting_matrix(self, rows: Sequence[Utterance], *, with_copies: bool, no_babble: bool = False,
                       with_pitch: bool = False):
        """``(X [shape=(m, 256)], y [shape=(m,)], groups [shape=(m,)])`` of ``rows`` (clean) and their copies
        (degraded copies with ``with_copies``, the pitch-moved copy with ``with_pitch``)."""
        X, y, g = [], [], []
        for u in rows:
            if u.relpath not in self.clean:
                continue
            versions = [self.clean[u.relpath]]
            if with_copies:
                versions += [v for v, noise in self.copies.get(u.relpath, []) if not (no_babble and noise == "babble")]
            if with_pitch and u.relpath in self.pitch:
                versions.append(self.pitch[u.relpath])
            X += versions
            y += [int(u.gender == "female")] * len(versions)
            g += [u.speaker] * len(versions)
        return np.stack(X), np.array(y), np.array(g)

    def of(self, rows: Sequence[Utterance]) -> np.ndarray:
        return np.stack([self.clean[u.relpath] for u in rows])


def run_folds(rows: Sequence[Utterance], emb: Embeddings, probs_out: list[dict]) -> tuple[dict, dict]:
    """Per fold and candidate, the accuracy on every clip of the held-out corpus; and each fold's fusion settings."""
    from training.gender_fusion import fit_fusion, fit_ge2e_head

    earlier = json.loads((HERE / "report.json").read_text())["folds"]
    speakers = {u.speaker: u.gender for u in rows}
    folds: dict[str, dict] = {}
    settings: dict[str, dict] = {}
    held_out: dict[str, dict] = {}
    for corpus in CORPORA:
        fit, val, held = fold_rows(rows, corpus)
        held = [u for u in held if u.relpath in emb.clean]
        val = [u for u in val if u.relpath in emb.clean]
        out: dict[str, dict] = {"G": earlier[corpus]["methods"]["ge2e_lr"]}
        ecapa = {"E0": _read_csv_probs(HERE / "folds" / f"ecapa_{corpus}.csv")}
        robust_csv, robust_dir = HERE / "folds" / f"robust_{corpus}.csv", PROJECT_ROOT / "artifacts" / "gender_loco_robust" / corpus
        if robust_csv.is_file() or (robust_dir / "model.safetensors").is_file():
            ecapa["R"] = ecapa_probabilities(robust_dir, list(held) + list(val), robust_csv)
        elif (HERE / f"robust_{corpus}.json").is_file():
            out["R"] = _acc_from_speaker_counts(HERE / f"robust_{corpus}.json", corpus, speakers)
        X, y, g = emb.fitting_matrix(fit, with_copies=True, no_babble=corpus == "librispeech")
        head, c = fit_ge2e_head(X, y, g)
        z_gd = head.log_odds(emb.of(held))
        out["Gd"] = _acc(_correct(z_gd, held), held)
        scores = {"Gd": (held, z_gd)}
        if emb.pitch:  # amendment 5: Gd plus one pitch-moved copy of each clip
            X, y_p, g = emb.fitting_matrix(fit, with_copies=True, no_babble=corpus == "librispeech", with_pitch=True)
            z_gdp = fit_ge2e_head(X, y_p, g)[0].log_odds(emb.of(held))
            out["Gdp"] = _acc(_correct(z_gdp, held), held)
            scores["Gdp"] = (held, z_gdp)
        for name, p in ecapa.items():
            held_e = [u for u in held if u.relpath in p]
            z_e = _z([p[u.relpath] for u in held_e])
            out[name] = _acc(_correct(z_e, held_e), held_e)
            val_e = [u for u in val if u.relpath in p]
            fitted = fit_fusion(_z([p[u.relpath] for u in val_e]), head, emb.of(val_e),
                                np.array([u.gender == "female" for u in val_e], int), provenance={"fold": corpus})
            f = fitted.fusion
            key = f"F({name},Gd)"
            z_f = f.fused_log_odds(z_e, emb.of(held_e))
            out[key] = _acc(_correct(z_f, held_e), held_e)
            settings.setdefault(key, {})[corpus] = {"ecapa_temperature": f.ecapa_temperature,
                                                   "ge2e_temperature": f.ge2e_temperature, "ecapa_weight": f.ecapa_weight}
            scores[key] = (held_e, z_f)
        held_out[corpus] = {**{name: dict(zip([u.relpath for u in scores[f"F({name},Gd)"][0]],
                                              _z([p[u.relpath] for u in scores[f"F({name},Gd)"][0]])))
                               for name, p in ecapa.items()},
                            **{name: dict(zip([u.relpath for u in us], z)) for name, (us, z) in scores.items()
                               if name in ("Gd", "Gdp")},
                            "y": {u.relpath: int(u.gender == "female") for u in held},
                            "speaker": {u.relpath: u.speaker for u in held}}
        for name, (us, z) in scores.items():
            probs_out += [{"path": u.relpath, "part": f"fold:{corpus}", "model": name, "p_female": f"{1 / (1 + np.exp(-v)):.6f}"}
                          for u, v in zip(us, z)]
        folds[corpus] = {"ge2e_C": c, "fit_rows": int(len(y)), "candidates": out}
        _log(f"fold {corpus}: " + ", ".join(f"{k} {pct(v['accuracy']['estimate'])}" for k, v in out.items()))
    never_seen_fusion(folds, settings, held_out, probs_out)
    return folds, settings


def _pooled(held_out: dict, corpora: Sequence[str], second: str = "Gd",
            first: str = "E0") -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Paths, ``first``'s and ``second``'s log-odds and labels of the held-out clips of ``corpora`` that both scored."""
    paths = [p for c in corpora for p in held_out[c][first] if p in held_out[c][second]]
    where = {p: c for c in corpora for p in held_out[c][first]}
    return (paths, np.array([held_out[where[p]][first][p] for p in paths]),
            np.array([held_out[where[p]][second][p] for p in paths]), np.array([held_out[where[p]]["y"][p] for p in paths]))


def never_seen_fusion(folds: dict, settings: dict, held_out: dict, probs_out: list[dict]) -> None:
    """F*(E0,Gd) (amendment 4), F*(E0,Gdp) (5), F*(R,Gd) (6): per fold, temperatures and weight fitted on the
    other five folds' held-out clips.

    Adds ``folds[c]["candidates"][key]``, ``settings[key][c]`` and, under ``settings[key]["six"]``, the
    values fitted on all six folds' held-out clips (the shipped form). A pair runs only when both opinions
    scored every fold.
    """
    for first, second in (("E0", "Gd"), ("E0", "Gdp"), ("R", "Gd")):
        if all(first in held_out[c] and second in held_out[c] for c in CORPORA):
            _never_seen_fusion(folds, settings, held_out, probs_out, second, first)


def _never_seen_fusion(folds: dict, settings: dict, held_out: dict, probs_out: list[dict], second: str,
                       first: str = "E0") -> None:
    from training.gender_fusion import fit_weights

    key = f"F*({first},{second})"
    for corpus in CORPORA:
        _, z_e, z_g, y = _pooled(held_out, [c for c in CORPORA if c != corpus], second, first)
        t_e, t_g, w, _ = fit_weights(z_e, z_g, y)
        paths, h_e, h_g, h_y = _pooled(held_out, [corpus], second, first)
        z = w * h_e / t_e + (1 - w) * h_g / t_g
        correct = ((z > 0) == (h_y == 1)).astype(float)
        speakers = np.array([held_out[corpus]["speaker"][p] for p in paths])
        genders = np.where(h_y == 1, "female", "male")
        folds[corpus]["candidates"][key] = accuracy(correct, speakers, genders)
        settings.setdefault(key, {})[corpus] = {"ecapa_temperature": t_e, "ge2e_temperature": t_g, "ecapa_weight": w}
        probs_out += [{"path": p, "part": f"fold:{corpus}", "model": key, "p_female": f"{1 / (1 + np.exp(-v)):.6f}"}
                      for p, v in zip(paths, z)]
        _log(f"fold {corpus}: {key} {pct(correct.mean())} (w {w}, T {t_e:.2f} / {t_g:.2f})")
    _, z_e, z_g, y = _pooled(held_out, CORPORA, second, first)
    t_e, t_g, w, _ = fit_weights(z_e, z_g, y)
    settings[key]["six"] = {"ecapa_temperature": t_e, "ge2e_temperature": t_g, "ecapa_weight": w}


def median_fusion(settings: dict[str, dict]) -> dict:
    """The six-corpus fusion settings: the median over the folds of each value (``plan.md``, amendment 3)."""
    keys = ("ecapa_temperature", "ge2e_temperature", "ecapa_weight")
    return {k: float(np.median([s[k] for s in settings.values()])) for k in keys}


def run_test(rows: Sequence[Utterance], manifest: Sequence[Utterance], emb: Embeddings, settings: dict,
             probs_out: list[dict]) -> tuple[dict, dict]:
    """Six-corpus candidates on `test` (clean and degraded) and on every nEMO clip; the fitted fusions."""
    from pipeline.gender_fusion import GenderFusion
    from training.gender_fusion import fit_ge2e_head

    from training.ge2e_copies import score_test_conditions
    from .robust import read_probs

    test = [u for u in rows if u.split == "test"]
    fit = [u for u in rows if u.split in ("train", "val") and u.speaker not in PITCH_CONTRADICTED]
    heads, fit_rows = {}, {}
    for second, pitch in (("Gd", False), ("Gdp", True)):
        if pitch and not emb.pitch:
            continue
        X, y, g = emb.fitting_matrix(fit, with_copies=True, with_pitch=pitch)
        heads[second], fit_rows[second] = fit_ge2e_head(X, y, g), int(len(y))
    head, c = heads["Gd"]
    cond = score_test_conditions(test, manifest, CACHE / "test_conditions.npz", ecapa_dir=PROJECT_ROOT / "gender_model")
    index = {k: i for i, k in enumerate(cond["keys"].tolist())}
    old = {}
    for r in read_probs(HERE / "robust_probs.csv.gz"):
        if r["p_female"] != "":
            old[(r["model"], r["path"], r["condition"])] = float(r["p_female"])
    fusions = {}
    for key, per_fold in settings.items():
        if "six" in per_fold:  # fitted on every fold's held-out clips (amendment 4)
            m = per_fold["six"]
            h, c_h = heads[key[key.index(",") + 1:-1]]
            fusions[key] = GenderFusion(h, m["ecapa_temperature"], m["ge2e_temperature"], m["ecapa_weight"],
                                        {"ge2e_C": c_h, "fitted_on": "held-out clips of the six folds"})
        elif len(per_fold) == len(CORPORA):
            m = median_fusion(per_fold)
            fusions[key] = GenderFusion(head, m["ecapa_temperature"], m["ge2e_temperature"], m["ecapa_weight"],
                                        {"ge2e_C": c, "folds": per_fold})
    correct: dict[str, dict[str, np.ndarray]] = {}
    for condition in CONDITIONS:
        idx = np.array([index.get(f"{u.relpath}|{condition}", -1) for u in test])
        ok = idx >= 0
        z_e0 = np.where(ok, _z(np.where(ok, cond["p_ecapa"][idx], 0.5)), np.nan)
        z_gd = np.where(ok, head.log_odds(cond["embeddings"][idx]), np.nan)
        z = {"E0": z_e0, "Gd": z_gd,
             **({"Gdp": np.where(ok, heads["Gdp"][0].log_odds(cond["embeddings"][idx]), np.nan)} if "Gdp" in heads else {}),
             "R": _z([old.get(("candidate", u.relpath, condition), np.nan) for u in test]),
             "G": _z([old.get(("ge2e_lr", u.relpath, condition), np.nan) for u in test])}
        for key, f in fusions.items():
            z[key] = f.fused_log_odds(z[key[key.index("(") + 1:key.index(",")]], np.where(ok[:, None], cond["embeddings"][idx], 0.0))
        for name, values in z.items():
            right = np.where(np.isfinite(values), _correct(np.nan_to_num(values), test), 0.0)
            correct.setdefault(name, {})[condition] = right
            if name not in ("R", "G"):
                probs_out += [{"path": u.relpath, "part": f"test:{condition}", "model": name,
                               "p_female": f"{1 / (1 + np.exp(-v)):.6f}" if np.isfinite(v) else ""}
                              for u, v in zip(test, values)]
    out = {}
    keep = np.array([u.speaker not in DOUBTFUL_TEST_SPEAKERS for u in test])
    for name, per in correct.items():
        out[name] = {condition: _acc(v, test) for condition, v in per.items()}
        out[name]["clean_without_doubtful"] = _acc(per["clean"][keep], [u for u, k in zip(test, keep) if k])
    nemo = [u for u in manifest if u.corpus == "nemo" and u.gender in ("male", "female") and u.relpath in emb.clean]
    p_e0 = ecapa_probabilities(PROJECT_ROOT / "gender_model", nemo, CACHE / "nemo_e0.csv")
    nemo = [u for u in nemo if u.relpath in p_e0]
    z_e0, E = _z([p_e0[u.relpath] for u in nemo]), emb.of(nemo)
    nz = {"E0": z_e0, **{name: h.log_odds(E) for name, (h, _) in heads.items()}}
    for key, f in fusions.items():
        if "(E0," in key:
            nz[key] = f.fused_log_odds(z_e0, E)
    nemo_out = {name: _acc(_correct(z, nemo), nemo) for name, z in nz.items()}
    return {"test": out, "nemo": nemo_out, "ge2e_C": {k: h[1] for k, h in heads.items()}, "fit_rows": fit_rows}, fusions


def decide(table: dict) -> dict:
    """The rule of amendment 3 for every candidate with all twelve parts."""
    out = {}
    for name, t in table.items():
        parts = [t["folds"].get(c) for c in CORPORA] + [t["test"].get(c) for c in DEGRADED]
        if any(p is None for p in parts) or t["test"].get("clean") is None:
            out[name] = {"complete": False, "score": None}
            continue
        score = float(np.mean(parts))
        out[name] = {"complete": True, "score": score, "clean": t["test"]["clean"]}
    e0 = out["E0"]
    for name, d in out.items():
        if d["complete"] and name != "E0":
            d["score_gain_pts"] = 100 * (d["score"] - e0["score"])
            d["clean_change_pts"] = 100 * (d["clean"] - e0["clean"])
            d["passes"] = d["score_gain_pts"] >= MIN_SCORE_GAIN_PTS and d["clean_change_pts"] >= -MAX_CLEAN_LOSS_PTS
    passing = [n for n, d in out.items() if d.get("passes")]
    winner = max(passing, key=lambda n: out[n]["score"]) if passing else "E0"
    return {"candidates": out, "winner": winner, "shipped": SHIPPED_STAGE if SHIPPED_STAGE in out else winner}


def summary_table(folds: dict, test: dict) -> dict:
    """``{candidate: {"folds": {corpus: acc}, "test": {condition: acc}}}`` of point estimates."""
    table: dict = {}
    for corpus, f in folds.items():
        for name, a in f["candidates"].items():
            table.setdefault(name, {"folds": {}, "test": {}})["folds"][corpus] = a["accuracy"]["estimate"]
    for name, t in test["test"].items():
        table.setdefault(name, {"folds": {}, "test": {}})["test"] = {c: t[c]["accuracy"]["estimate"] for c in CONDITIONS}
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from .robust import write_probs
    from .rule_render import render

    parser = argparse.ArgumentParser(prog="python -m studies.gender_fusion.rule", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "rule_report")
    parser.add_argument("--rerender", action="store_true",
                        help="apply the decision again to the figures of the kept report (after SHIPPED_STAGE changes; "
                             "embeds and fits nothing)")
    args = parser.parse_args(argv)
    if args.rerender:
        kept = json.loads(args.out.with_name(args.out.name + ".json").read_text(encoding="utf-8"))
        payload = {k: v for k, v in kept.items() if k not in ("run", "figures_run")}
        payload["decision"] = decide(payload["table"])
        payload["figures_run"] = kept.get("figures_run", kept.get("run"))  # the run that measured the figures
        write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
        _log(f"wrote {args.out}.md again; winner {payload['decision']['winner']}, shipped {payload['decision']['shipped']}")
        return 0
    import torch

    torch.set_num_threads(1)
    manifest = read_manifest()
    gendered = [u for u in manifest if u.gender in ("male", "female")]
    rows = [u for u in gendered if u.corpus in CORPORA]
    emb = Embeddings(gendered, [u for u in rows if u.split in ("train", "val")])
    probs: list[dict] = []
    folds, settings = run_folds(rows, emb, probs)
    test, fusions = run_test(rows, manifest, emb, settings, probs)
    table = summary_table(folds, test)
    decision = decide(table)
    payload = {"folds": folds, "fold_fusion_settings": settings, "test": test, "table": table, "decision": decision,
               "six_corpus_fusions": {k: {kk: vv for kk, vv in f.to_dict().items() if kk != "ge2e_head"}
                                      for k, f in fusions.items()}}
    write_probs(HERE / "rule_probs.csv.gz", probs, ("path", "part", "model", "p_female"))
    winner = decision["winner"]
    if winner in fusions:
        fusions[winner].save(HERE)  # fusion.json of the winner, copied into the shipped folder by training
        (HERE / "fusion.json").replace(HERE / "rule_fusion.json")
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md; winner {winner}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
