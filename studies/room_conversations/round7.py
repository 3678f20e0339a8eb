"""Round 7 of ``plan.md``: an HMM re-segmentation, overlap marking and "three voices heard", chosen on `dev` + `dev3`.

Usage::

    python -m studies.room_conversations.round7 --cache dev dev2_one test_one   # build caches (one process each)
    python -m studies.room_conversations.round7 --choose                        # the choosing grid, report_round7_choose.*
    python -m studies.room_conversations.round7 --cache dev_one --fit-length --length   # L, the amendment
    python -m studies.room_conversations.round7_judge                           # round 6's rule on dev4, test_one, real, clips

Caches come from grid.py's :func:`~studies.room_conversations.grid.build_cache` at silero 0.5 and 0.35.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from pipeline.diarize import (ONE_VOICE_FEATURES, ONE_VOICE_MODEL, ONE_VOICE_MODEL_NO_LENGTH, DiarizationConfig,
                              load_one_voice_model, more_than_one_probability, one_voice_features, window_voices)
from pipeline.resegment import HmmConfig, carry_voices, hmm_resegment, resegment
from pipeline.voices import cluster_voices
from training.reporting import pct, write_report

from .grid import build_cache, summary
from .round4 import DEFAULT, WINDOWS, cached_features
from .staging import HYBRID
from .study import HERE, SEEDS, _log, annotation, der_parts

VAD_THRESHOLDS = (0.5, 0.35)
#: name -> (recordings, speakers per conversation (None: 1-6), seed, speaker splits)
SETS = {
    "dev": (60, None, SEEDS["dev"], frozenset({"train", "val"})),
    "dev3": (60, None, 7, frozenset({"train", "val"})),
    "dev2_one": (40, 1, 6, frozenset({"train", "val"})),
    "dev_one": (40, 1, 3, frozenset({"train", "val"})),
    "dev4": (60, None, 10, frozenset({"train", "val"})),
    "test_one": (40, 1, 9, frozenset({"test"})),
}


def cached(name: str) -> list[dict]:
    n, k, seed, splits = SETS[name]
    return build_cache(name, n, k=k, seed=seed, thresholds=VAD_THRESHOLDS, splits=splits)


@dataclass(frozen=True)
class Variant:
    """H with round 7's changes: ``hmm`` re-segments the window route (``None``: the plain re-segmentation),
    ``segments_hmm`` the default-voices route too; ``three_voices``: a first cut of 3+ voices is never one voice."""

    name: str
    hmm: HmmConfig | None = None
    segments_hmm: bool = False
    three_voices: bool = False
    one_voice_model: str = ONE_VOICE_MODEL


H = Variant("H (round 5)")


def first_cut_voices(conv: dict) -> int:
    """Voices of the shipped first cut (silero 0.5, whole segments, average linkage at 0.35, no centred cut)."""
    segs = conv["by_threshold"][0.5]["segments"]
    if not segs:
        return 0
    return int(cluster_voices(conv["by_threshold"][0.5]["segment_embeddings"], np.array([s.duration_s for s in segs]),
                              centred_threshold=None).max()) + 1


def route(conv: dict, model: dict, variant: Variant) -> str:
    """``"one"``, ``"segments"`` (the default's voices) or ``"windows"``, as H routes, with ``three_voices``."""
    features = cached_features(conv)
    p = None if features is None else more_than_one_probability(features, model)
    first = first_cut_voices(conv)
    if p is None or p < model["threshold"]:
        return "segments" if variant.three_voices and first >= 3 else "one"
    return "segments" if first > 1 else "windows"


def segment_window_labels(conv: dict) -> np.ndarray:
    """The default's voices over whole segments (silero 0.5) carried to the 1.5 s windows at silero 0.35."""
    seg = conv["by_threshold"][0.5]
    segs = seg["segments"]
    seg_labels = cluster_voices(seg["segment_embeddings"], np.array([s.duration_s for s in segs]))
    c = conv["by_threshold"][0.35]
    return carry_voices(segs, seg_labels, c["windows"], c["window_embeddings"])


def hypothesis(conv: dict, model: dict, variant: Variant) -> tuple[list, list, str]:
    """``(turns, overlap turns, route)`` of one cached conversation under ``variant``."""
    path = route(conv, model, variant)
    if path == "one":
        return [(s.start_s, s.end_s, "0") for s in conv["by_threshold"][0.5]["segments"]], [], path
    c = conv["by_threshold"][0.35]
    if path == "segments":
        if not variant.segments_hmm or variant.hmm is None or not c["windows"]:
            from .grid import hypothesis as grid_hypothesis

            return grid_hypothesis(DEFAULT, conv), [], path
        labels = segment_window_labels(conv)
    else:
        if not c["windows"]:
            return [], [], path
        labels = window_voices(c["window_embeddings"], c["windows"], WINDOWS.config)
    if variant.hmm is None:
        runs = resegment(c["regions"], c["windows"], c["window_embeddings"], labels)
        return [(s.start_s, s.end_s, str(s.voice)) for s in runs], [], path
    r = hmm_resegment(c["regions"], c["windows"], c["window_embeddings"], labels, variant.hmm)
    return ([(s.start_s, s.end_s, str(s.voice)) for s in r.segments],
            [(s.start_s, s.end_s, str(s.voice)) for s in r.overlaps], path)


def overlap_match(reference_turns, overlap_turns) -> tuple[float, float, float]:
    """Seconds of reference overlap, of marked overlap, and of their intersection."""
    ref = annotation(reference_turns).get_overlap()
    marked = annotation(overlap_turns).get_timeline().support()
    return ref.duration(), marked.duration(), marked.crop(ref).duration()


def evaluate(cached: Sequence[dict], model: dict, variant: Variant) -> list[dict]:
    rows = []
    for conv in cached:
        turns, overlaps, path = hypothesis(conv, model, variant)
        row = der_parts(conv["turns"], turns + overlaps)
        ref_ov, marked, hit = overlap_match(conv["turns"], overlaps)
        row.update(id=conv["id"], speakers=conv["speakers"], voices=len({v for _, _, v in turns}),
                   same_gender=conv["same_gender"], route=path, overlap_ref_s=ref_ov, overlap_marked_s=marked,
                   overlap_hit_s=hit)
        rows.append(row)
    return rows


def choose_grid() -> list[Variant]:
    out = [H]
    for kappa in (5.0, 10.0, 20.0, 40.0):
        for loop in (0.9, 0.99):
            hmm = HmmConfig(concentration=kappa, loop=loop)
            out.append(Variant(f"V(κ={kappa:g}, loop={loop})", hmm))
            out.append(Variant(f"V+S(κ={kappa:g}, loop={loop})", hmm, segments_hmm=True))
    return out


def measure(variant: Variant, pooled: Sequence[dict], one: Sequence[dict], model: dict) -> dict:
    rows, one_rows = evaluate(pooled, model, variant), evaluate(one, model, variant)
    s = summary(rows, one_rows)
    ref = sum(r["overlap_ref_s"] for r in rows)
    marked = sum(r["overlap_marked_s"] for r in rows)
    hit = sum(r["overlap_hit_s"] for r in rows)
    s["overlap_precision"] = hit / marked if marked else None  # None: nothing marked
    s["overlap_recall"] = hit / ref if ref else None
    return {"name": variant.name, "variant": {"hmm": asdict(variant.hmm) if variant.hmm else None,
                                              "segments_hmm": variant.segments_hmm, "three_voices": variant.three_voices},
            "summary": s, "rows": rows, "one_rows": one_rows}


def allowed(r: dict, base: dict) -> bool:
    s, b = r["summary"], base["summary"]
    return s["one_speaker_one_voice_all"] >= b["one_speaker_one_voice_all"] and s["count_right"] >= b["count_right"]


def choose(model: dict, pooled: Sequence[dict], one: Sequence[dict]) -> dict:
    """The choosing rule of plan.md, round 7, step by step; returns the results and the chosen variant."""
    results = [measure(v, pooled, one, model) for v in choose_grid()]
    base = results[0]
    for r in results:
        _log(f"{r['name']}: DER {r['summary']['der']:.4f} count {r['summary']['count_right']:.3f} "
             f"one {r['summary']['one_speaker_one_voice_all']:.3f}")
    ok = [r for r in results[1:] if allowed(r, base)]
    best = min(ok, key=lambda r: r["summary"]["der"]) if ok else None
    step1 = best if best is not None and best["summary"]["der"] <= base["summary"]["der"] - 0.005 else None
    grid = choose_grid()
    chosen = grid[results.index(step1)] if step1 is not None else H
    chosen_row = step1 or base
    overlap = []
    if chosen.hmm is not None:
        for q in (0.1, 0.2, 0.3):
            v = replace(chosen, name=f"{chosen.name} + O(q={q})", hmm=replace(chosen.hmm, overlap_posterior=q))
            overlap.append(measure(v, pooled, one, model))
            _log(f"{v.name}: DER {overlap[-1]['summary']['der']:.4f} precision "
                 f"{overlap[-1]['summary']['overlap_precision']:.3f} recall {overlap[-1]['summary']['overlap_recall']:.3f}")
    best_o = min(overlap, key=lambda r: r["summary"]["der"]) if overlap else None
    step2 = best_o if best_o is not None and best_o["summary"]["der"] <= chosen_row["summary"]["der"] - 0.005 else None
    if step2 is not None:
        q = step2["variant"]["hmm"]["overlap_posterior"]
        chosen, chosen_row = replace(chosen, name=step2["name"], hmm=replace(chosen.hmm, overlap_posterior=q)), step2
    three = measure(replace(chosen, name=f"{chosen.name} + T", three_voices=True), pooled, one, model)
    t, c = three["summary"], chosen_row["summary"]
    step3 = t["one_speaker_one_voice_all"] >= c["one_speaker_one_voice_all"] and t["der"] <= c["der"]
    if step3:
        chosen, chosen_row = replace(chosen, name=three["name"], three_voices=True), three
    return {"results": results, "overlap": overlap, "three": three, "steps": {
        "hmm": step1["name"] if step1 else None, "overlap": step2["name"] if step2 else None, "three_voices": bool(step3)},
        "chosen": chosen, "chosen_row": chosen_row, "base": base}


def _row(r: dict) -> str:
    s = r["summary"]
    return (f"| {r['name']} | {pct(s['der'])} | {pct(s['missed'])} | {pct(s['false_alarm'])} | {pct(s['confusion'])} | "
            f"{pct(s['count_right'])} | {pct(s['count_within_one'])} | {pct(s['one_speaker_one_voice_all'])} "
            f"({s['one_speaker_n']}) | {pct(s['overlap_precision'], missing='–')} | {pct(s['overlap_recall'], missing='–')} |")


HEADER = ["| variant | DER | missed | false alarm | confusion | count right | within one | one speaker: one voice | "
          "overlap precision | overlap recall |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def render_choice(payload: dict) -> str:
    st = payload["steps"]
    lines = ["# Who speaks when in one room, round 7: choosing on dev + dev3", "",
             "Generated by `python -m studies.room_conversations.round7 --choose` (plan and rule: `plan.md`, round 7, "
             f"written before the run). `dev` + `dev3`: {payload['n_pooled']} conversations of train/val speakers "
             f"(seeds 1 and 7); the one-speaker condition over their one-speaker recordings and `dev2_one` "
             f"({payload['n_one']} in all). DER by `pyannote.metrics` (0.25 s collar each side, overlap scored), "
             "from grid.py's caches at silero 0.5 and 0.35. Overlap precision and recall: marked seconds that are "
             "reference overlap, reference overlap seconds that are marked.", "",
             "Step 1, the HMM re-segmentation (V: the window route; V+S: the default-voices route too):", "", *HEADER]
    lines += [_row(r) for r in payload["results"]]
    lines += ["", "Step 2, overlap marking on step 1's choice:", "", *HEADER]
    lines += [_row(r) for r in payload["overlap"]] or ["| (no HMM chosen: not measured) |" + " |" * 9]
    lines += ["", "Step 3, three voices heard:", "", *HEADER, _row(payload["three"]), "",
              "**Choice.** "
              + (f"Step 1: {st['hmm']} (at least 0.5 points under H, count and one-speaker not lower). "
                 if st["hmm"] else "Step 1: no HMM point is 0.5 points under H with count and one-speaker not lower; "
                                   "the plain re-segmentation stays. ")
              + (f"Step 2: {st['overlap']}. " if st["overlap"] else "Step 2: no overlap marking lowers DER by 0.5 points; "
                                                                   "overlaps are not marked. ")
              + ("Step 3: three voices heard is added. " if st["three_voices"] else
                 "Step 3: three voices heard lowers one-speaker one voice or raises DER; not added. ")
              + f"R7 = **{payload['chosen']['name']}**: DER {pct(payload['chosen_row']['summary']['der'])} vs H's "
                f"{pct(payload['base']['summary']['der'])}."]
    return "\n".join(lines) + "\n"


def run_choice(out) -> dict:
    model = load_one_voice_model(ONE_VOICE_MODEL)
    pooled = cached("dev") + cached("dev3")
    one = cached("dev2_one")
    c = choose(model, pooled, one)
    strip = lambda r: {k: v for k, v in r.items() if k not in ("rows", "one_rows")}
    payload = {"n_pooled": len(pooled), "n_one": sum(1 for x in list(pooled) + list(one) if x["speakers"] == 1),
               "results": [strip(r) for r in c["results"]], "overlap": [strip(r) for r in c["overlap"]],
               "three": strip(c["three"]), "steps": c["steps"], "base": strip(c["base"]),
               "chosen": {"name": c["chosen"].name, "hmm": asdict(c["chosen"].hmm) if c["chosen"].hmm else None,
                          "segments_hmm": c["chosen"].segments_hmm, "three_voices": c["chosen"].three_voices},
               "chosen_row": strip(c["chosen_row"])}
    write_report(out, payload, render_choice(payload), config={})
    _log(f"wrote {out}.md; chosen: {c['chosen'].name}")
    return payload


def fit_without_length(out: str = ONE_VOICE_MODEL_NO_LENGTH) -> dict:
    """L (plan.md, round 7's amendment): round 4's fit on `dev` + `dev_one`, without the seconds of speech."""
    import json
    from pathlib import Path

    from .round4 import fit

    names = [f for f in ONE_VOICE_FEATURES if f != "speech_s"]
    model = fit(cached("dev") + cached("dev_one"), names, fitted_by="round 7 (L)",
                note="round 4's features without speech_s; ")
    Path(out).write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    _log(f"L fitted: accuracy {model['fit_accuracy']:.3f}; written to {out}")
    return model


def choose_length(out) -> dict:
    """Round 7's amendment: R7 with L against R7 on `dev3` (+ `dev2_one` for the one-speaker condition)."""
    import json

    chosen = json.loads((HERE / "report_round7_choose.json").read_text())["chosen"]
    r7 = variant_of(chosen)
    r7l = replace(r7, name=f"{r7.name} + L", one_voice_model=ONE_VOICE_MODEL_NO_LENGTH)
    dev3, one = cached("dev3"), cached("dev2_one")
    res = {v.name: measure(v, dev3, one, load_one_voice_model(v.one_voice_model)) for v in (H, r7, r7l)}
    a, b = res[r7.name]["summary"], res[r7l.name]["summary"]
    adopt = (b["one_speaker_one_voice_all"] * b["one_speaker_n"] >= a["one_speaker_one_voice_all"] * a["one_speaker_n"] - 1
             and b["der"] <= a["der"] + 0.005)
    payload = {"results": [{k: v for k, v in r.items() if k not in ("rows", "one_rows")} for r in res.values()],
               "adopt": bool(adopt), "judged": r7l.name if adopt else r7.name}
    lines = ["# Who speaks when in one room, round 7: the one-voice model without recording length", "",
             "Generated by `python -m studies.room_conversations.round7 --length` (rule: `plan.md`, round 7's amendment, "
             f"written before the run). `dev3` ({len(dev3)} conversations, seed 7); the one-speaker condition over dev3's "
             f"one-speaker recordings and `dev2_one` (40, seed 6). L is fitted on `dev` + `dev_one`.", "", *HEADER]
    lines += [_row(r) for r in payload["results"]]
    lines += ["", "**Decision.** " + (f"R7 + L keeps one-speaker one voice within one recording and DER within 0.5 points of "
                                       f"R7: **{r7l.name}** is judged." if adopt else
                                       f"R7 + L loses more than the rule allows: **{r7.name}** is judged.")]
    write_report(out, payload, "\n".join(lines) + "\n", config={})
    _log(f"wrote {out}.md; judged: {payload['judged']}")
    return payload


def diagnose_real(out) -> dict:
    """Why the learnt decision calls real recordings one voice: each feature's push on its logit, per real recording.

    The amendment's diagnosis (plan.md, round 7): silero and GE2E as the runtime runs them, the first cut over whole
    segments, :func:`pipeline.diarize.one_voice_features` of the 1.5 s windows at silero 0.35, and round 4's model.
    """
    from dataclasses import replace as with_

    from pipeline.audio import decode_audio, resample
    from pipeline.recording import _window_embeddings
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad, regions_from_probabilities, split_long
    from pipeline.voices import embed_segments

    from .study import CONVERSATIONS, read_rttm

    vad, encoder = SileroVad(), SpeakerEncoder()
    rows = []
    for file_id, turns in sorted(read_rttm(CONVERSATIONS / "reference.rttm").items()):
        decoded = decode_audio(str(CONVERSATIONS / f"{file_id}.flac"), mono=True)
        y = resample(decoded.samples, decoded.sample_rate, 16000)
        probs = vad.probabilities(y)
        segments = split_long(regions_from_probabilities(probs, y.size, vad.config), y, vad.config)
        E = embed_segments(encoder, y, segments)
        first = int(cluster_voices(E, np.array([r.duration_s for r in segments]), centred_threshold=None).max()) + 1
        speech = regions_from_probabilities(probs, y.size, with_(vad.config, threshold=WINDOWS.threshold))
        windows, X = _window_embeddings(y, speech, encoder, WINDOWS.config, 32)
        features = one_voice_features(first, X, windows, sum(r.duration_s for r in speech), WINDOWS.config)
        row = {"id": file_id, "speakers": len({s for _, _, s in turns}), "first_cut": first}
        for name, path in (("round 4", ONE_VOICE_MODEL), ("L", ONE_VOICE_MODEL_NO_LENGTH)):
            model = load_one_voice_model(path)
            used = [ONE_VOICE_FEATURES.index(f) for f in model["features"]]
            z = (features[used] - np.array(model["mean"])) / np.array(model["scale"])
            row[name] = {"p_more": more_than_one_probability(features, model),
                         "push": dict(zip(model["features"], (z * np.array(model["coef"])).tolist()))}
        rows.append(row)
    lines = ["# Who speaks when in one room, round 7: why real recordings are called one voice", "",
             "Generated by `python -m studies.room_conversations.round7 --diagnose` (a diagnosis for plan.md's round-7 "
             "amendment; it chooses nothing). Each feature's push on the one-voice model's logit (standardised value "
             "times coefficient; negative: towards one voice), and P(more than one).", "",
             "| recording | speakers | first cut | model | P(more) | " + " | ".join(ONE_VOICE_FEATURES) + " |",
             "|---|---:|---:|---|---:|" + "---:|" * len(ONE_VOICE_FEATURES)]
    for r in rows:
        for name in ("round 4", "L"):
            m = r[name]
            lines.append(f"| {r['id']} | {r['speakers']} | {r['first_cut']} | {name} | {m['p_more']:.3f} | "
                         + " | ".join(f"{m['push'][f]:+.2f}" if f in m["push"] else "–" for f in ONE_VOICE_FEATURES) + " |")
    write_report(out, {"rows": rows}, "\n".join(lines) + "\n", config={})
    _log(f"wrote {out}.md")
    return {"rows": rows}


def config_of(variant: Variant) -> DiarizationConfig:
    """The runtime's :class:`~pipeline.diarize.DiarizationConfig` of a variant (H's, with round 7's fields)."""
    return replace(HYBRID, hmm=variant.hmm, segments_hmm=variant.segments_hmm, three_voices=variant.three_voices,
                   one_voice_model=variant.one_voice_model)


def variant_of(chosen: dict) -> Variant:
    hmm = HmmConfig(**chosen["hmm"]) if chosen["hmm"] else None
    return Variant(chosen["name"], hmm, chosen["segments_hmm"], chosen["three_voices"],
                   chosen.get("one_voice_model", ONE_VOICE_MODEL))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.room_conversations.round7", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", nargs="+", choices=sorted(SETS), default=[])
    parser.add_argument("--choose", action="store_true", help="the choosing grid on dev + dev3 (report_round7_choose.*)")
    parser.add_argument("--fit-length", action="store_true", help="fit L, the one-voice model without speech seconds")
    parser.add_argument("--length", action="store_true", help="R7 + L against R7 on dev3 (report_round7_length.*)")
    parser.add_argument("--diagnose", action="store_true",
                        help="each feature's push on the one-voice decision for the real recordings (report_round7_diagnosis.*)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for name in args.cache:
        rows = cached(name)
        _log(f"{name}: {len(rows)} conversations cached")
    if args.choose:
        run_choice(HERE / "report_round7_choose")
    if args.fit_length:
        fit_without_length()
    if args.length:
        choose_length(HERE / "report_round7_length")
    if args.diagnose:
        diagnose_real(HERE / "report_round7_diagnosis")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
