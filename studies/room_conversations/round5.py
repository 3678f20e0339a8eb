"""Round 5 of ``plan.md``: hybrid H, judged on a fresh `dev3` (+ `dev2_one`) by round 4's five conditions.

Usage (through round4.py, as the plan names it)::

    python -m studies.room_conversations.round4 --round 5                # report_round5.*
    python -m studies.room_conversations.round4 --round 5 --dev3 4 --dev2-one 4 --clips 2 --check 2 --out /tmp/r5

H: round 4's learnt decision (``pipeline/one_voice.json``, not refitted) says one voice when
P(more) < 0.5; otherwise, when the default pipeline's first cut over whole segments finds two or
more voices, the default pipeline's answer is kept; only when it finds one, round 3's window path.
The runtime's H is ``DiarizationConfig(one_voice_model=ONE_VOICE_MODEL, keep_first_cut=True)``.

DER, the voice count and one-speaker one voice come from grid.py's caches (as rounds 3-4). Gender
per voice on `dev3` comes from :meth:`pipeline.Cascade.analyse_recording`: the default pipeline and
round 4's candidate run there on all conversations, and H's row of a conversation is the row of
the pipeline its route gives (default for ``"segments"``, round 4's otherwise: the same code runs);
H itself runs through the runtime on the first ``--check`` conversations to show that the composed
rows are the runtime's. The corpus-clip conversations run through H and the default directly.
Runtime rows are kept under ``cache/room_conversations/round5_*.pkl`` so that a rerun resumes.
"""
from __future__ import annotations

import json
import pickle
import time
from typing import Callable, Sequence

import numpy as np

from pipeline.diarize import ONE_VOICE_MODEL, DiarizationConfig, load_one_voice_model, more_than_one_probability
from training.reporting import pct, write_report

from .grid import CACHE, build_cache, evaluate, hypothesis, summary
from .round4 import DEFAULT, DEV2_ONE_SEED, WINDOWS, cached_features, evaluate_candidate
from .study import HERE, SR, _log, by_speakers, der_parts, run_clips, score, speakers_of, summarise

DEV3_SEED = 7
HYBRID = DiarizationConfig(one_voice_model=ONE_VOICE_MODEL, keep_first_cut=True)
ROUND4 = DiarizationConfig(one_voice_model=ONE_VOICE_MODEL)


def route(cached: dict, model: dict) -> tuple[str, float | None]:
    """H's path for one cached conversation (``"one"``, ``"segments"`` or ``"windows"``) and its P(more)."""
    features = cached_features(cached)
    p = None if features is None else more_than_one_probability(features, model)
    if p is None or p < model["threshold"]:
        return "one", p
    return ("segments" if features[0] > 0.5 else "windows"), p  # feature 0: the first cut finds more than one


def evaluate_hybrid(cached: Sequence[dict], model: dict) -> list[dict]:
    rows = []
    for conv in cached:
        path, p = route(conv, model)
        hyp = ([(s.start_s, s.end_s, "0") for s in conv["by_threshold"][0.5]["segments"]] if path == "one"
               else hypothesis(DEFAULT if path == "segments" else WINDOWS, conv))
        row = der_parts(conv["turns"], hyp)
        row.update(id=conv["id"], speakers=conv["speakers"], voices=len({v for _, _, v in hyp}),
                   same_gender=conv["same_gender"], p_more=p, route=path)
        rows.append(row)
    return rows


def staged(name: str, n: int, compute: Callable[[], list[dict]]) -> list[dict]:
    """Rows kept under ``cache/room_conversations/round5_{name}_{n}.pkl`` (a rerun resumes from them)."""
    path = CACHE / f"round5_{name}_{n}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    start = time.perf_counter()
    rows = compute()
    _log(f"{name}: {len(rows)} recordings in {time.perf_counter() - start:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows))
    return rows


def run_dev3(cascade, n: int, cached: Sequence[dict], diarization: DiarizationConfig | None) -> list[dict]:
    """The first ``n`` `dev3` conversations (regenerated from seed 7) through one pipeline."""
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    speakers = speakers_of({"train", "val"})
    rng, clips, rows = np.random.default_rng(DEV3_SEED), ClipCache(), []
    for i in range(n):
        conv = make_room_conversation(rng, speakers, clips)
        assert conv.turns == cached[i]["turns"], "dev3 regenerated differently from its cache"
        recording = cascade.analyse_recording(conv.samples, SR, name=f"dev3_{i:03d}", diarization=diarization)
        row = score(conv.turns, conv.genders, recording)
        row.update(id=f"dev3_{i:03d}", same_gender=conv.same_gender)
        rows.append(row)
    return rows


def checks(cand: dict, base: dict) -> dict:
    """Round 4's five conditions (plan.md, round 5) of one pipeline against the default."""
    return {
        "DER at least 2 points lower (dev3, cache)": cand["der"] <= base["der"] - 0.02,
        "voice count right not lower (dev3, cache)": cand["count_right"] >= base["count_right"],
        "gender per voice not lower (dev3, runtime)": cand["runtime"]["gender_per_voice"] >= base["runtime"]["gender_per_voice"],
        "one speaker one voice not less often (dev3 + dev2_one, cache)":
            cand["one_speaker_one_voice_all"] >= base["one_speaker_one_voice_all"],
        "corpus-clip DER not higher (40, runtime)": cand["clips"]["der"] <= base["clips"]["der"],
    }


def render(payload: dict) -> str:
    s, d = payload["summary"], payload["decision"]
    lines = ["# Who speaks when in one room, round 5: hybrid H", "",
             "Generated by `python -m studies.room_conversations.round4 --round 5` (plan and rule: `plan.md`, round 5, "
             f"written before the run). Judged on `dev3` ({payload['n_dev3']} fresh conversations of train/val speakers, "
             f"seed {DEV3_SEED}); the one-speaker condition over dev3's own one-speaker conversations and `dev2_one` "
             f"({payload['n_dev2_one']} one-speaker conversations, seed {DEV2_ONE_SEED}, reused from round 4: a fresh "
             "set did not fit the time). Round 4's model (`pipeline/one_voice.json`) as fitted, nothing refitted or "
             "tuned. DER by `pyannote.metrics` (0.25 s collar each side, overlap scored); *cache*: grid.py's caches; "
             "*runtime*: `Cascade.analyse_recording`.", "",
             "| on dev3 | DER | missed | false alarm | confusion | count right | within one | "
             "one speaker: one voice (dev3 + dev2_one) | runtime DER | runtime gender per voice | corpus clips DER |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"default": "default pipeline (vad 0.5 / segments / shipped linkage)",
             "round4": "round 4's candidate: learnt decision, else windows",
             "hybrid": "H: learnt decision, else default if its first cut splits, else windows"}
    for key, name in names.items():
        r = s[key]
        rt, cl = r.get("runtime", {}), r.get("clips", {})
        lines.append(f"| {name} | {pct(r['der'])} | {pct(r['missed'])} | {pct(r['false_alarm'])} | {pct(r['confusion'])} | "
                     f"{pct(r['count_right'])} | {pct(r['count_within_one'])} | {pct(r['one_speaker_one_voice_all'])} "
                     f"({r['one_speaker_n']}) | {pct(rt.get('der'), missing='–')} | "
                     f"{pct(rt.get('gender_per_voice'), missing='–')} | {pct(cl.get('der'), missing='–')} |")
    lines += ["", f"Round 4's corpus-clip DER is round 4's run of the same 40 conversations "
              f"(`report_round4.json`), not rerun here. H's runtime rows on dev3 are composed by route (see round5.py); "
              f"H itself through the runtime on the first {payload['check']['n']} dev3 conversations: "
              f"{payload['check']['equal']} of {payload['check']['n']} give the composed DER and gender per voice "
              f"(to 1e-9). Runtime DER equals cache DER on {payload['cache_vs_runtime']['default']} (default), "
              f"{payload['cache_vs_runtime']['round4']} (round 4) and {payload['cache_vs_runtime']['hybrid']} (H) of "
              f"{payload['n_dev3']} dev3 conversations (to 1e-6).", "",
              "H's routes (learnt decision, then the first cut):", "",
              "| set | recordings | one voice | default's voices | windows |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['one']} | {v['segments']} | {v['windows']} |" for k, v in payload["routes"].items()]
    lines += ["", "Corpus-clip conversations by number of speakers (runtime):", "",
              "| group | recordings | default DER | H DER | default mean voices | H mean voices |", "|---|---:|---:|---:|---:|---:|"]
    bd, bh = payload["clips_by_speakers"]["default"], payload["clips_by_speakers"]["hybrid"]
    lines += [f"| {k} | {bd[k]['recordings']} | {pct(bd[k]['der'])} | {pct(bh[k]['der'])} | {bd[k]['mean_voices']:.2f} | "
              f"{bh[k]['mean_voices']:.2f} |" for k in bd]
    lines += ["", "**Rule** (plan.md, round 5; H against the default; round 4's candidate beside it, not judged):", "",
              "| condition | H | round 4's candidate |", "|---|:---:|:---:|"]
    lines += [f"| {k} | {'yes' if v else '**no**'} | {'yes' if payload['round4_checks'][k] else 'no'} |"
              for k, v in d["checks"].items()]
    lines += ["", "**Decision.** " + ("H passes every condition; the full study through H: `python -m "
                                       "studies.room_conversations --round 5 --clips 40` (report_round5_pipeline.md)."
                                       if d["passes"] else
                                      "H fails the rule: nothing ships, no full run.")
              + " The pipeline's default is unchanged (`DIARIZATION = None`)."]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    import torch

    torch.set_num_threads(1)
    model = load_one_voice_model(ONE_VOICE_MODEL)
    dev3 = build_cache("dev3", 60, k=None, seed=DEV3_SEED)[:args.dev3]
    one = build_cache("dev2_one", 40, k=1, seed=DEV2_ONE_SEED)[:args.dev2_one]
    results = {"default": (evaluate(DEFAULT, dev3), evaluate(DEFAULT, one)),
               "round4": (evaluate_candidate(dev3, model), evaluate_candidate(one, model)),
               "hybrid": (evaluate_hybrid(dev3, model), evaluate_hybrid(one, model))}
    s = {k: summary(*v) for k, v in results.items()}
    routes = {name: {"n": len(rows), **{r: sum(x["route"] == r for x in rows) for r in ("one", "segments", "windows")}}
              for name, rows in (("dev3", results["hybrid"][0]), ("dev2_one", results["hybrid"][1]))}
    _log("cache parts: " + "; ".join(f"{k} DER {v['der']:.3f} count {v['count_right']:.3f} one "
                                     f"{v['one_speaker_one_voice_all']:.3f}" for k, v in s.items()) + f"; routes {routes}")
    from pipeline import Cascade

    cascade = Cascade.load()
    n = len(dev3)
    rt = {"default": staged("dev3_default", n, lambda: run_dev3(cascade, n, dev3, None)),
          "round4": staged("dev3_round4", n, lambda: run_dev3(cascade, n, dev3, ROUND4))}
    rt["hybrid"] = [rt["default"][i] if r["route"] == "segments" else rt["round4"][i]
                    for i, r in enumerate(results["hybrid"][0])]
    clips = {"hybrid": staged("clips_hybrid", args.clips, lambda: run_clips(cascade, args.clips, diarization=HYBRID)),
             "default": staged("clips_default", args.clips, lambda: run_clips(cascade, args.clips, diarization=None))}
    direct = staged("dev3_hybrid_check", args.check, lambda: run_dev3(cascade, args.check, dev3, HYBRID))
    equal = sum(abs(a["der"] - b["der"]) < 1e-9 and abs(a["gender_per_voice"] - b["gender_per_voice"]) < 1e-9
                and a["voices"] == b["voices"] for a, b in zip(direct, rt["hybrid"]))
    for k in rt:
        s[k]["runtime"] = summarise(rt[k])
    s["default"]["clips"], s["hybrid"]["clips"] = summarise(clips["default"]), summarise(clips["hybrid"])
    r4_path = HERE / "report_round4.json"
    r4 = json.loads(r4_path.read_text())["summary"]["candidate"]["clips"]
    s["round4"]["clips"] = r4
    agree = {k: sum(abs(a["der"] - b["der"]) < 1e-6 for a, b in zip(rt[k], results[k][0])) for k in rt}
    decision = checks(s["hybrid"], s["default"])
    payload = {"round": 5, "n_dev3": n, "n_dev2_one": len(one), "summary": s, "routes": routes,
               "decision": {"checks": {k: bool(v) for k, v in decision.items()}, "passes": bool(all(decision.values()))},
               "round4_checks": {k: bool(v) for k, v in checks(s["round4"], s["default"]).items()},
               "check": {"n": len(direct), "equal": int(equal)}, "cache_vs_runtime": agree,
               "clips_by_speakers": {k: by_speakers(v) for k, v in clips.items()},
               "rows": {k: {"dev3": v[0], "dev2_one": v[1]} for k, v in results.items()},
               "runtime_rows": rt, "runtime_check_rows": direct, "clips_rows": clips}
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md; passes: {payload['decision']['passes']}")
    return 0
