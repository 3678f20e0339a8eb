"""Diarization on synthetic conversations: threshold chosen on train/val, figures on test (see plan.md).

1. Conversations (:mod:`training.conversations`) from train+val speakers (seed 1) and test
   speakers (seed 2); each goes once through the runtime's VAD, GE2E embeddings and the
   shipped gender classifier (:func:`segment_evidence`), then through
   :func:`pipeline.voices.cluster_voices` for every setting of the grid (cheap).
2. The setting with the best voice-count accuracy on train/val (ties within one conversation
   broken by the lower DER) is evaluated on test: DER (:mod:`training.diarization_metrics`),
   voice count, gender per voice, by number of voices and same/mixed gender.
3. A 60-minute recording (more test conversations, seed 3) through ``Cascade.analyse_recording``
   in a subprocess: wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
THRESHOLDS = [round(0.20 + 0.025 * i, 3) for i in range(17)]  # 0.20 .. 0.60
MIN_VOICE = [0.0, 3.0]
COLLARS = {"collar_0": 0.0, "collar_0.25": 0.25}

SCALE_CODE = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
t0 = time.time()
from pipeline.cascade import Cascade
c = Cascade.load()
t1 = time.time()
r = c.analyse_recording(sys.argv[1])
t2 = time.time()
print(json.dumps({"load_s": t1 - t0, "analyse_s": t2 - t1, "status": r.status, "duration_s": r.duration_s,
                  "segments": len(r.segments), "voices": len(r.voices),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speakers_of(rows, splits) -> dict:
    out = defaultdict(list)
    for u in rows:
        if u.split in splits:
            out[u.speaker].append(u)
    return dict(out)


def segment_evidence(cascade, vad, encoder, y: np.ndarray) -> dict:
    """Regions, GE2E embeddings and P(female) per segment (NaN where the cascade refuses the segment)."""
    from pipeline.gender import GENDER_LABELS
    from pipeline.voices import embed_segments

    regions = vad.segments(y)
    emb = embed_segments(encoder, y, regions)
    female = np.full(len(regions), np.nan)
    good, clips = [], []
    for i, r in enumerate(regions):
        item = cascade.featurise_signal(y[r.samples()], 16000)
        if item.failure is None:
            good.append(i)
            clips.append(item.audio.samples)
    for k in range(0, len(good), 32):
        p = cascade.gender.predict_proba_batch(clips[k:k + 32])
        female[good[k:k + 32]] = p[:, GENDER_LABELS.index("female")]
    return {"regions": regions, "embeddings": emb, "female": female}


def score(conv: dict, ev: dict, threshold: float, min_voice_s: float, *, labels: np.ndarray | None = None) -> dict:
    """DER, voice count and gender per voice of one conversation; ``labels`` (voice per segment) overrides the clustering."""
    from pipeline.voices import cluster_voices, voice_genders, voice_label
    from training.diarization_metrics import diarization_error

    regions = ev["regions"]
    durations = np.array([r.duration_s for r in regions])
    if regions:
        if labels is None:
            labels = cluster_voices(ev["embeddings"], durations, threshold=threshold, min_voice_s=min_voice_s,
                                    centred_threshold=None)  # the first cut only, as this study chose it
        genders = voice_genders(labels, durations, ev["female"])
    else:
        labels, genders = np.zeros(0, int), []
    hyp = [(r.start_s, r.end_s, voice_label(int(l))) for r, l in zip(regions, labels)]
    out = {"n_voices": conv["n_voices"], "same_gender": conv["same_gender"], "found": len(genders)}
    for name, collar in COLLARS.items():
        d = diarization_error(conv["turns"], hyp, collar_s=collar)
        out[name] = {"total_s": d.total_s, "missed_s": d.missed_s, "false_alarm_s": d.false_alarm_s,
                     "confusion_s": d.confusion_s}
        if collar == 0.0:
            mapping = d.mapping
    right = 0
    for spk, gender in conv["genders"].items():
        voice = mapping.get(spk)
        if voice is not None:
            probs = genders[[voice_label(i) for i in range(len(genders))].index(voice)]
            right += bool(probs) and max(probs, key=probs.get) == gender
    out["gender_right"], out["gender_total"] = right, len(conv["genders"])
    return out


def summarise(scores: list[dict]) -> dict:
    def agg(rows):
        res = {"conversations": len(rows), "count_right": float(np.mean([r["found"] == r["n_voices"] for r in rows])),
               "gender_per_voice": sum(r["gender_right"] for r in rows) / max(1, sum(r["gender_total"] for r in rows))}
        for name in COLLARS:
            tot = sum(r[name]["total_s"] for r in rows)
            for part in ("missed", "false_alarm", "confusion"):
                res[f"{name}_{part}"] = sum(r[name][f"{part}_s"] for r in rows) / tot
            res[f"{name}_der"] = sum(res[f"{name}_{p}"] for p in ("missed", "false_alarm", "confusion"))
        return res

    out = {"all": agg(scores)}
    for k in (2, 3, 4):
        for same in (False, True):
            rows = [r for r in scores if r["n_voices"] == k and r["same_gender"] == same]
            if rows:
                out[f"{k} voices, {'same' if same else 'mixed'} gender"] = agg(rows)
    return out


def build(rows, splits, n, seed, cascade, vad, encoder, log) -> list[tuple[dict, dict]]:
    from training.conversations import ClipCache, make_conversation

    speakers = speakers_of(rows, splits)
    rng, cache, out = np.random.default_rng(seed), ClipCache(), []
    for i in range(n):
        c = make_conversation(rng, speakers, cache)
        conv = {"n_voices": c.n_voices, "same_gender": c.same_gender, "turns": c.turns, "genders": c.genders,
                "corpora": sorted(set(c.corpora.values())), "duration_s": c.samples.size / 16000}
        out.append((conv, segment_evidence(cascade, vad, encoder, c.samples)))
        if i % 10 == 0:
            log(f"{'+'.join(splits)} {i + 1}/{n}")
    return out


def scale_test(rows, minutes: float, log) -> dict:
    import soundfile as sf

    from training.conversations import ClipCache, make_conversation

    speakers = speakers_of(rows, {"test"})
    rng, cache, pieces, total = np.random.default_rng(3), ClipCache(), [], 0
    while total < minutes * 60 * 16000:
        c = make_conversation(rng, speakers, cache)
        pieces.append(c.samples)
        total += c.samples.size
    y = np.concatenate(pieces)[:int(minutes * 60 * 16000)]
    del pieces, cache
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        sf.write(path, y, 16000)
        del y
        log(f"scale: {minutes} min written, analysing in a subprocess")
        env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
        done = subprocess.run([sys.executable, "-c", SCALE_CODE, str(path)], capture_output=True, text=True, env=env,
                              cwd=HERE.parent.parent, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.diarization", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=80, help="train/val conversations for the threshold")
    parser.add_argument("--test", type=int, default=100, help="test conversations")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the scale test (0: skip)")
    parser.add_argument("--out", default=str(HERE / "report"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from pipeline.cascade import Cascade
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad
    from training.corpus import read_manifest
    from training.reporting import write_report

    start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {msg}", flush=True)

    rows = read_manifest()
    cascade, vad, encoder = Cascade.load(), SileroVad(), SpeakerEncoder()
    dev = build(rows, {"train", "val"}, args.dev, 1, cascade, vad, encoder, log)
    grid = []
    for thr in THRESHOLDS:
        for mv in MIN_VOICE:
            s = summarise([score(c, e, thr, mv) for c, e in dev])["all"]
            grid.append({"threshold": thr, "min_voice_s": mv, **s})
    best_count = max(g["count_right"] for g in grid)
    tied = [g for g in grid if g["count_right"] >= best_count - 1 / max(1, args.dev) + 1e-9]
    chosen = min(tied, key=lambda g: g["collar_0.25_der"])
    log(f"chosen threshold {chosen['threshold']}, min voice {chosen['min_voice_s']} s")
    test = build(rows, {"test"}, args.test, 2, cascade, vad, encoder, log)
    test_scores = [score(c, e, chosen["threshold"], chosen["min_voice_s"]) for c, e in test]
    results = summarise(test_scores)
    test_grid = [{"threshold": thr, **summarise([score(c, e, thr, chosen["min_voice_s"]) for c, e in test])["all"]}
                 for thr in THRESHOLDS]  # for reference only: not used for the choice
    scale = scale_test(rows, args.minutes, log) if args.minutes > 0 else None
    log("done")
    payload = {"chosen": {"threshold": chosen["threshold"], "min_voice_s": chosen["min_voice_s"]},
               "dev_grid": grid, "test": results, "test_grid_for_reference": test_grid, "scale": scale,
               "test_conversations": [{k: v for k, v in c.items() if k != "turns"} for c, _ in test],
               "test_scores": test_scores}
    write_report(args.out, payload, render(payload, args), config=vars(args))
    return 0


def render(p: dict, args) -> str:
    def pct(x):
        return f"{100 * x:.1f}%"

    lines = ["# Diarization on synthetic conversations", "",
             "Generated by `python -m studies.diarization` (plan.md, README.md beside this file).", "",
             f"Chosen on {args.dev} train/val conversations: threshold **{p['chosen']['threshold']}**, "
             f"min voice speech {p['chosen']['min_voice_s']} s.", "",
             f"## Test ({args.test} conversations from `test` speakers)", "",
             "DER: frame-based pyannote definition, optimal mapping; collar 0.25 s each side of reference "
             "boundaries (pyannote `collar=0.5`), and no collar.", "",
             "| set | n | DER (0.25 s) | missed | false alarm | confusion | DER (no collar) | voices right | gender per voice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in p["test"].items():
        lines.append(f"| {name} | {r['conversations']} | {pct(r['collar_0.25_der'])} | {pct(r['collar_0.25_missed'])} | "
                     f"{pct(r['collar_0.25_false_alarm'])} | {pct(r['collar_0.25_confusion'])} | {pct(r['collar_0_der'])} | "
                     f"{pct(r['count_right'])} | {pct(r['gender_per_voice'])} |")
    lines += ["", "## Threshold grid (train/val; min voice speech as chosen)", "",
              "| threshold | voices right | DER (0.25 s) | confusion | test voices right (reference only) | test DER |",
              "|---|---|---|---|---|---|"]
    test_by = {g["threshold"]: g for g in p["test_grid_for_reference"]}
    for g in p["dev_grid"]:
        if g["min_voice_s"] == p["chosen"]["min_voice_s"]:
            t = test_by[g["threshold"]]
            lines.append(f"| {g['threshold']} | {pct(g['count_right'])} | {pct(g['collar_0.25_der'])} | "
                         f"{pct(g['collar_0.25_confusion'])} | {pct(t['count_right'])} | {pct(t['collar_0.25_der'])} |")
    if p["scale"]:
        s = p["scale"]
        lines += ["", "## Scale", "",
                  f"{s['duration_s'] / 60:.0f}-minute recording through `Cascade.analyse_recording` (one thread, "
                  f"shipped models): {s['analyse_s']:.1f} s analysis (+{s['load_s']:.1f} s model loading), "
                  f"peak RSS {s['peak_rss_mb']:.0f} MB, {s['segments']} segments, {s['voices']} voices, status {s['status']}."]
    return "\n".join(lines) + "\n"
