"""Round 7 of ``plan.md``, judging: R7 (round7.py's choice) against the default by round 6's rule.

Usage::

    python -m studies.room_conversations.round7_judge --only default   # one pipeline's runtime parts (side by side)
    python -m studies.room_conversations.round7_judge                  # all parts (kept ones reused), report_round7.*

DER, the voice count and test_one's one voice come from grid.py's caches of `dev4` and `test_one`; gender per
voice on dev4, the four real recordings and the corpus-clip conversations from
:meth:`pipeline.Cascade.analyse_recording`. Runtime rows are kept under ``cache/room_conversations``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Sequence

import numpy as np

from pipeline.diarize import ONE_VOICE_MODEL_NO_LENGTH, DiarizationConfig, load_one_voice_model
from training.reporting import pct, write_report

from .round4 import DEFAULT
from .round7 import SETS, H, cached, config_of, evaluate, variant_of
from .study import HERE, _log


def run_generated(cascade, name: str, rows: Sequence[dict], config: DiarizationConfig | None) -> list[dict]:
    """The cached set's conversations, regenerated from their seed, through ``analyse_recording``."""
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    from .study import SR, score, speakers_of

    n, k, seed, splits = SETS[name]
    speakers = speakers_of(set(splits))
    rng, clips, out = np.random.default_rng(seed), ClipCache(), []
    for i, conv_row in enumerate(rows):
        conv = make_room_conversation(rng, speakers, clips, k=k)
        assert conv.turns == conv_row["turns"], f"{name} regenerated differently from its cache"
        recording = cascade.analyse_recording(conv.samples, SR, name=conv_row["id"], diarization=config)
        row = score(conv.turns, conv.genders, recording)
        row.update(id=conv_row["id"], same_gender=conv.same_gender)
        out.append(row)
        if (i + 1) % 10 == 0:
            _log(f"{name} through the runtime: {i + 1}/{len(rows)}")
    return out


def judge_checks(r7: dict, base: dict) -> dict[str, bool]:
    """Round 6's rule (plan.md): R7 against the default pipeline."""
    real_b = {r["id"]: r for r in base["real_rows"]}
    return {
        "dev4: DER at least 2 points lower": r7["dev4"]["der"] <= base["dev4"]["der"] - 0.02,
        "dev4: voice count right not lower": r7["dev4"]["count_right"] >= base["dev4"]["count_right"],
        "dev4: gender per voice not lower": r7["dev4_runtime"]["gender_per_voice"] >= base["dev4_runtime"]["gender_per_voice"],
        "test_one: one voice at least as often": r7["test_one"]["one_speaker_one_voice"] >= base["test_one"]["one_speaker_one_voice"],
        "real recordings: DER not higher": r7["real"]["der"] <= base["real"]["der"],
        "real recordings: no count further from the truth": all(
            abs(r["voices"] - r["speakers"]) <= abs(real_b[r["id"]]["voices"] - real_b[r["id"]]["speakers"])
            for r in r7["real_rows"]),
        "corpus clips: DER not higher": r7["clips"]["der"] <= base["clips"]["der"],
    }


def run_judge(out, n_clips: int = 40, only: Sequence[str] | None = None) -> dict | None:
    from pipeline import Cascade

    from .grid import evaluate as grid_evaluate
    from .staging import staged
    from .study import run_clips, run_real, summarise

    chosen = variant_of(json.loads((HERE / "report_round7_choose.json").read_text())["chosen"])
    length = HERE / "report_round7_length.json"
    if (not only or "R7" in only) and json.loads(length.read_text())["adopt"]:
        chosen = replace(chosen, name=f"{chosen.name} + L", one_voice_model=ONE_VOICE_MODEL_NO_LENGTH)
    dev4, test_one = cached("dev4"), cached("test_one")
    pipelines = {"default": None, "H": H, "R7": chosen}
    parts: dict = {}
    for key, variant in pipelines.items():
        model = None if variant is None else load_one_voice_model(variant.one_voice_model)
        rows = grid_evaluate(DEFAULT, dev4) if variant is None else evaluate(dev4, model, variant)
        one_rows = grid_evaluate(DEFAULT, test_one) if variant is None else evaluate(test_one, model, variant)
        parts[key] = {"dev4": summarise(rows), "test_one": summarise(one_rows), "dev4_rows": rows, "test_one_rows": one_rows}
        _log(f"{key}: dev4 DER {parts[key]['dev4']['der']:.4f} count {parts[key]['dev4']['count_right']:.3f}; "
             f"test_one one voice {parts[key]['test_one']['one_speaker_one_voice']:.3f}")
    cascade = Cascade.load()
    for key, variant in pipelines.items():
        if only and key not in only:
            continue
        config = None if variant is None else config_of(variant)
        tag = f"r7_{key}" + ("L" if variant is not None and variant.one_voice_model == ONE_VOICE_MODEL_NO_LENGTH else "")
        if key != "H":  # H's runtime on dev4 is not part of the rule (its cache rows are reported)
            rt = staged(f"{tag}_dev4", len(dev4), lambda: run_generated(cascade, "dev4", dev4, config))
            parts[key]["dev4_runtime"] = summarise(rt)
            parts[key]["dev4_runtime_rows"] = rt
            parts[key]["cache_equals_runtime"] = int(sum(abs(a["der"] - b["der"]) < 1e-6
                                                         for a, b in zip(rt, parts[key]["dev4_rows"])))
        real = staged(f"{tag}_real", 4, lambda: run_real(cascade, diarization=config))
        parts[key]["real"], parts[key]["real_rows"] = summarise(real), real
        if key != "H":
            clips = staged(f"{tag}_clips", n_clips, lambda: run_clips(cascade, n_clips, diarization=config))
            parts[key]["clips"], parts[key]["clips_rows"] = summarise(clips), clips
        _log(f"{key}: runtime parts done")
    if only:  # a part of the runtime runs, kept by staged(); a later run without --only writes the report
        return None
    checks = judge_checks(parts["R7"], parts["default"])
    payload = {"chosen": chosen.name, "parts": parts, "checks": checks, "passes": all(checks.values()),
               "n_clips": n_clips}
    write_report(out, payload, render_judge(payload), config={})
    _log(f"wrote {out}.md; passes: {payload['passes']}")
    return payload


def render_judge(payload: dict) -> str:
    P = payload["parts"]
    names = {"default": "default pipeline", "H": "H (round 5)", "R7": f"R7: {payload['chosen']}"}
    lines = ["# Who speaks when in one room, round 7: judging R7 by round 6's rule", "",
             "Generated by `python -m studies.room_conversations.round7_judge` (plan and rule: `plan.md`, rounds 6 "
             "and 7, written before the run). `dev4`: 60 fresh conversations of train/val speakers (seed 10); "
             "`test_one`: 40 one-speaker recordings of test speakers (seed 9); the four real recordings of "
             f"`../shared/conversations`; the first {payload['n_clips']} corpus-clip `test` conversations of "
             "`studies/diarization`. DER by `pyannote.metrics` (0.25 s collar each side, overlap scored). *cache*: "
             "grid.py's caches; *runtime*: `Cascade.analyse_recording`.", "",
             "| pipeline | dev4 DER | missed | false alarm | confusion | count right | within one | dev4 gender per voice "
             "(runtime) | test_one: one voice | real DER | corpus clips DER |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, name in names.items():
        p = P[key]
        d, rt = p["dev4"], p.get("dev4_runtime", {})
        lines.append(f"| {name} | {pct(d['der'])} | {pct(d['missed'])} | {pct(d['false_alarm'])} | {pct(d['confusion'])} | "
                     f"{pct(d['count_right'])} | {pct(d['count_within_one'])} | {pct(rt.get('gender_per_voice'), missing='–')} | "
                     f"{pct(p['test_one']['one_speaker_one_voice'])} | {pct(p['real']['der'])} | "
                     f"{pct(p.get('clips', {}).get('der'), missing='–')} |")
    lines += ["", "Real recordings (runtime):", "", "| recording | speakers | " + " | ".join(
        f"{k} voices | {k} DER" for k in names) + " |", "|---|---:|" + "---:|---:|" * len(names)]
    for i, r in enumerate(P["default"]["real_rows"]):
        lines.append(f"| {r['id']} | {r['speakers']} | " + " | ".join(
            f"{P[k]['real_rows'][i]['voices']} | {pct(P[k]['real_rows'][i]['der'])}" for k in names) + " |")
    lines += ["", "Runtime DER equals the cache's on "
              + ", ".join(f"{P[k]['cache_equals_runtime']} ({k})" for k in names if "cache_equals_runtime" in P[k])
              + " of 60 dev4 conversations (to 1e-6).", "", "**Rule** (round 6, R7 against the default):", "",
              "| condition | met |", "|---|:---:|"]
    lines += [f"| {k} | {'yes' if v else '**no**'} |" for k, v in payload["checks"].items()]
    lines += ["", "**Decision.** " + ("R7 passes every condition: it becomes the default (`DIARIZATION` in "
                                       "`pipeline/recording.py`)." if payload["passes"] else
                                       "R7 fails the rule: the default stays; R7 is an opt-in.")]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.room_conversations.round7_judge",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--only", nargs="+", choices=("default", "H", "R7"), default=None,
                        help="only these pipelines' runtime parts (run side by side; kept for the report)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    run_judge(HERE / "report_round7", args.clips, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
