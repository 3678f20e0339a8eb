"""ECAPA + GE2E gender fusion, leave-one-corpus-out (protocol and decision rule: ``plan.md``).

Usage::

    studies/gender_fusion/queue.sh ased emovo savee        # the ECAPA fold trainings (long; any order)
    python -m studies.gender_fusion                        # score the folds done, fit, report

For each corpus ``C`` of the six whose ECAPA fold exists (``artifacts/gender_loco/C``, fitted
on ``train`` of the other five):

1. The ECAPA scores every clip of ``C`` and the ``val`` rows of the other five; its P(female)
   is kept in ``folds/ecapa_C.csv`` (so the report can be rebuilt without the model).
2. A logistic regression on the GE2E embeddings (``cache/ge2e/embeddings.npz``, made by
   ``studies.ge2e_gender``) is fitted on the same ``train`` rows (``C`` of the regression by
   GroupKFold over speakers).
3. On the ``val`` rows: one temperature per model, then the ECAPA weight ``w`` of the fused
   log-odds (:func:`training.gender_fusion.fit_fusion`).
4. On every clip of ``C``: accuracy of the ECAPA, the GE2E-LR, the fusion with the chosen ``w``
   and with ``w = 0.5``, with a 95% speaker bootstrap and per gender.

Writes ``report.md`` / ``report.json`` beside this file; applies the plan's decision rule only
when all six folds are there.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance, read_manifest
from training.reporting import pct, write_report
from training.stats import speaker_bootstrap

HERE = Path(__file__).resolve().parent
CORPORA = ("ravdess", "savee", "librispeech", "ased", "emovo", "speechocean")
METHODS = ("ecapa", "ge2e_lr", "fused", "fused_half")
METHOD_NAMES = {"ecapa": "ECAPA", "ge2e_lr": "GE2E-LR", "fused": "fused (w on val)", "fused_half": "fused (w = 0.5)"}
#: Speakers whose median F0 contradicts their label (shared/data/README.md).
PITCH_CONTRADICTED = frozenset(f"speechocean_{i}" for i in (2355, 2917, 2937, 3023, 2380, 2430, 2451))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fold_rows(rows: Sequence[Utterance], corpus: str) -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
    """``(fit, val, held_out)`` rows of one fold: ``train`` and ``val`` of the other corpora, every clip of ``corpus``."""
    others = [u for u in rows if u.corpus != corpus]
    return ([u for u in others if u.split == "train"], [u for u in others if u.split == "val"],
            [u for u in rows if u.corpus == corpus])


def ecapa_probabilities(model_dir: Path, rows: Sequence[Utterance], cache: Path, *, chunk: int = 32) -> dict[str, float]:
    """P(female) of the ECAPA in ``model_dir`` for ``rows`` (by manifest path), kept in the CSV ``cache``.

    Clips that cannot be loaded are left out (and logged); the CSV has columns ``path, p_female``.
    """
    if cache.is_file():
        with cache.open(newline="", encoding="utf-8") as f:
            done = {r["path"]: float(r["p_female"]) for r in csv.DictReader(f)}
        if all(u.relpath in done for u in rows):
            return done
    import torch

    from pipeline.audio import load_audio
    from pipeline.errors import PipelineError
    from pipeline.gender import GenderClassifier

    torch.set_num_threads(1)
    model = GenderClassifier.load(model_dir, second_opinion=False)  # the ECAPA's own opinion
    done: dict[str, float] = {}
    for i in range(0, len(rows), chunk):
        names, signals = [], []
        for u in rows[i:i + chunk]:
            try:
                signals.append(load_audio(u.path).samples)
                names.append(u.relpath)
            except PipelineError as exc:
                _log(f"skipped {u.relpath}: {exc}")
        if signals:
            for name, p in zip(names, model.predict_proba_batch(signals)):
                done[name] = float(p[1])
        if (i // chunk) % 20 == 0:
            _log(f"{model_dir.name}: {min(i + chunk, len(rows))}/{len(rows)} clips")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "p_female"])
        writer.writerows((path, f"{p:.6f}") for path, p in done.items())
    tmp.replace(cache)
    return done


def accuracy(correct: np.ndarray, speakers: np.ndarray, gender: np.ndarray) -> dict:
    """Accuracy with a 95% speaker bootstrap, and per gender."""
    interval = speaker_bootstrap(speakers, lambda idx: float(correct[idx].mean()), n_boot=2000, seed=0)
    out = {"clips": int(correct.size), "speakers": int(np.unique(speakers).size), "accuracy": interval.to_dict()}
    for g in ("female", "male"):
        mask = gender == g
        out[g] = float(correct[mask].mean()) if mask.any() else None
    return out


def run_fold(corpus: str, rows: Sequence[Utterance], vectors: dict[str, np.ndarray], ecapa: dict[str, float]) -> dict:
    """Fit the GE2E head and the fusion on this fold's ``train``/``val`` rows, score every clip of ``corpus``."""
    from pipeline.gender_fusion import log_odds_female
    from training.gender_fusion import fit_fusion, fit_ge2e_head

    fit, val, held = fold_rows(rows, corpus)
    fit = [u for u in fit if u.relpath in vectors]
    val = [u for u in val if u.relpath in vectors and u.relpath in ecapa]
    held = [u for u in held if u.relpath in vectors and u.relpath in ecapa]

    def arrays(us: Sequence[Utterance]):
        emb = np.stack([vectors[u.relpath] for u in us])
        y = np.array([u.gender == "female" for u in us], int)
        p = np.array([ecapa.get(u.relpath, np.nan) for u in us])
        z_e = log_odds_female(np.stack([1 - p, p], axis=1)) if us and np.isfinite(p).all() else None
        return emb, y, z_e

    X_fit, y_fit, _ = arrays(fit)
    head, c = fit_ge2e_head(X_fit, y_fit, np.array([u.speaker for u in fit]))
    X_val, y_val, z_val = arrays(val)
    fitted = fit_fusion(z_val, head, X_val, y_val, provenance={"fold": corpus})
    fusion = fitted.fusion
    X_held, y_held, z_held = arrays(held)
    z_g = head.log_odds(X_held)
    scores = {
        "ecapa": z_held,
        "ge2e_lr": z_g,
        "fused": fusion.fused_log_odds(z_held, X_held),
        "fused_half": 0.5 * z_held / fusion.ecapa_temperature + 0.5 * z_g / fusion.ge2e_temperature,
    }
    speakers = np.array([u.speaker for u in held])
    gender = np.array([u.gender for u in held])
    keep = ~np.isin(speakers, list(PITCH_CONTRADICTED))
    result = {
        "corpus": corpus, "fit_clips": len(fit), "val_clips": len(val), "ge2e_C": c,
        "ecapa_temperature": fusion.ecapa_temperature, "ge2e_temperature": fusion.ge2e_temperature,
        "ecapa_weight": fusion.ecapa_weight, "val_log_loss": {str(k): v for k, v in fitted.val_log_loss.items()},
        "methods": {m: accuracy(((z > 0).astype(int) == y_held).astype(float), speakers, gender) for m, z in scores.items()},
    }
    if not keep.all():
        # the evidence on those labels: how often each model (never fitted on this corpus) agrees with the label
        result["pitch_contradicted_speakers"] = {
            spk: {"label": str(gender[speakers == spk][0]), "clips": int((speakers == spk).sum()),
                  **{f"{m}_agrees": float((((scores[m][speakers == spk] > 0).astype(int)) == y_held[speakers == spk]).mean())
                     for m in ("ecapa", "ge2e_lr")}}
            for spk in sorted(set(speakers[~keep]))}
        result["methods_without_pitch_contradicted"] = {
            m: accuracy(((z[keep] > 0).astype(int) == y_held[keep]).astype(float), speakers[keep], gender[keep])
            for m, z in scores.items()}
    return result


def decide(folds: dict[str, dict]) -> dict:
    """The plan's decision rule over the six folds (``None`` verdict until all six exist)."""
    means = {m: float(np.mean([f["methods"][m]["accuracy"]["estimate"] for f in folds.values()])) for m in METHODS}
    out: dict = {"folds": sorted(folds), "means": means, "complete": len(folds) == len(CORPORA)}
    if not out["complete"]:
        out["verdict"] = None
        return out
    single = max(("ecapa", "ge2e_lr"), key=lambda m: means[m])
    worst_drop = max(folds[c]["methods"][single]["accuracy"]["estimate"] - folds[c]["methods"]["fused"]["accuracy"]["estimate"]
                     for c in folds)
    fused_wins = means["fused"] - means[single] >= 0.01 and worst_drop <= 0.02
    # the plan: "otherwise ship the better single model by mean (the ECAPA stays the router's architecture in
    # every case; a GE2E-only router is not an option of this study)": without the fusion, the ECAPA alone
    out.update({"better_single": single, "fused_gain_points": 100 * (means["fused"] - means[single]),
                "worst_corpus_drop_points": 100 * worst_drop, "verdict": "fused" if fused_wins else "ecapa"})
    return out


def _cell(result: dict) -> str:
    a = result["accuracy"]
    return f"{pct(a['estimate'])} ({pct(a['low'])}-{pct(a['high'])})"


def render(payload: dict) -> str:
    folds, summary = payload["folds"], payload["summary"]
    lines = ["# ECAPA + GE2E gender fusion, leave one corpus out", "",
             "Generated by `python -m studies.gender_fusion` (plan: `plan.md`). Both models of a fold are fitted on "
             "`train` of the other five corpora; temperatures and the ECAPA weight `w` on their `val` rows; every "
             "clip of the held-out corpus is scored. 95% intervals: bootstrap over speakers.", ""]
    pending = [c for c in CORPORA if c not in folds]
    if pending:
        lines += [f"**Folds not trained yet:** {', '.join(pending)} (no decision until all six are in).", ""]
    lines += ["| held out | clips | speakers | " + " | ".join(METHOD_NAMES[m] for m in METHODS) + " | w | T ecapa | T ge2e |",
              "|---|---:|---:|" + "---:|" * len(METHODS) + "---:|---:|---:|"]
    for c in CORPORA:
        if c not in folds:
            continue
        f = folds[c]
        m = f["methods"]
        lines.append(f"| {c} | {m['ecapa']['clips']} | {m['ecapa']['speakers']} | "
                     + " | ".join(_cell(m[k]) for k in METHODS)
                     + f" | {f['ecapa_weight']:.2f} | {f['ecapa_temperature']:.2f} | {f['ge2e_temperature']:.2f} |")
    lines.append(f"| **mean of {len(folds)}** | | | " + " | ".join(f"**{pct(summary['means'][k])}**" for k in METHODS)
                 + " | | | |")
    lines += ["", "Per gender (female / male):", "", "| held out | " + " | ".join(METHOD_NAMES[m] for m in METHODS) + " |",
              "|---|" + "---:|" * len(METHODS)]
    for c in CORPORA:
        if c in folds:
            m = folds[c]["methods"]
            lines.append(f"| {c} | " + " | ".join(f"{pct(m[k]['female'], missing='–')} / {pct(m[k]['male'], missing='–')}"
                                                 for k in METHODS) + " |")
    so = folds.get("speechocean", {}).get("methods_without_pitch_contradicted")
    if so:
        lines += ["", "speechocean without the 7 speakers whose median F0 contradicts their label: "
                  + ", ".join(f"{METHOD_NAMES[k]} {_cell(so[k])}" for k in METHODS) + "."]
        doubt = folds["speechocean"].get("pitch_contradicted_speakers", {})
        if doubt:
            lines += ["", "Those 7 speakers, share of their clips on which each model of this fold (never fitted on "
                      "speechocean) agrees with the corpus label:", "", "| speaker | label | clips | ECAPA | GE2E-LR |",
                      "|---|---|---:|---:|---:|"]
            lines += [f"| {k} | {v['label']} | {v['clips']} | {pct(v['ecapa_agrees'])} | {pct(v['ge2e_lr_agrees'])} |"
                      for k, v in doubt.items()]
    lines += ["", "## Decision", ""]
    if summary["verdict"] is None:
        lines.append("Not applied: the rule needs all six folds.")
    else:
        lines.append(f"Better single model by mean: {METHOD_NAMES[summary['better_single']]}. Fused gain "
                     f"{summary['fused_gain_points']:+.1f} points (needs >= +1.0), worst corpus drop against it "
                     f"{summary['worst_corpus_drop_points']:.1f} points (allowed <= 2.0). **Ships: "
                     f"{METHOD_NAMES[summary['verdict']]}"
                     + (" alone** (the fusion does not pass; a GE2E-only router is not an option of the plan)."
                        if summary["verdict"] == "ecapa" else ".**"))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.gender_fusion", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=PROJECT_ROOT / "artifacts" / "gender_loco",
                        help="folder holding one ECAPA fold per corpus (default artifacts/gender_loco)")
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "cache" / "ge2e" / "embeddings.npz")
    parser.add_argument("--folds-dir", type=Path, default=HERE / "folds", help="per-fold ECAPA probabilities (CSV)")
    parser.add_argument("--out", type=Path, default=HERE / "report")
    parser.add_argument("--refit-all", action="store_true",
                        help="refit every fold; by default a fold already in OUT.json is kept as it is (its inputs, the "
                             "fold's ECAPA probabilities and the GE2E cache, do not change; each GE2E fit takes minutes)")
    args = parser.parse_args(argv)

    from training.ge2e_copies import embed_corpus

    rows = [u for u in read_manifest() if u.gender in ("male", "female")]
    vectors = embed_corpus(rows, args.cache)["vectors"]
    folds: dict[str, dict] = {}
    earlier = {}
    if not args.refit_all and args.out.with_suffix(".json").is_file():
        import json

        earlier = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8")).get("folds", {})
    for corpus in CORPORA:
        if corpus in earlier:
            folds[corpus] = earlier[corpus]
            _log(f"{corpus}: kept from {args.out.with_suffix('.json')} (--refit-all refits it)")
            continue
        cache = args.folds_dir / f"ecapa_{corpus}.csv"
        model = args.models / corpus
        if not cache.is_file() and not (model / "model.safetensors").is_file():
            _log(f"{corpus}: no ECAPA fold yet ({model})")
            continue
        _, val, held = fold_rows(rows, corpus)
        ecapa = ecapa_probabilities(model, list(held) + list(val), cache)
        folds[corpus] = run_fold(corpus, rows, vectors, ecapa)
        _log(f"{corpus}: " + ", ".join(f"{k} {pct(v['accuracy']['estimate'])}" for k, v in folds[corpus]["methods"].items()))
    if not folds:
        _log("no fold to report")
        return 1
    payload = {"folds": folds, "summary": decide(folds)}
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md")
    return 0
