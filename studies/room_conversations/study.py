"""Who speaks when in conversations that sound like one room: the shipped pipeline's baseline (``plan.md``).

Usage::

    python -m studies.room_conversations                 # dev 60 + test 60 conversations + the real recordings
    python -m studies.room_conversations --dev 4 --test 4  # a smoke run (report under /tmp with --out)
    python -m studies.room_conversations --round 5 --clips 40  # through round 5's hybrid H (opt-in; report_round5_pipeline.*)

Each conversation (:func:`training.room_conversations.make_room_conversation`, seeds fixed here)
goes through :meth:`pipeline.Cascade.analyse_recording`, as a user's recording would. Scored with
``pyannote.metrics`` (DER with a 0.25 s collar each side, overlapped speech scored; its optimal
mapping of voices to speakers), plus the voice count, one-speaker recordings found as one voice,
and gender per voice (share of the reference speech whose mapped voice has the speaker's gender).
The four real recordings of ``../shared/conversations`` are scored the same way (checking only).
Writes ``report.md`` / ``report.json`` beside this file.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT
from training.reporting import pct, write_report

HERE = Path(__file__).resolve().parent
SR = 16000
COLLAR_S = 0.5  #: pyannote's collar is the total width: 0.25 s on each side of a reference boundary
CONVERSATIONS = PROJECT_ROOT.parent / "shared" / "conversations"
SEEDS = {"dev": 1, "test": 2}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def annotation(turns: Sequence[tuple[float, float, str]]):
    """``(start_s, end_s, label)`` turns as a ``pyannote.core.Annotation``."""
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for k, (s, e, label) in enumerate(turns):
        if e > s:
            ann[Segment(float(s), float(e)), k] = str(label)
    return ann


def _der(reference, hypothesis):
    """``(metric, detailed parts)`` of pyannote's DER (collar :data:`COLLAR_S`, overlap scored)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=COLLAR_S, skip_overlap=False)
    with warnings.catch_warnings():  # the scored extent is the union of both annotations, as intended
        warnings.filterwarnings("ignore", message="'uem' was approximated")
        parts = metric(reference, hypothesis, detailed=True)
    return metric, parts


def der_parts(reference_turns, hypothesis_turns) -> dict:
    """DER and its missed / false alarm / confusion shares of ``(start_s, end_s, label)`` turns."""
    _, parts = _der(annotation(reference_turns), annotation(hypothesis_turns))
    total = parts["total"] or 1.0
    return {"total_s": parts["total"], "der": parts["diarization error rate"],
            "missed": parts["missed detection"] / total, "false_alarm": parts["false alarm"] / total,
            "confusion": parts["confusion"] / total}


def score(reference_turns, genders: dict[str, str] | None, recording) -> dict:
    """DER and its parts, voice count, and gender per voice of one analysed recording against its reference."""
    reference = annotation(reference_turns)
    hypothesis = annotation([(s.start_s, s.end_s, s.voice) for s in recording.segments])
    metric, parts = _der(reference, hypothesis)
    total = parts["total"] or 1.0
    out = {"total_s": parts["total"], "der": parts["diarization error rate"],
           "missed": parts["missed detection"] / total, "false_alarm": parts["false alarm"] / total,
           "confusion": parts["confusion"] / total,
           "speakers": len(reference.labels()), "voices": len(recording.voices), "status": recording.status}
    if genders:
        mapping = metric.optimal_mapping(reference, hypothesis)  # hypothesis voice -> reference speaker
        voice_gender = {v.label: v.gender for v in recording.voices}
        by_speaker = {spk: voice for voice, spk in mapping.items()}
        speech = {spk: reference.label_duration(spk) for spk in reference.labels()}
        right = sum(d for spk, d in speech.items() if spk in by_speaker and voice_gender.get(by_speaker[spk]) == genders[spk])
        out["gender_per_voice"] = right / (sum(speech.values()) or 1.0)
    return out


def summarise(rows: list[dict]) -> dict:
    """Pooled DER (time-weighted, as pyannote aggregates) and the shares over recordings."""
    if not rows:
        return {}
    total = sum(r["total_s"] for r in rows) or 1.0
    out = {"recordings": len(rows),
           "der": sum(r["der"] * r["total_s"] for r in rows) / total,
           **{p: sum(r[p] * r["total_s"] for r in rows) / total for p in ("missed", "false_alarm", "confusion")},
           "count_right": float(np.mean([r["voices"] == r["speakers"] for r in rows])),
           "count_within_one": float(np.mean([abs(r["voices"] - r["speakers"]) <= 1 for r in rows])),
           "mean_voices": float(np.mean([r["voices"] for r in rows]))}
    with_gender = [r for r in rows if "gender_per_voice" in r]
    if with_gender:
        w = sum(r["total_s"] for r in with_gender) or 1.0
        out["gender_per_voice"] = sum(r["gender_per_voice"] * r["total_s"] for r in with_gender) / w
    one = [r for r in rows if r["speakers"] == 1]
    if one:
        out["one_speaker_one_voice"] = float(np.mean([r["voices"] == 1 for r in one]))
    return out


def speakers_of(splits: set[str]) -> dict:
    """Speaker -> gendered utterances of ``splits`` (every corpus with gender labels)."""
    from training.corpus import read_manifest

    speakers: dict = defaultdict(list)
    for u in read_manifest():
        if u.split in splits and u.gender in ("male", "female"):
            speakers[u.speaker].append(u)
    return {s: us for s, us in speakers.items() if sum(u.duration_s for u in us) >= 10.0}


def run_set(name: str, n: int, cascade, log_every: int = 10, **options) -> list[dict]:
    """``n`` conversations of the set's speakers through the pipeline (``options``: to ``analyse_recording``)."""
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    speakers = speakers_of({"train", "val"} if name == "dev" else {"test"})
    rng, cache, rows = np.random.default_rng(SEEDS[name]), ClipCache(), []
    start = time.perf_counter()
    for i in range(n):
        conv = make_room_conversation(rng, speakers, cache)
        recording = cascade.analyse_recording(conv.samples, SR, name=f"{name}_{i:03d}", **options)
        row = score(conv.turns, conv.genders, recording)
        row.update(id=f"{name}_{i:03d}", same_gender=conv.same_gender, overlap=conv.overlap_share, room=conv.room,
                   seconds=conv.samples.size / SR)
        rows.append(row)
        if (i + 1) % log_every == 0 or i + 1 == n:
            _log(f"{name}: {i + 1}/{n} conversations, {time.perf_counter() - start:.0f} s")
    return rows


def read_rttm(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """RTTM ``SPEAKER`` lines -> file id -> ``(start_s, end_s, speaker)``."""
    out: dict = defaultdict(list)
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out[f[1]].append((start, start + dur, f[7]))
    return dict(out)


def run_real(cascade, **options) -> list[dict]:
    """The real recordings of ``../shared/conversations`` (gender known for AMI ids: F/M first letter)."""
    rttm = CONVERSATIONS / "reference.rttm"
    if not rttm.is_file():
        return []
    rows = []
    for file_id, turns in sorted(read_rttm(rttm).items()):
        speakers = {s for _, _, s in turns}
        genders = ({s: "female" if s.startswith("F") else "male" for s in speakers}
                   if file_id.startswith("ami") else None)
        recording = cascade.analyse_recording(str(CONVERSATIONS / f"{file_id}.flac"), name=file_id, **options)
        row = score(turns, genders, recording)
        row["id"] = file_id
        rows.append(row)
    return rows


def run_clips(cascade, n: int, **options) -> list[dict]:
    """The `test` conversations of ``studies/diarization`` (corpus clips joined, seed 2) through the pipeline.

    ``options`` go to :meth:`pipeline.Cascade.analyse_recording` (``diarization=None``: the first pipeline).
    """
    from studies.diarization.study import speakers_of as clip_speakers
    from training.conversations import ClipCache, make_conversation
    from training.corpus import read_manifest

    speakers = clip_speakers(read_manifest(), {"test"})
    rng, cache, rows = np.random.default_rng(2), ClipCache(), []
    for i in range(n):
        conv = make_conversation(rng, speakers, cache)
        recording = cascade.analyse_recording(conv.samples, SR, name=f"clips_{i:03d}", **options)
        row = score(conv.turns, conv.genders, recording)
        row.update(id=f"clips_{i:03d}", same_gender=conv.same_gender)
        rows.append(row)
    return rows


def by_speakers(rows: list[dict]) -> dict:
    groups: dict = defaultdict(list)
    for r in rows:
        key = "1 speaker" if r["speakers"] == 1 else f"{min(r['speakers'], 5)}{'+' if r['speakers'] >= 5 else ''} speakers, " \
              f"{'same' if r['same_gender'] else 'mixed'} gender"
        groups[key].append(r)
    return {k: summarise(v) for k, v in sorted(groups.items())}


def render(payload: dict) -> str:
    title = ("the shipped pipeline (baseline)" if payload.get("round", 1) == 1
             else "the room choice (round 7's R7 + L, `--voices room`)" if payload.get("round") == 7
             else f"the pipeline after round {payload['round']}")
    lines = [f"# Who speaks when in one room: {title}", "",
             f"Generated by `python -m studies.room_conversations{'' if payload.get('round', 1) == 1 else ' --round ' + str(payload['round'])}` "
             "(plan: `plan.md`, written before the run). "
             "Conversations of 1-6 speakers through one simulated room, noise and codec "
             "(`training/room_conversations.py`); DER by `pyannote.metrics` (0.25 s collar each side, overlapped speech "
             "scored); gender per voice: share of the reference speech whose mapped voice has the speaker's gender.", "",
             "| set | recordings | DER | missed | false alarm | confusion | count right | within one | one speaker: one voice | gender per voice |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("dev", "test", "real", "clips", "clips (first pipeline)"):
        s = payload["summary"].get(name)
        if s:
            lines.append(f"| {name} | {s['recordings']} | {pct(s['der'])} | {pct(s['missed'])} | {pct(s['false_alarm'])} | "
                         f"{pct(s['confusion'])} | {pct(s['count_right'])} | {pct(s['count_within_one'])} | "
                         f"{pct(s.get('one_speaker_one_voice'), missing='–')} | {pct(s.get('gender_per_voice'), missing='–')} |")
    for name in ("dev", "test"):
        groups = payload.get("by_speakers", {}).get(name)
        if groups:
            lines += ["", f"`{name}` by number of speakers:", "",
                      "| group | recordings | DER | count right | mean voices found | gender per voice |", "|---|---:|---:|---:|---:|---:|"]
            lines += [f"| {k} | {s['recordings']} | {pct(s['der'])} | {pct(s['count_right'])} | {s['mean_voices']:.2f} | "
                      f"{pct(s.get('gender_per_voice'), missing='–')} |" for k, s in groups.items()]
    real = payload.get("real") or []
    if real:
        lines += ["", "Real recordings (`../shared/conversations`, checking only):", "",
                  "| recording | speakers | voices found | DER | missed | false alarm | confusion | gender per voice |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['id']} | {r['speakers']} | {r['voices']} | {pct(r['der'])} | {pct(r['missed'])} | "
                  f"{pct(r['false_alarm'])} | {pct(r['confusion'])} | {pct(r.get('gender_per_voice'), missing='–')} |"
                  for r in real]
    overlaps = [r["overlap"] for name in ("dev", "test") for r in payload.get(name, []) if r["speakers"] > 1]
    if overlaps:
        lines += ["", f"Overlapped speech in the multi-speaker conversations: median {pct(float(np.median(overlaps)))}, "
                  f"range {pct(min(overlaps))}-{pct(max(overlaps))}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.room_conversations", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=60)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--round", type=int, default=1,
                        help="the plan's round whose pipeline is measured (1: report.*; N: report_roundN_pipeline.*)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--clips", type=int, default=0, metavar="N",
                        help="also the first N test conversations of studies/diarization (corpus clips), "
                             "through this pipeline and the first one")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = HERE / ("report" if args.round == 1 else f"report_round{args.round}_pipeline")
    import torch

    from pipeline import Cascade

    torch.set_num_threads(1)
    cascade = Cascade.load()
    payload: dict = {"round": args.round, "summary": {}, "by_speakers": {}}
    options, keep = {}, (lambda name, n, compute: compute())
    if args.round == 5:  # round 5's hybrid H, opt-in; rows kept in cache/room_conversations (the clips are round5.py's)
        from .staging import HYBRID, staged as keep

        options = {"diarization": HYBRID}
    clip_names = ("clips_hybrid", "clips_default")
    if args.round == 7:  # round 7's R7 + L, the "room" choice; clip rows are round7_judge's
        from pipeline.diarize import ROOM_CONVERSATION

        from .staging import staged

        options = {"diarization": ROOM_CONVERSATION}
        kept = {"full_real": "r7_R7L_real"}  # round7_judge's rows of the same recordings and pipeline

        def keep(name, n, compute):
            return staged(kept.get(name, name if name.startswith("r7_") else f"r7_{name}"), n, compute)
        clip_names = ("r7_R7L_clips", "r7_default_clips")
    for name, n in (("dev", args.dev), ("test", args.test)):
        payload[name] = keep(f"full_{name}", n, lambda: run_set(name, n, cascade, **options))
        payload["summary"][name] = summarise(payload[name])
        payload["by_speakers"][name] = by_speakers(payload[name])
    payload["real"] = keep("full_real", 4, lambda: run_real(cascade, **options))
    payload["summary"]["real"] = summarise(payload["real"])
    if args.clips:
        payload["clips"] = keep(clip_names[0], args.clips, lambda: run_clips(cascade, args.clips, **options))
        payload["summary"]["clips"] = summarise(payload["clips"])
        payload["clips_before"] = keep(clip_names[1], args.clips, lambda: run_clips(cascade, args.clips, diarization=None))
        payload["summary"]["clips (first pipeline)"] = summarise(payload["clips_before"])
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
