"""Round 4 of ``plan.md``: a learnt one-voice decision, fitted on `dev` + `dev_one`, judged on `dev2` + `dev2_one`.

Usage::

    python -m studies.room_conversations.round4                 # fit, cache rule parts, runtime parts; report_round4.*
    python -m studies.room_conversations.round4 --dev2 4 --dev2-one 4 --clips 2 --out /tmp/r4 --model /tmp/r4.json
    python -m studies.room_conversations.round5                 # round 5's hybrid on dev3; report_round5.*

A logistic regression (scikit-learn's defaults, standardised features of
:func:`pipeline.diarize.one_voice_features`) is fitted on the cached `dev` and `dev_one`
conversations of round 2 and written as data to ``pipeline/one_voice.json``. On `dev2` (round 3's
60) and `dev2_one` (40 fresh one-speaker conversations, seed 6) the cache gives DER, the voice
count and one-speaker one voice for the default pipeline and the candidate (one voice when
P(more) < 0.5, else round 3's window path); gender per voice on `dev2` and the 40 corpus-clip
conversations of ``studies/diarization`` come from :meth:`pipeline.Cascade.analyse_recording`
through both pipelines. The rule of plan.md (round 4) decides.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.diarize import (ONE_VOICE_FEATURES, ONE_VOICE_MODEL, DiarizationConfig, load_one_voice_model,
                              more_than_one_probability, one_voice_features)
from training.reporting import pct, write_report

from .grid import DEV2_SEED, DEV_ONE_SEED, Point, build_cache, evaluate, hypothesis, summary
from .study import HERE, SEEDS, SR, _log, run_clips, score, speakers_of, summarise

DEV2_ONE_SEED = 6
WINDOWS = Point(0.35, "windows", DiarizationConfig(method="spectral", prune=0.3, merge_similarity=0.9))
DEFAULT = Point(0.5, "segments")


def cached_features(cached: dict) -> np.ndarray | None:
    """:func:`pipeline.diarize.one_voice_features` of one cached conversation (``None``: under 4 windows)."""
    from pipeline.voices import cluster_voices

    first = cached["by_threshold"][0.5]
    segs = first["segments"]
    voices = (int(cluster_voices(first["segment_embeddings"], np.array([s.duration_s for s in segs]),
                                 centred_threshold=None).max()) + 1) if segs else 0
    c = cached["by_threshold"][WINDOWS.threshold]
    return one_voice_features(voices, c["window_embeddings"], c["windows"], sum(r.duration_s for r in c["regions"]),
                              WINDOWS.config)


def fit(cached: Sequence[dict], features: Sequence[str] = ONE_VOICE_FEATURES, *, fitted_by: str = "round 4",
        note: str = "") -> dict:
    """Standardised ``features`` (some of :data:`~pipeline.diarize.ONE_VOICE_FEATURES`), ``LogisticRegression()`` with
    scikit-learn's defaults; label: more than one speaker. ``fitted_by``, ``note``: for the model's ``fitted_on``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    used = [ONE_VOICE_FEATURES.index(f) for f in features]
    rows = [(f[used], c["speakers"] > 1) for c in cached if (f := cached_features(c)) is not None]
    X, y = np.array([f for f, _ in rows]), np.array([m for _, m in rows], int)
    scaler = StandardScaler().fit(X)
    lr = LogisticRegression().fit(scaler.transform(X), y)
    model = {"features": list(features), "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
             "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]), "threshold": 0.5,
             "label": "more than one speaker",
             "fitted_on": f"studies/room_conversations {fitted_by}: dev (60, seed {SEEDS['dev']}) + dev_one "
                          f"(40, seed {DEV_ONE_SEED}), {len(y)} recordings with 4 windows or more, {int(y.sum())} of "
                          f"them with more than one speaker; {note}StandardScaler, sklearn LogisticRegression() defaults",
             "fit_accuracy": float(np.mean(lr.predict(scaler.transform(X)) == y))}
    return model


def candidate_hypothesis(cached: dict, model: dict) -> tuple[list[tuple[float, float, str]], float | None]:
    """Hypothesis turns of the candidate and its P(more) (``None``: under 4 windows, one voice)."""
    features = cached_features(cached)
    p = None if features is None else more_than_one_probability(features, model)
    if p is None or p < model["threshold"]:
        return [(s.start_s, s.end_s, "0") for s in cached["by_threshold"][0.5]["segments"]], p
    return hypothesis(WINDOWS, cached), p


def evaluate_candidate(cached: Sequence[dict], model: dict) -> list[dict]:
    from .study import der_parts

    rows = []
    for conv in cached:
        hyp, p = candidate_hypothesis(conv, model)
        row = der_parts(conv["turns"], hyp)
        row.update(id=conv["id"], speakers=conv["speakers"], voices=len({v for _, _, v in hyp}),
                   same_gender=conv["same_gender"], p_more=p)
        rows.append(row)
    return rows


def run_dev2(cascade, n: int, model_path: str, cached: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """The `dev2` conversations (regenerated from seed 4) through the default pipeline and the candidate."""
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    speakers = speakers_of({"train", "val"})
    rng, clips, default, candidate = np.random.default_rng(DEV2_SEED), ClipCache(), [], []
    config, start = DiarizationConfig(one_voice_model=model_path), time.perf_counter()
    for i in range(n):
        conv = make_room_conversation(rng, speakers, clips)
        assert conv.turns == cached[i]["turns"], "dev2 regenerated differently from its cache"
        for rows, options in ((default, {"diarization": None}), (candidate, {"diarization": config})):
            recording = cascade.analyse_recording(conv.samples, SR, name=f"dev2_{i:03d}", **options)
            row = score(conv.turns, conv.genders, recording)
            row.update(id=f"dev2_{i:03d}", same_gender=conv.same_gender)
            rows.append(row)
        if (i + 1) % 10 == 0 or i + 1 == n:
            _log(f"dev2 through both pipelines: {i + 1}/{n}, {time.perf_counter() - start:.0f} s")
    return default, candidate


def rule_checks(cand: dict, base: dict, *, judged: str, one_speaker: str) -> dict[str, bool]:
    """Round 4's five conditions (plan.md) of one pipeline's summary against the default's.

    ``judged``: the set DER, count and gender per voice are measured on (``"dev2"``); ``one_speaker``: the
    recordings of the one-speaker condition (``"dev2 + dev2_one"``); both only name the checks.
    """
    checks = {
        f"DER at least 2 points lower ({judged}, cache)": cand["der"] <= base["der"] - 0.02,
        f"voice count right not lower ({judged}, cache)": cand["count_right"] >= base["count_right"],
        f"gender per voice not lower ({judged}, runtime)": cand["runtime"]["gender_per_voice"] >= base["runtime"]["gender_per_voice"],
        f"one speaker one voice not less often ({one_speaker}, cache)":
            cand["one_speaker_one_voice_all"] >= base["one_speaker_one_voice_all"],
        "corpus-clip DER not higher (40, runtime)": cand["clips"]["der"] <= base["clips"]["der"],
    }
    return {k: bool(v) for k, v in checks.items()}


def decide(s: dict) -> dict:
    """The rule of plan.md, round 4: every condition against the default pipeline."""
    checks = rule_checks(s["candidate"], s["default"], judged="dev2", one_speaker="dev2 + dev2_one")
    return {"checks": checks, "passes": all(checks.values())}


def render(payload: dict) -> str:
    s, d, m = payload["summary"], payload["decision"], payload["model"]
    lines = ["# Who speaks when in one room, round 4: a learnt one-voice decision", "",
             "Generated by `python -m studies.room_conversations.round4` (plan, details and rule: `plan.md`, round 4, "
             f"written before the run). Fitted on {m['fitted_on'].split(': ', 1)[1]}; judged on "
             f"`dev2` ({payload['n_dev2']} conversations, seed {DEV2_SEED}) and `dev2_one` ({payload['n_dev2_one']} "
             f"one-speaker conversations, seed {DEV2_ONE_SEED}). DER by `pyannote.metrics` (0.25 s collar each side, "
             "overlap scored); rows marked *cache* from grid.py's caches, *runtime* through `Cascade.analyse_recording`.",
             "", "| on dev2 | DER | missed | false alarm | confusion | count right | within one | "
                 "one speaker: one voice (dev2 + dev2_one) | runtime DER | runtime gender per voice | corpus clips DER |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, name in (("default", "default pipeline (vad 0.5 / segments / shipped linkage)"),
                      ("candidate", "candidate: learnt one-voice decision, else windows (merge > 0.9)"),
                      ("guard", "round 3's G(0.9), for reference"), ("windows", "windows, no decision, for reference")):
        r = s[key]
        rt, cl = r.get("runtime", {}), r.get("clips", {})
        lines.append(f"| {name} | {pct(r['der'])} | {pct(r['missed'])} | {pct(r['false_alarm'])} | {pct(r['confusion'])} | "
                     f"{pct(r['count_right'])} | {pct(r['count_within_one'])} | {pct(r['one_speaker_one_voice_all'])} "
                     f"({r['one_speaker_n']}) | {pct(rt.get('der'), missing='–')} | "
                     f"{pct(rt.get('gender_per_voice'), missing='–')} | {pct(cl.get('der'), missing='–')} |")
    dec = payload["decisions"]
    lines += ["", "The decision against the truth (one speaker or more), on the fitting set and on the judged sets:", "",
              "| set | recordings | one speaker called one | more called more | accuracy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['one_as_one']} of {v['one']} | {v['more_as_more']} of {v['more']} | "
              f"{pct(v['accuracy'])} |" for k, v in dec.items()]
    lines += ["", "Standardised coefficients (P(more than one speaker) rises with a positive one):", "",
              "| feature | mean | scale | coefficient |", "|---|---:|---:|---:|"]
    lines += [f"| {f} | {mu:.4g} | {sd:.4g} | {c:+.3f} |" for f, mu, sd, c in zip(m["features"], m["mean"], m["scale"], m["coef"])]
    lines += [f"| intercept | | | {m['intercept']:+.3f} |", "", "**Rule** (plan.md, round 4):", ""]
    lines += [f"- {k}: {'yes' if v else '**no**'}" for k, v in d["checks"].items()]
    lines += ["", "**Decision.** " + ("The candidate passes every condition: the full study is run."
                                       if d["passes"] else "The candidate fails the rule: nothing ships, no full run.")]
    return "\n".join(lines) + "\n"


def decision_table(rows: Sequence[dict], threshold: float) -> dict:
    one = [r for r in rows if r["speakers"] == 1]
    more = [r for r in rows if r["speakers"] > 1]
    said_one = lambda r: r["p_more"] is None or r["p_more"] < threshold  # noqa: E731
    one_as_one, more_as_more = sum(said_one(r) for r in one), sum(not said_one(r) for r in more)
    return {"n": len(rows), "one": len(one), "more": len(more), "one_as_one": one_as_one, "more_as_more": more_as_more,
            "accuracy": (one_as_one + more_as_more) / max(1, len(rows))}


def build_parser(prog: str = "python -m studies.room_conversations.round4",
                 description: str | None = None) -> argparse.ArgumentParser:
    """The options of rounds 4 and 5 (round5.py runs with the same parser)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0])
    parser.add_argument("--dev2", type=int, default=60)
    parser.add_argument("--dev2-one", type=int, default=40)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--model", type=Path, default=Path(ONE_VOICE_MODEL), help="where the fitted model is written")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--round", type=int, choices=(4, 5), default=4,
                        help="4: fit and judge the learnt decision on dev2; 5: hybrid H on dev3 "
                             "(python -m studies.room_conversations.round5, no fitting)")
    parser.add_argument("--dev3", type=int, default=60, help="round 5: dev3 conversations")
    parser.add_argument("--check", type=int, default=10, help="round 5: dev3 conversations also run through H itself")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.round == 5:
        parser.error("round 5 runs as python -m studies.room_conversations.round5 (same options)")
    args.out = args.out or HERE / f"report_round{args.round}"
    import torch

    torch.set_num_threads(1)
    fitting = build_cache("dev", 60, k=None, seed=SEEDS["dev"]) + build_cache("dev_one", 40, k=1, seed=DEV_ONE_SEED)
    model = fit(fitting)
    args.model.write_text(json.dumps(model, indent=2) + "\n", encoding="utf-8")
    load_one_voice_model.cache_clear()
    _log(f"fitted on {len(fitting)} recordings (training accuracy {model['fit_accuracy']:.3f}); wrote {args.model}")
    dev2 = build_cache("dev2", 60, k=None, seed=DEV2_SEED)[:args.dev2]
    dev2_one = build_cache("dev2_one", 40, k=1, seed=DEV2_ONE_SEED)[:args.dev2_one]
    results = {"default": (evaluate(DEFAULT, dev2), evaluate(DEFAULT, dev2_one)),
               "candidate": (evaluate_candidate(dev2, model), evaluate_candidate(dev2_one, model)),
               "guard": (evaluate(Point(0.35, "windows", WINDOWS.config, guard=True), dev2),
                         evaluate(Point(0.35, "windows", WINDOWS.config, guard=True), dev2_one)),
               "windows": (evaluate(WINDOWS, dev2), evaluate(WINDOWS, dev2_one))}
    s = {k: summary(*v) for k, v in results.items()}
    decisions = {"fitting (dev + dev_one)": decision_table(evaluate_candidate(fitting, model), model["threshold"]),
                 "dev2": decision_table(results["candidate"][0], model["threshold"]),
                 "dev2_one": decision_table(results["candidate"][1], model["threshold"])}
    _log("cache parts: " + "; ".join(f"{k} DER {v['der']:.3f} count {v['count_right']:.3f} one "
                                     f"{v['one_speaker_one_voice_all']:.3f}" for k, v in s.items()))
    from pipeline import Cascade

    cascade = Cascade.load()
    default_rt, candidate_rt = run_dev2(cascade, len(dev2), str(args.model), dev2)
    s["default"]["runtime"], s["candidate"]["runtime"] = summarise(default_rt), summarise(candidate_rt)
    start = time.perf_counter()
    clips_default = run_clips(cascade, args.clips, diarization=None)
    clips_candidate = run_clips(cascade, args.clips, diarization=DiarizationConfig(one_voice_model=str(args.model)))
    _log(f"corpus clips through both: {time.perf_counter() - start:.0f} s")
    s["default"]["clips"], s["candidate"]["clips"] = summarise(clips_default), summarise(clips_candidate)
    payload = {"round": 4, "n_dev2": len(dev2), "n_dev2_one": len(dev2_one), "model": model, "summary": s,
               "decisions": decisions, "decision": decide(s),
               "rows": {k: {"dev2": v[0], "dev2_one": v[1]} for k, v in results.items()},
               "runtime_rows": {"default": default_rt, "candidate": candidate_rt},
               "clips_rows": {"default": clips_default, "candidate": clips_candidate}}
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md; passes: {payload['decision']['passes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
