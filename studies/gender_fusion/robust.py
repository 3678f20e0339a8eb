"""Robust six-corpus ECAPA against the shipped one on `test` (protocol and rule: ``robust_plan.md``).

Usage::

    python -m studies.gender_fusion.robust                      # score (or reuse robust_probs.csv.gz), report
    python -m studies.gender_fusion.robust --candidate DIR      # another candidate model folder

Every gender-labelled `test` clip (speakers never seen) is scored clean and under each condition
of :data:`training.gender_conditions.CONDITIONS` (the robustness table of the evaluation) by:

* ``shipped``: the shipped ECAPA (``gender_model/``);
* ``candidate``: the candidate ECAPA of the plan (default ``artifacts/gender_robust``);
* ``ge2e_lr``: a logistic regression on GE2E embeddings (:func:`training.gender_fusion.fit_ge2e_head`)
  fitted on `train` + `val` of all six corpora without the seven pitch-contradicted speakers,
  from the cached clean embeddings of ``studies.ge2e_gender``; for reference, not a candidate.

P(female) of every clip, condition and model is kept in ``robust_probs.csv.gz`` beside this
file, so the report is rebuilt from it without the models (``--rescore`` scores again). Writes
``robust_report.md`` / ``.json`` and applies the plan's decision rule.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.corpus import Utterance, read_manifest
from training.gender_conditions import CONDITIONS, DESCRIPTIONS
from training.reporting import pct, write_report

from .study import PITCH_CONTRADICTED

HERE = Path(__file__).resolve().parent
MODELS = ("shipped", "candidate", "ge2e_lr")
#: The plan's rule: degraded mean at least this many points better; clean at most this much worse overall...
MIN_DEGRADED_GAIN_PTS = 3.0
MAX_CLEAN_LOSS_PTS = 0.5
#: ...and per corpus (SAVEE: at most this many clips).
MAX_CORPUS_LOSS_PTS = 2.0
MAX_SAVEE_LOSS_CLIPS = 3


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ge2e_head(rows: Sequence[Utterance], cache: Path):
    """The GE2E-LR head fitted on `train` + `val` of every corpus, pitch-contradicted speakers left out."""
    from training.ge2e_copies import embed_corpus
    from training.gender_fusion import fit_ge2e_head

    fit = [u for u in rows if u.split in ("train", "val") and u.speaker not in PITCH_CONTRADICTED]
    vectors = embed_corpus(fit, cache)["vectors"]
    fit = [u for u in fit if u.relpath in vectors]
    head, c = fit_ge2e_head(np.stack([vectors[u.relpath] for u in fit]),
                            np.array([u.gender == "female" for u in fit], int), np.array([u.speaker for u in fit]))
    _log(f"ge2e_lr: fitted on {len(fit)} clips, C={c}")
    return head


def score(rows: Sequence[Utterance], manifest: Sequence[Utterance], candidate: Path, cache: Path,
          shipped: Path = PROJECT_ROOT / "gender_model") -> list[dict]:
    """P(female) per clip, condition and model: rows of ``path, condition, model, p_female`` (empty when refused)."""
    from pipeline.gender import GenderClassifier
    from pipeline.speaker_encoder import SpeakerEncoder
    from training.gender_conditions import condition_batches, study_babble

    models = {"shipped": GenderClassifier.load(shipped),
              "candidate": GenderClassifier.load(candidate)}
    head, encoder = ge2e_head(manifest, cache), SpeakerEncoder()
    out: list[dict] = []
    start, done = time.perf_counter(), 0
    for indices, prepared in condition_batches(rows, babble=study_babble(manifest, scored=rows)):
        for condition, signals in prepared.items():
            good = [s for s in signals if s is not None]
            probs = {name: m.predict_proba_batch(good)[:, 1] for name, m in models.items()} if good else {}
            if good:
                probs["ge2e_lr"] = 1.0 / (1.0 + np.exp(-head.log_odds(encoder.embed_many(good))))
            k = 0
            for i, s in zip(indices, signals):
                for name in MODELS:
                    out.append({"path": rows[i].relpath, "condition": condition, "model": name,
                                "p_female": "" if s is None else f"{float(probs[name][k]):.6f}"})
                k += s is not None
        done += len(indices)
        elapsed = time.perf_counter() - start
        _log(f"robust: {done}/{len(rows)} clips, {done / elapsed:.2f} clips/s, "
             f"eta {(len(rows) - done) * elapsed / max(done, 1) / 60:.1f} min")
    return out


def tables(rows: Sequence[Utterance], probs: Sequence[dict], *, without: frozenset = frozenset()) -> dict:
    """Accuracy per model and condition (overall and per corpus) over ``rows`` not spoken by ``without``."""
    by_path = {u.relpath: u for u in rows if u.speaker not in without}
    right: dict = {}
    for r in probs:
        u = by_path.get(r["path"])
        if u is None:
            continue
        ok = r["p_female"] != "" and (float(r["p_female"]) >= 0.5) == (u.gender == "female")
        for key in ("all", u.corpus):
            cell = right.setdefault(r["model"], {}).setdefault(r["condition"], {}).setdefault(key, [0, 0])
            cell[0] += int(ok)
            cell[1] += 1
    out: dict = {}
    for model, conditions in right.items():
        out[model] = {c: {k: {"correct": v[0], "n": v[1], "accuracy": v[0] / v[1]} for k, v in sorted(cells.items())}
                      for c, cells in conditions.items()}
        degraded = [out[model][c]["all"]["accuracy"] for c in CONDITIONS[1:] if c in out[model]]
        out[model]["degraded_mean"] = float(np.mean(degraded)) if degraded else None
    return out


def decide(t: dict) -> dict:
    """The plan's rule on ``tables`` of every clip: does the candidate replace the shipped ECAPA?"""
    s, c = t["shipped"], t["candidate"]
    gain = 100 * (c["degraded_mean"] - s["degraded_mean"])
    clean_loss = 100 * (s["clean"]["all"]["accuracy"] - c["clean"]["all"]["accuracy"])
    corpus_loss = {k: 100 * (s["clean"][k]["accuracy"] - c["clean"][k]["accuracy"]) for k in s["clean"] if k != "all"}
    savee_clips = s["clean"].get("savee", {}).get("correct", 0) - c["clean"].get("savee", {}).get("correct", 0)
    corpus_ok = all(v <= MAX_CORPUS_LOSS_PTS for k, v in corpus_loss.items() if k != "savee") and \
        savee_clips <= MAX_SAVEE_LOSS_CLIPS
    adopt = gain >= MIN_DEGRADED_GAIN_PTS and clean_loss <= MAX_CLEAN_LOSS_PTS and corpus_ok
    failed = ([] if gain >= MIN_DEGRADED_GAIN_PTS else ["degraded mean"]) + \
        ([] if clean_loss <= MAX_CLEAN_LOSS_PTS else ["clean overall"]) + ([] if corpus_ok else ["clean per corpus"])
    return {"failed": failed, "degraded_gain_pts": gain, "clean_loss_pts": clean_loss, "corpus_clean_loss_pts": corpus_loss,
            "savee_clips_lost": int(savee_clips), "adopt_candidate": bool(adopt)}


def render(payload: dict) -> str:
    t, d = payload["tables"], payload["decision"]
    lines = ["# A robust six-corpus gender ECAPA against the shipped one (`test`)", "",
             "Generated by `python -m studies.gender_fusion.robust` (protocol and decision rule: "
             "[robust_plan.md](robust_plan.md), written before the run). Every gender-labelled `test` clip "
             f"({t['shipped']['clean']['all']['n']} clips, speakers never seen). `shipped`: the ECAPA shipped when this "
             "comparison ran (`gender_model/`: five corpora, white noise only); `candidate`: " + payload["candidate_phrase"] + "; `GE2E-LR`: logistic regression on "
             "the pretrained GE2E embedding, fitted on `train` + `val` of the six corpora (reference only).", "",
             "| condition | shipped | candidate | GE2E-LR |", "|---|---:|---:|---:|"]
    for c in CONDITIONS:
        cells = []
        for m in MODELS:
            a = t[m][c]["all"]["accuracy"]
            cells.append(pct(a) if c == "clean" else f"{pct(a)} ({100 * (a - t[m]['clean']['all']['accuracy']):+.1f})")
        lines.append(f"| {DESCRIPTIONS[c]} | " + " | ".join(cells) + " |")
    lines.append("| mean of the six degraded | " + " | ".join(pct(t[m]["degraded_mean"]) for m in MODELS) + " |")
    lines += ["", "Clean accuracy per corpus (correct / clips):", "", "| corpus | shipped | candidate | GE2E-LR |",
              "|---|---:|---:|---:|"]
    for k in sorted(k for k in t["shipped"]["clean"] if k != "all"):
        lines.append(f"| {k} | " + " | ".join(f"{pct(t[m]['clean'][k]['accuracy'])} ({t[m]['clean'][k]['correct']}/"
                                               f"{t[m]['clean'][k]['n']})" for m in MODELS) + " |")
    w = payload["tables_without_contradicted"]
    lines += ["", "Without the two pitch-contradicted speechocean speakers of `test` (3023, 2430): clean "
              + ", ".join(f"{m} {pct(w[m]['clean']['all']['accuracy'])} (speechocean "
                          f"{pct(w[m]['clean'].get('speechocean', {}).get('accuracy'))})" for m in MODELS) + "; degraded mean "
              + ", ".join(f"{m} {pct(w[m]['degraded_mean'])}" for m in MODELS) + ".", "",
              "## Decision (robust_plan.md)", "",
              f"- Degraded mean: candidate {d['degraded_gain_pts']:+.1f} points against shipped "
              f"(needs >= +{MIN_DEGRADED_GAIN_PTS:g}).",
              f"- Clean overall: candidate {0.0 - d['clean_loss_pts']:+.3f} points, "
              f"{t['candidate']['clean']['all']['correct'] - t['shipped']['clean']['all']['correct']:+d} of "
              f"{t['shipped']['clean']['all']['n']} clips (needs >= -{MAX_CLEAN_LOSS_PTS:.3f}); per corpus "
              + ", ".join(f"{k} {0.0 - v:+.1f}" for k, v in sorted(d["corpus_clean_loss_pts"].items()))
              + f" (needs >= -{MAX_CORPUS_LOSS_PTS:g}; SAVEE clips lost {d['savee_clips_lost']}, at most "
              f"{MAX_SAVEE_LOSS_CLIPS}).",
              f"- **{'The candidate replaces the shipped ECAPA.' if d['adopt_candidate'] else 'The shipped ECAPA stays'}**"
              + ("" if d["adopt_candidate"] else f" (not met: {', '.join(d['failed'])}).") ,
              ""]
    return "\n".join(lines)


def read_probs(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def write_probs(path: Path, probs: Sequence[dict], fields: Sequence[str] = ("path", "condition", "model", "p_female")) -> None:
    """Per-clip probabilities as a gzipped CSV with columns ``fields``."""
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(probs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.gender_fusion.robust", description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, default=PROJECT_ROOT / "artifacts" / "gender_robust")
    parser.add_argument("--shipped", type=Path, default=PROJECT_ROOT / "gender_model",
                        help="the model it is compared with (default gender_model/; a copy of the one shipped before)")
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "cache" / "ge2e" / "embeddings.npz")
    parser.add_argument("--probs", type=Path, default=HERE / "robust_probs.csv.gz")
    parser.add_argument("--rescore", action="store_true", help="score again even if --probs exists")
    parser.add_argument("--limit", type=int, help="score only the first N clips (smoke run; report under /tmp)")
    parser.add_argument("--out", type=Path, default=HERE / "robust_report")
    args = parser.parse_args(argv)

    manifest = read_manifest()
    rows = [u for u in manifest if u.split == "test" and u.gender in ("male", "female")][: args.limit]
    if args.rescore or not args.probs.is_file():
        probs = score(rows, manifest, args.candidate, args.cache, args.shipped)
        write_probs(args.probs, probs)
    probs = read_probs(args.probs)
    import json

    meta = json.loads((args.candidate / "metadata.json").read_text()) if (args.candidate / "metadata.json").is_file() else {}
    training = meta.get("training", {})
    phrase = (f"`{args.candidate.relative_to(PROJECT_ROOT) if args.candidate.is_relative_to(PROJECT_ROOT) else args.candidate}` "
              f"({len(training.get('corpora', []))} corpora, {training.get('augmentation', 'recipe in its metadata.json')})")
    t = tables(rows, probs)
    payload = {"candidate": str(args.candidate), "candidate_phrase": phrase, "tables": t,
               "tables_without_contradicted": tables(rows, probs, without=PITCH_CONTRADICTED), "decision": decide(t)}
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
