"""Grouping segments into voices: AHC vs AHC with gender evidence vs auto-tuned spectral clustering.

Protocol and decision rule: ``plan.md`` (written before the run). Usage::

    python -m studies.diarization_clustering            # evidence cached in cache/diarization/, then the grid

The conversations and the runtime evidence per segment (VAD regions, GE2E embeddings, ECAPA
P(female)) are those of :mod:`studies.diarization` (same seeds); only the grouping differs.
Scoring (DER with collars, voice count, gender per voice) is ``studies.diarization.study.score``'s.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.paths import PROJECT_ROOT

HERE = Path(__file__).resolve().parent
THRESHOLDS = [round(0.20 + 0.025 * i, 3) for i in range(17)]  # 0.20 .. 0.60
LAMBDAS = (0.25, 0.5, 1.0)
ONE_VOICE = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90)
MAX_VOICES = 8


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- groupings of the anchors

def ahc_groups(X: np.ndarray, female: np.ndarray, *, threshold: float, lam: float = 0.0) -> np.ndarray:
    """Average-linkage groups of unit vectors ``X [shape=(m, d)]``; distance ``cosine + lam * |dP(female)|``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(X) == 1:
        return np.zeros(1, int)
    d = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    if lam:
        f = np.nan_to_num(female, nan=0.5)
        d = d + lam * np.abs(f[:, None] - f[None, :])
    np.fill_diagonal(d, 0.0)
    tree = linkage(squareform(d, checks=False), method="average")
    return fcluster(tree, t=threshold, criterion="distance") - 1


def spectral_groups(X: np.ndarray, female: np.ndarray, *, one_voice: float, lam: float = 0.0,
                    max_voices: int = MAX_VOICES, seed: int = 0) -> np.ndarray:
    """NME-SC (Park et al. 2019): p-pruned cosine affinity, k by the normalised maximum eigengap, k-means.

    Returns the group of each of the ``m`` rows of ``X [shape=(m, d)]`` (all 0 for one voice).
    """
    from sklearn.cluster import KMeans

    m = len(X)
    sim = X @ X.T
    if m < 3 or sim[np.triu_indices(m, 1)].mean() >= one_voice:
        return np.zeros(m, int)
    if lam:
        f = np.nan_to_num(female, nan=0.5)
        sim = sim * (1.0 - lam * np.abs(f[:, None] - f[None, :]))
    k_max = min(max_voices, m - 1)
    best = None
    for p in range(1, max(2, m // 2) + 1):  # p neighbours kept per row
        a = np.zeros_like(sim)
        idx = np.argsort(-sim, axis=1)[:, :p + 1]  # itself included
        np.put_along_axis(a, idx, 1.0, axis=1)
        a = (a + a.T) / 2
        lap = np.diag(a.sum(1)) - a
        vals, vecs = np.linalg.eigh(lap)
        gaps = np.diff(vals[:k_max + 1])
        k = int(np.argmax(gaps[1:])) + 2 if len(gaps) > 1 else 2  # k >= 2: the "one voice" test came first
        ratio = (p / m) / max(gaps[k - 1], 1e-9)
        if best is None or ratio < best[0]:
            best = (ratio, k, vecs[:, :k])
        if p >= 20:  # enough neighbours for recordings of up to a few hundred anchors
            break
    _, k, emb = best
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(emb)


# --------------------------------------------------------------------------- evidence and scoring

def evidence(split: str, n: int, seed: int, cache_dir: Path) -> list:
    """``[(conversation, evidence)]`` of :func:`studies.diarization.study.build`, cached as a pickle."""
    path = cache_dir / f"{split}_{n}_seed{seed}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    import torch

    from pipeline.cascade import Cascade
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad
    from studies.diarization.study import build
    from training.corpus import read_manifest

    torch.set_num_threads(1)
    splits = {"dev": {"train", "val"}, "val": {"val"}, "test": {"test"}}[split]
    out = build(read_manifest(), splits, n, seed, Cascade.load(), SileroVad(), SpeakerEncoder(), _log)
    out = [(conv, {"regions": ev["regions"], "embeddings": ev["embeddings"], "female": ev["female"]}) for conv, ev in out]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def score_all(convs: list, grouping: Callable[[np.ndarray, np.ndarray], np.ndarray],
              transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict:
    """Summary (``studies.diarization.study.summarise``) of every conversation grouped by ``grouping``.

    ``transform(embeddings (n, 256), durations_s (n,)) -> (n, d)`` unit vectors replaces a
    recording's segment embeddings before grouping (round 2).
    """
    from pipeline.voices import anchor_segments, assign_voices
    from studies.diarization.study import score, summarise

    rows = []
    for conv, ev in convs:
        durations = np.array([r.duration_s for r in ev["regions"]])
        labels = None
        if len(durations):
            emb = np.asarray(ev["embeddings"], np.float64)
            if transform is not None:
                emb = transform(emb, durations)
            anchors = anchor_segments(durations)
            groups = grouping(emb[anchors], np.asarray(ev["female"])[anchors])
            labels = assign_voices(emb, durations, anchors, groups)
        rows.append(score(conv, ev, threshold=0.0, min_voice_s=3.0, labels=labels))
    return summarise(rows)


def variants() -> dict[str, dict[str, Callable]]:
    """Every setting of every variant of the plan: ``{variant: {setting: grouping}}``."""
    out: dict[str, dict[str, Callable]] = {"A shipped": {"threshold 0.35": lambda X, f: ahc_groups(X, f, threshold=0.35)}}
    out["B AHC + gender"] = {f"lam {lam}, threshold {t}": (lambda X, f, t=t, lam=lam: ahc_groups(X, f, threshold=t, lam=lam))
                             for lam in LAMBDAS for t in THRESHOLDS}
    out["C spectral"] = {f"one voice >= {s}": (lambda X, f, s=s: spectral_groups(X, f, one_voice=s)) for s in ONE_VOICE}
    out["D spectral + gender"] = {f"lam {lam}, one voice >= {s}": (lambda X, f, s=s, lam=lam: spectral_groups(X, f, one_voice=s, lam=lam))
                                  for lam in LAMBDAS for s in ONE_VOICE}
    return out


def choose(results: dict[str, dict], n: int = 80) -> str:
    """The setting with the best voice count, ties within one conversation (1/n) by the lower DER."""
    best = max(r["all"]["count_right"] for r in results.values())
    tied = {k: r for k, r in results.items() if r["all"]["count_right"] >= best - 1 / n + 1e-9}
    return min(tied, key=lambda k: tied[k]["all"]["collar_0.25_der"])


def compare(dev: list, test: list, candidates: dict[str, tuple[Callable | None, dict[str, Callable]]]) -> dict:
    """Each variant's setting chosen on ``dev`` (:func:`choose`), scored on ``test``; then the plan's rule.

    ``candidates``: ``{variant: (transform or None, {setting: grouping})}``; ``"A shipped"`` is the baseline.
    Returns ``{"variants": {...}, "decision": {"best_contender", "ships"}}``.
    """
    out: dict = {"variants": {}}
    for name, (transform, settings) in candidates.items():
        dev_results = {k: score_all(dev, g, transform) for k, g in settings.items()}
        chosen = choose(dev_results, n=len(dev))
        out["variants"][name] = {"chosen": chosen, "dev": dev_results[chosen]["all"],
                                 "test": score_all(test, settings[chosen], transform),
                                 "dev_grid": {k: r["all"] for k, r in dev_results.items()}}
        _log(f"{name}: {chosen}: dev count {dev_results[chosen]['all']['count_right']:.3f}")
    shipped = out["variants"]["A shipped"]["dev"]
    contenders = {k: v for k, v in out["variants"].items() if k != "A shipped"}
    best = max(contenders, key=lambda k: (contenders[k]["dev"]["count_right"], -contenders[k]["dev"]["collar_0.25_der"]))
    wins = (contenders[best]["dev"]["count_right"] - shipped["count_right"] >= 0.05
            and contenders[best]["dev"]["collar_0.25_der"] <= shipped["collar_0.25_der"])
    out["decision"] = {"best_contender": best, "ships": best if wins else "A shipped"}
    return out


# --------------------------------------------------------------------------- round 2: other embeddings

WIDE_THRESHOLDS = [round(0.05 + 0.025 * i, 3) for i in range(37)]  # 0.05 .. 0.95
LDA_DIMS = (32, 64, 128)


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def mean_removed(emb: np.ndarray, durations_s: np.ndarray) -> np.ndarray:
    """Segment embeddings ``(n, d)`` minus their duration-weighted mean, renormalised (variant E; now in the runtime)."""
    from pipeline.voices import centre_embeddings

    return centre_embeddings(emb, durations_s)


def fit_lda(cache: Path, *, min_clips: int = 5):
    """LDA on the GE2E embeddings of every ``train`` clip, speakers with >= ``min_clips`` clips (variant F)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from training.corpus import read_manifest

    stored = np.load(cache, allow_pickle=False)
    vectors = dict(zip(stored["paths"].tolist(), stored["embeddings"]))
    rows = [u for u in read_manifest() if u.split == "train" and u.relpath in vectors]
    counts: dict[str, int] = {}
    for u in rows:
        counts[u.speaker] = counts.get(u.speaker, 0) + 1
    rows = [u for u in rows if counts[u.speaker] >= min_clips]
    X = np.stack([vectors[u.relpath] for u in rows]).astype(np.float64)
    y = np.array([u.speaker for u in rows])
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(X, y)
    return lda, {"clips": len(rows), "speakers": int(np.unique(y).size)}


def round2_variants(lda) -> dict[str, tuple[Callable | None, dict[str, Callable]]]:
    """``{variant: (transform, {setting: grouping})}`` of round 2 (all AHC)."""
    def ahc(t: float) -> Callable:
        return lambda X, f: ahc_groups(_unit(X), f, threshold=t)

    def projected(dims: int, centre: bool) -> Callable:
        def transform(emb: np.ndarray, durations_s: np.ndarray) -> np.ndarray:
            z = _unit(lda.transform(emb)[:, :dims])
            return mean_removed(z, durations_s) if centre else z
        return transform

    grid = {f"threshold {t}": ahc(t) for t in WIDE_THRESHOLDS}
    out: dict = {"A shipped": (None, {"threshold 0.35": ahc(0.35)}), "E mean removed": (mean_removed, grid)}
    for dims in LDA_DIMS:
        out[f"F LDA {dims}"] = (projected(dims, False), grid)
        out[f"G LDA {dims} + mean removed"] = (projected(dims, True), grid)
    return out


def run_round2(args) -> int:
    from studies.diarization_clustering.report import render_round2
    from training.reporting import write_report

    t0 = time.time()
    dev = evidence("val", 60, 4, args.cache)
    test = evidence("test", args.test, 2, args.cache)
    lda, lda_info = fit_lda(args.ge2e_cache)
    _log(f"evidence and LDA ready in {time.time() - t0:.0f} s ({lda_info})")
    payload: dict = {"lda": lda_info, "dev_conversations": len(dev), **compare(dev, test, round2_variants(lda))}
    out = args.out.with_name(args.out.name + "_round2")
    write_report(out, payload, render_round2(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {out}.md in {time.time() - t0:.0f} s")
    return 0


def run_round3(args) -> int:
    """A (0.35) vs E (mean removed, 0.925), settings frozen, on 80 fresh `val` conversations (seed 5)."""
    from training.reporting import pct, write_report

    fresh = evidence("val", 80, 5, args.cache)
    test = evidence("test", args.test, 2, args.cache)
    frozen = {"A shipped": (None, lambda X, f: ahc_groups(X, f, threshold=0.35)),
              "E mean removed": (mean_removed, lambda X, f: ahc_groups(_unit(X), f, threshold=0.925))}
    results = {name: {"val_fresh": score_all(fresh, g, t), "test": score_all(test, g, t)} for name, (t, g) in frozen.items()}
    a, e = results["A shipped"]["val_fresh"]["all"], results["E mean removed"]["val_fresh"]["all"]
    ships = "E mean removed" if (a["collar_0.25_der"] - e["collar_0.25_der"] >= 0.02
                                  and e["count_right"] >= a["count_right"]) else "A shipped"
    payload = {"results": results, "decision": {"ships": ships}}
    lines = ["# Round 3: recording-mean removal confirmed on fresh conversations?", "",
             "Generated by `python -m studies.diarization_clustering --round 3` (plan: `plan.md`, round 3). Settings "
             "frozen from round 2; 80 new conversations of `val` speakers (seed 5); `test` for the record.", "",
             "| variant | set | DER (0.25 s) | confusion | DER (no collar) | voices right | gender per voice |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, sets in results.items():
        for key, label in (("val_fresh", "80 fresh val"), ("test", "100 test")):
            r = sets[key]["all"]
            lines.append(f"| {name} | {label} | {pct(r['collar_0.25_der'])} | {pct(r['collar_0.25_confusion'])} | "
                         f"{pct(r['collar_0_der'])} | {pct(r['count_right'])} | {pct(r['gender_per_voice'])} |")
    lines += ["", f"Rule (E's DER at least 2 points lower, voice count not lower, on the fresh val set): ships **{ships}**.", "",
              f"By conversation type on `test`, {ships}:", "",
              "| type | n | DER (0.25 s) | voices right | gender per voice |", "|---|---:|---:|---:|---:|"]
    for kind, r in results[ships]["test"].items():
        lines.append(f"| {kind} | {r['conversations']} | {pct(r['collar_0.25_der'])} | {pct(r['count_right'])} | "
                     f"{pct(r['gender_per_voice'])} |")
    out = args.out.with_name(args.out.name + "_round3")
    write_report(out, payload, "\n".join(lines) + "\n", config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {out}.md: ships {ships}")
    return 0


def labels_a(emb: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """The grouping shipped before round 4 (A): the runtime's first cut alone (0.35)."""
    from pipeline.voices import cluster_voices

    return cluster_voices(emb, dur, threshold=0.35, centred_threshold=None)


def labels_e(emb: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Round 2's E: the runtime's cut at 0.925 on the embeddings with the recording's mean removed."""
    from pipeline.voices import cluster_voices

    return cluster_voices(mean_removed(emb, dur), dur, threshold=0.925, centred_threshold=None)


def labels_h(emb: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Round 4's H, as shipped: A's answer when it finds one voice, E's otherwise."""
    from pipeline.voices import cluster_voices

    return cluster_voices(emb, dur, threshold=0.35, centred_threshold=0.925)


def score_labels(convs: list, labeller: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict:
    """Like :func:`score_all`, with the voice of every segment from ``labeller(embeddings, durations)``."""
    from studies.diarization.study import score, summarise

    rows = []
    for conv, ev in convs:
        durations = np.array([r.duration_s for r in ev["regions"]])
        labels = labeller(np.asarray(ev["embeddings"], np.float64), durations) if len(durations) else None
        rows.append(score(conv, ev, threshold=0.0, min_voice_s=3.0, labels=labels))
    return summarise(rows)


def one_voice_counts(split: str, n: int, seed: int, labellers: dict[str, Callable]) -> dict[str, list[int]]:
    """Voices found by each labeller in ``n`` recordings of one ``split`` speaker (20-90 s, pauses 0.2-2 s)."""
    import torch

    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad
    from pipeline.voices import embed_segments
    from studies.diarization.study import speakers_of
    from training.conversations import ClipCache
    from training.corpus import read_manifest

    torch.set_num_threads(1)
    rng, cache, vad, encoder = np.random.default_rng(seed), ClipCache(), SileroVad(), SpeakerEncoder()
    speakers = {k: v for k, v in speakers_of(read_manifest(), {split}).items() if len(v) >= 3}
    names = sorted(speakers)
    found: dict[str, list[int]] = {k: [] for k in labellers}
    for i in range(n):
        utts = speakers[names[int(rng.integers(len(names)))]]
        pieces, total = [], 0
        target = rng.uniform(20, 90) * 16000
        for j in rng.permutation(len(utts)).tolist() * 20:
            clip = cache.get(utts[j])
            pieces += [clip, (10 ** (-70 / 20) * rng.standard_normal(int(rng.uniform(0.2, 2.0) * 16000))).astype(np.float32)]
            total += clip.size
            if total >= target:
                break
        y = np.concatenate(pieces)
        regions = vad.segments(y)
        if not regions:
            continue
        emb = embed_segments(encoder, y, regions).astype(np.float64)
        dur = np.array([r.duration_s for r in regions])
        for k, f in labellers.items():
            found[k].append(int(f(emb, dur).max()) + 1)
        _log(f"one voice ({split}) {i + 1}/{n}: {len(regions)} segments, " + ", ".join(f"{k} {v[-1]}" for k, v in found.items()))
    return found


def _one_voice_summary(found: dict[str, list[int]]) -> dict:
    return {k: {"recordings": len(v), "one_voice_right": float(np.mean(np.array(v) == 1)),
                "mean_voices": float(np.mean(v)), "max_voices": int(max(v))} for k, v in found.items()}


def run_round4(args) -> int:
    from training.reporting import pct, write_report

    fresh = evidence("val", 80, 5, args.cache)
    test = evidence("test", args.test, 2, args.cache)
    labellers = {"A shipped": labels_a, "H one voice first, then E": labels_h}
    conv = {k: {"val_fresh": score_labels(fresh, f), "test": score_labels(test, f)} for k, f in labellers.items()}
    one = {"val": _one_voice_summary(one_voice_counts("val", 40, 7, labellers)),
           "test": _one_voice_summary(one_voice_counts("test", 40, 6, labellers))}
    a, h = conv["A shipped"]["val_fresh"]["all"], conv["H one voice first, then E"]["val_fresh"]["all"]
    ships = ("H one voice first, then E" if (a["collar_0.25_der"] - h["collar_0.25_der"] >= 0.02
                                             and h["count_right"] >= a["count_right"]
                                             and one["val"]["H one voice first, then E"]["mean_voices"]
                                             <= one["val"]["A shipped"]["mean_voices"] + 0.5) else "A shipped")
    lines = ["# Round 4: one voice first, then the recording-mean-removed grouping", "",
             "Generated by `python -m studies.diarization_clustering --round 4` (plan: `plan.md`, round 4).", "",
             "| grouping | conversations | DER (0.25 s) | confusion | voices right | gender per voice |",
             "|---|---|---:|---:|---:|---:|"]
    for k, sets in conv.items():
        for key, label in (("val_fresh", "80 val (seed 5)"), ("test", "100 test")):
            r = sets[key]["all"]
            lines.append(f"| {k} | {label} | {pct(r['collar_0.25_der'])} | {pct(r['collar_0.25_confusion'])} | "
                         f"{pct(r['count_right'])} | {pct(r['gender_per_voice'])} |")
    lines += ["", "| grouping | one-voice recordings | one voice found | mean voices | most voices |", "|---|---|---:|---:|---:|"]
    for split, summary in one.items():
        for k, v in summary.items():
            lines.append(f"| {k} | {v['recordings']} {split} | {pct(v['one_voice_right'])} | {v['mean_voices']:.2f} | {v['max_voices']} |")
    lines += ["", f"Rule (DER at least 2 points lower and voice count not lower on the 80 val conversations; "
              f"mean voices on one-voice val recordings at most A's + 0.5): ships **{ships}**.", "",
              f"By conversation type on `test`, {ships}:", "",
              "| type | n | DER (0.25 s) | voices right | gender per voice |", "|---|---:|---:|---:|---:|"]
    for kind, r in conv[ships]["test"].items():
        lines.append(f"| {kind} | {r['conversations']} | {pct(r['collar_0.25_der'])} | {pct(r['count_right'])} | "
                     f"{pct(r['gender_per_voice'])} |")
    out = args.out.with_name(args.out.name + "_round4")
    write_report(out, {"conversations": conv, "one_voice": one, "decision": {"ships": ships}}, "\n".join(lines) + "\n",
                 config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {out}.md: ships {ships}")
    return 0


def one_voice_check(args) -> int:
    """How many voices A and E find in recordings of ONE voice (test speakers, 20-90 s, pauses 0.2-2 s; seed 6)."""
    from training.reporting import write_report

    found = one_voice_counts("test", args.one_voice, 6, {"A shipped": labels_a, "E mean removed": labels_e})
    summary = _one_voice_summary(found)
    lines = ["# One-voice recordings: voices found", "",
             f"Generated by `python -m studies.diarization_clustering --one-voice {args.one_voice}`: recordings of one "
             "`test` speaker (20-90 s of their clips with 0.2-2 s pauses, seed 6) through silero-vad, GE2E and each grouping.",
             "", "| grouping | recordings | one voice found | mean voices | most voices |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['recordings']} | {100 * v['one_voice_right']:.0f}% | {v['mean_voices']:.2f} | {v['max_voices']} |"
              for k, v in summary.items()]
    write_report(args.out.with_name(args.out.name + "_one_voice"), {"summary": summary, "found": found},
                 "\n".join(lines) + "\n", config={k: str(v) for k, v in vars(args).items()})
    _log(str(summary))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.diarization_clustering", description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=80)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "cache" / "diarization")
    parser.add_argument("--out", type=Path, default=HERE / "report")
    parser.add_argument("--round", type=int, choices=(1, 2, 3, 4), default=1,
                        help="1: clusterings; 2: embeddings; 3: confirmation of round 2's best; 4: one voice first (plan.md)")
    parser.add_argument("--one-voice", type=int, default=0, metavar="N",
                        help="instead: N one-voice recordings through the shipped grouping and round 2's E")
    parser.add_argument("--ge2e-cache", type=Path, default=PROJECT_ROOT / "cache" / "ge2e" / "embeddings.npz",
                        help="GE2E embeddings of every manifest clip (studies.ge2e_gender), for round 2's LDA")
    args = parser.parse_args(argv)
    if args.one_voice:
        return one_voice_check(args)
    if args.round == 2:
        return run_round2(args)
    if args.round == 3:
        return run_round3(args)
    if args.round == 4:
        return run_round4(args)
    from studies.diarization_clustering.report import render
    from training.reporting import write_report

    t0 = time.time()
    dev = evidence("dev", args.dev, 1, args.cache)
    test = evidence("test", args.test, 2, args.cache)
    _log(f"evidence ready in {time.time() - t0:.0f} s")
    payload = compare(dev, test, {name: (None, settings) for name, settings in variants().items()})
    write_report(args.out, payload, render(payload), config={k: str(v) for k, v in vars(args).items()})
    _log(f"wrote {args.out}.md in {time.time() - t0:.0f} s")
    return 0
