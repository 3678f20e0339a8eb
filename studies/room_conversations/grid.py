"""Round 2 of ``plan.md``: one grid on `dev` (speech detection x embeddings x voice grouping), by its rule.

Usage::

    python -m studies.room_conversations.grid              # cache (about 15 minutes once), grid, report_round2.*
    python -m studies.room_conversations.grid --dev 4 --dev-one 4 --out /tmp/r2   # a smoke run

For every `dev` conversation (the 60 of round 1, same seed) and every conversation of `dev_one`
(40 one-speaker conversations of train/val speakers, seed 3), silero-vad's frame probabilities
are computed once; for each threshold, the regions, the shipped 2-6 s segments with their GE2E
embeddings, and the 1.5 s windows with theirs are cached under ``cache/room_conversations``.
Each grid point then turns that cache into hypothesis turns (:mod:`pipeline.diarize`, or the
shipped :func:`pipeline.voices.cluster_voices` on whole segments), scored with
``pyannote.metrics`` as in round 1. The rule picks a point; nothing here changes the runtime.
"""
from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.diarize import DiarizationConfig, speech_windows, window_voices
from pipeline.resegment import resegment
from pipeline.paths import PROJECT_ROOT
from training.reporting import pct, write_report

from .staging import CACHE
from .study import HERE, SEEDS, SR, _log, der_parts, speakers_of

THRESHOLDS = (0.5, 0.35, 0.25)
DEV_ONE_SEED = 3
DEV2_SEED = 4


@dataclass(frozen=True)
class Point:
    """One grid point: silero threshold, embeddings (``"segments"`` or ``"windows"``) and grouping."""

    threshold: float
    embeddings: str
    config: DiarizationConfig | None = None  #: ``None``: the shipped two-cut linkage on whole segments
    guard: bool = False  #: round 3: the shipped first cut (silero 0.5, whole segments) decides "one voice" first

    @property
    def name(self) -> str:
        if self.guard:
            return f"G({self.config.merge_similarity}): guard, then vad {self.threshold} / windows / spectral p={self.config.prune}"
        if self.config is None:
            return f"vad {self.threshold} / {self.embeddings} / shipped linkage"
        c = self.config
        grouping = (f"spectral p={c.prune} merge>{c.merge_similarity}" if c.method == "spectral"
                    else f"linkage cut {c.ahc_threshold}")
        return f"vad {self.threshold} / windows / {grouping}"


def grid() -> list[Point]:
    points = []
    for t in THRESHOLDS:
        points.append(Point(t, "segments"))
        points.append(Point(t, "windows", None))
        for cut in (0.30, 0.40, 0.50, 0.60):
            points.append(Point(t, "windows", DiarizationConfig(method="ahc", ahc_threshold=cut)))
        for p in (0.15, 0.3):
            for c in (0.6, 0.7, 0.8, 0.9):
                points.append(Point(t, "windows", DiarizationConfig(method="spectral", prune=p, merge_similarity=c)))
    return points


def round3_points() -> list[Point]:
    """Plan.md, round 3: the shipped pipeline, round 2's best point unguarded, and G(0.8), G(0.9)."""
    return [Point(0.5, "segments"),
            Point(0.35, "windows", DiarizationConfig(method="spectral", prune=0.3, merge_similarity=0.9)),
            *[Point(0.35, "windows", DiarizationConfig(method="spectral", prune=0.3, merge_similarity=m), guard=True)
              for m in (0.8, 0.9)]]


def build_cache(name: str, n: int, *, k: int | None, seed: int,
                thresholds: Sequence[float] = THRESHOLDS, splits: frozenset[str] = frozenset({"train", "val"})) -> list[dict]:
    """Per conversation: reference turns and, per threshold, regions, segments, windows and their embeddings.

    Rounds after 3 use only silero 0.5 and 0.35: ``thresholds=(0.5, 0.35)`` caches those (a separate file),
    with silero's frame probabilities. ``splits``: whose speakers talk (``{"test"}`` for a judging set).
    """
    tag = "round2" if tuple(thresholds) == THRESHOLDS else "vad" + "_".join(f"{t:g}" for t in thresholds)
    path = CACHE / f"{tag}_{name}_{n}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad, VadConfig, regions_from_probabilities, split_long
    from pipeline.voices import embed_segments
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    speakers = speakers_of(set(splits))
    rng, clips, vad, encoder = np.random.default_rng(seed), ClipCache(), SileroVad(), SpeakerEncoder()
    rows, start = [], time.perf_counter()
    for i in range(n):
        conv = make_room_conversation(rng, speakers, clips, k=k)
        y = conv.samples
        probs = vad.probabilities(y)
        row = {"id": f"{name}_{i:03d}", "turns": conv.turns, "speakers": conv.n_voices, "same_gender": conv.same_gender,
               "by_threshold": {}}
        if tuple(thresholds) != THRESHOLDS:
            row["vad_probabilities"] = probs
        for t in thresholds:
            config = VadConfig(threshold=t)
            regions = regions_from_probabilities(probs, y.size, config)
            segments = split_long(regions, y, config)
            windows = speech_windows(regions)
            row["by_threshold"][t] = {
                "regions": regions, "segments": segments, "windows": windows,
                "segment_embeddings": embed_segments(encoder, y, segments),
                "window_embeddings": encoder.embed_many([y[w.samples(SR)] for w in windows])
                if windows else np.zeros((0, 256), np.float32)}
        rows.append(row)
        if (i + 1) % 10 == 0 or i + 1 == n:
            _log(f"{name}: {i + 1}/{n} conversations cached, {time.perf_counter() - start:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows))
    return rows


def hypothesis(point: Point, cached: dict) -> list[tuple[float, float, str]]:
    """Hypothesis turns ``(start_s, end_s, voice)`` of one conversation at one grid point."""
    from pipeline.voices import cluster_voices

    if point.guard:
        first = cached["by_threshold"][0.5]
        segs = first["segments"]
        durations = np.array([s.duration_s for s in segs])
        if segs and cluster_voices(first["segment_embeddings"], durations, centred_threshold=None).max() == 0:
            return [(s.start_s, s.end_s, "0") for s in segs]
    c = cached["by_threshold"][point.threshold]
    if point.embeddings == "segments":
        segs = c["segments"]
        if not segs:
            return []
        labels = cluster_voices(c["segment_embeddings"], np.array([s.duration_s for s in segs]))
        return [(s.start_s, s.end_s, str(v)) for s, v in zip(segs, labels)]
    windows = c["windows"]
    if not windows:
        return []
    X = c["window_embeddings"]
    if point.config is None:  # the shipped two-cut linkage on windows, then re-segmentation
        labels = cluster_voices(X, np.array([w.duration_s for w in windows]))
    else:
        labels = window_voices(X, windows, point.config)
    return [(s.start_s, s.end_s, str(s.voice)) for s in resegment(c["regions"], windows, X, labels)]


def evaluate(point: Point, cached: Sequence[dict]) -> list[dict]:
    rows = []
    for conv in cached:
        hyp = hypothesis(point, conv)
        row = der_parts(conv["turns"], hyp)
        row.update(id=conv["id"], speakers=conv["speakers"], voices=len({v for _, _, v in hyp}),
                   same_gender=conv["same_gender"])
        rows.append(row)
    return rows


def summary(rows: list[dict], one_rows: list[dict]) -> dict:
    from .study import summarise

    s = summarise(rows)
    ones = [r for r in rows + one_rows if r["speakers"] == 1]
    s["one_speaker_n"] = len(ones)
    s["one_speaker_one_voice_all"] = float(np.mean([r["voices"] == 1 for r in ones])) if ones else float("nan")
    return s


def decide(results: list[dict]) -> dict:
    """The rule of plan.md, round 2; marks each result ``eligible``."""
    shipped = next(r for r in results if r["point"]["threshold"] == 0.5 and r["point"]["embeddings"] == "segments")
    for r in results:
        r["eligible"] = bool(r["summary"]["count_right"] >= shipped["summary"]["count_right"]
                             and r["summary"]["one_speaker_one_voice_all"] >= 0.95)
    eligible = [r for r in results if r["eligible"]]
    best = min(eligible, key=lambda r: r["summary"]["der"]) if eligible else None
    ships = best is not None and best["summary"]["der"] <= shipped["summary"]["der"] - 0.02
    return {"shipped": shipped["name"], "shipped_der": shipped["summary"]["der"], "eligible": len(eligible),
            "chosen": best["name"] if best else None, "chosen_der": best["summary"]["der"] if best else None,
            "ships": bool(ships)}


def decide_round3(results: list[dict]) -> dict:
    """The rule of plan.md, round 3 (on dev2); marks each result ``eligible``."""
    shipped = results[0]
    base = shipped["summary"]
    for r in results:
        s = r["summary"]
        r["eligible"] = bool(r is not shipped and s["der"] <= base["der"] - 0.02 and s["count_right"] >= base["count_right"]
                             and s["one_speaker_one_voice_all"] >= base["one_speaker_one_voice_all"])
    eligible = [r for r in results if r["eligible"] and r["point"].get("guard")]
    best = min(eligible, key=lambda r: r["summary"]["der"]) if eligible else None
    return {"shipped": shipped["name"], "shipped_der": base["der"], "eligible": len(eligible),
            "chosen": best["name"] if best else None, "chosen_der": best["summary"]["der"] if best else None,
            "ships": best is not None}


def render(payload: dict) -> str:
    d = payload["decision"]
    r3 = payload.get("round") == 3
    lines = [("# Who speaks when in one room, round 3: a one-voice guard" if r3 else
              "# Who speaks when in one room, round 2: speech detection, window embeddings, voice count"), "",
             f"Generated by `python -m studies.room_conversations.grid{' --round 3' if r3 else ''}` (plan and rule: "
             f"`plan.md`, round {3 if r3 else 2}, written before the run). "
             + (f"`dev2`: {payload['n_dev']} fresh conversations of train/val speakers (seed 4); one-speaker condition "
                if r3 else f"`dev`: {payload['n_dev']} conversations of train/val speakers (round 1's); one-speaker condition ")
             + 
             f"over its and `dev_one`'s {payload['n_one']} one-speaker conversations. DER by `pyannote.metrics` "
             "(0.25 s collar each side, overlap scored).", "",
             "| grid point | DER | missed | false alarm | confusion | count right | within one | one speaker: one voice | eligible |",
             "|---|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in sorted(payload["results"], key=lambda r: r["summary"]["der"]):
        s = r["summary"]
        lines.append(f"| {r['name']} | {pct(s['der'])} | {pct(s['missed'])} | {pct(s['false_alarm'])} | "
                     f"{pct(s['confusion'])} | {pct(s['count_right'])} | {pct(s['count_within_one'])} | "
                     f"{pct(s['one_speaker_one_voice_all'])} ({s['one_speaker_n']}) | {'yes' if r['eligible'] else ''} |")
    if r3:
        lines += ["", f"**Decision.** Shipped pipeline: DER {pct(d['shipped_der'])} on dev2. "
                  + (f"Passing the rule with the lowest DER: {d['chosen']} ({pct(d['chosen_der'])}); it ships."
                     if d["ships"] else "No guarded candidate passes the rule: nothing ships.")]
        return "\n".join(lines) + "\n"
    lines += ["", f"**Decision.** Shipped point ({d['shipped']}): DER {pct(d['shipped_der'])}. "
              f"{d['eligible']} points meet the count and one-speaker conditions; the lowest DER among them is "
              f"{d['chosen']} ({pct(d['chosen_der'], missing='–')}). "
              + ("It is at least 2 points lower: it ships (wired into `pipeline/recording.py`; the full study is rerun)."
                 if d["ships"] else "It is not 2 points lower: nothing ships.")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.room_conversations.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=60)
    parser.add_argument("--dev-one", type=int, default=40)
    parser.add_argument("--round", type=int, choices=(2, 3), default=2,
                        help="2: the grid on dev; 3: the one-voice guard on dev2 (fresh conversations, seed 4)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out = args.out or HERE / f"report_round{args.round}"
    import torch

    torch.set_num_threads(1)
    if args.round == 2:
        dev = build_cache("dev", args.dev, k=None, seed=SEEDS["dev"])
    else:
        dev = build_cache("dev2", args.dev, k=None, seed=DEV2_SEED)
    one = build_cache("dev_one", args.dev_one, k=1, seed=DEV_ONE_SEED)
    results = []
    start = time.perf_counter()
    for point in (grid() if args.round == 2 else round3_points()):
        rows, one_rows = evaluate(point, dev), evaluate(point, one)
        results.append({"name": point.name, "point": {"threshold": point.threshold, "embeddings": point.embeddings,
                                                      "config": asdict(point.config) if point.config else None,
                                                      "guard": point.guard},
                        "summary": summary(rows, one_rows)})
    _log(f"grid: {len(results)} points in {time.perf_counter() - start:.0f} s")
    decision = decide(results) if args.round == 2 else decide_round3(results)
    chosen = decision["chosen"]
    payload = {"round": args.round, "n_dev": len(dev), "n_one": sum(1 for c in dev + one if c["speakers"] == 1), "results": results,
               "decision": decision}
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md; chosen: {chosen}; ships: {decision['ships']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
