"""Voice pitch (F0) per corpus and gender: how far each corpus's men and women sit from the others.

Usage::

    python -m studies.corpus_pitch                  # 80 clips per corpus x gender -> studies/corpus_pitch/report.*
    python -m studies.corpus_pitch \
        --models artifacts/gender_holdout/ased_channel artifacts/gender_holdout/librispeech_channel

A gender model learns where men's and women's voices lie *in its training
corpora*. Held out of training, Amharic men (ASED) are called women and women
reading audiobooks (LibriSpeech) are called men (``studies/gender_holdout/report.md``).
This report measures the most obvious cause: each clip's median F0 (probabilistic
YIN, ``librosa.pyin``, 60-500 Hz, voiced frames only), summarised per corpus and
gender, with the share of clips on the "wrong" side of 165 Hz, a common
male/female boundary for adult speech.

With ``--models``, each gender model trained without some corpora
(``python -m training.gender_train --exclude-corpus``) also scores the measured
clips of the corpora it never saw, and the report gives its accuracy on each side
of the boundary: if pitch is what misleads it, the clips on the other gender's
side should be the ones it gets wrong.

Clips are prepared exactly as for the models (:func:`pipeline.audio.load_audio`).
Up to ``--clips`` per corpus x gender are drawn round-robin over speakers with a
fixed seed, so every speaker counts and the run takes a few minutes.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.corpus import Utterance, read_manifest
from training.pitch import clip_median_f0
from training.reporting import command_line, excluded_corpora, write_report

#: Median F0 (Hz) that commonly separates adult male from adult female speech.
BOUNDARY_HZ = 165.0
#: Where the report goes by default, beside this module.
STUDY_DIR = Path(__file__).resolve().parent


@dataclass
class GroupPitch:
    """Median-F0 statistics of one corpus x gender group.

    Attributes:
        corpus, gender: the group.
        clips, speakers: clips measured (with enough voiced frames) and their speakers.
        median_hz: median over clips of the clip's median F0, Hz.
        p25_hz, p75_hz: quartiles of the clips' median F0, Hz.
        wrong_side: share of clips whose median F0 lies on the other gender's side of
            :data:`BOUNDARY_HZ` (men above it, women below it).
    """

    corpus: str
    gender: str
    clips: int
    speakers: int
    median_hz: float
    p25_hz: float
    p75_hz: float
    wrong_side: float


def sample_rows(rows: Sequence[Utterance], per_group: int, *, seed: int = 0) -> list[Utterance]:
    """Up to ``per_group`` rows per (corpus, gender), taken round-robin over speakers in a seeded order."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for u in rows:
        groups[(u.corpus, u.gender)][u.speaker].append(u)
    out = []
    for key in sorted(groups):
        speakers = sorted(groups[key])
        queues = {s: [groups[key][s][i] for i in rng.permutation(len(groups[key][s]))] for s in speakers}
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        picked: list[Utterance] = []
        while len(picked) < per_group and any(queues.values()):
            for s in order:
                if queues[s] and len(picked) < per_group:
                    picked.append(queues[s].pop())
        out += picked
    return out


def summarise(rows: Sequence[Utterance], f0: Sequence[float | None]) -> list[GroupPitch]:
    """One :class:`GroupPitch` per (corpus, gender) from per-clip median F0 values (``None`` skipped)."""
    groups: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    for u, value in zip(rows, f0):
        if value is not None:
            groups[(u.corpus, u.gender)].append((u.speaker, value))
    out = []
    for (corpus, gender), items in sorted(groups.items()):
        values = np.array([v for _, v in items])
        wrong = values > BOUNDARY_HZ if gender == "male" else values < BOUNDARY_HZ
        p25, p50, p75 = np.percentile(values, [25, 50, 75])
        out.append(GroupPitch(corpus, gender, len(values), len({s for s, _ in items}), float(p50), float(p25),
                              float(p75), float(wrong.mean())))
    return out


@dataclass
class SideAccuracy:
    """A held-out gender model's accuracy on one corpus x gender group, split at :data:`BOUNDARY_HZ`.

    Attributes:
        model: the model folder; corpus, gender: the group (a corpus the model never saw).
        usual_n, usual_correct: clips on their own gender's side (men below, women above).
        other_n, other_correct: clips on the other gender's side.
    """

    model: str
    corpus: str
    gender: str
    usual_n: int
    usual_correct: int
    other_n: int
    other_correct: int


def side_accuracy(model: str, rows: Sequence[Utterance], f0: Sequence[float | None],
                  predicted: Sequence[str | None]) -> list[SideAccuracy]:
    """Per (corpus, gender): ``predicted`` gender labels scored on each side of the boundary (``None`` skipped)."""
    cells: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for u, value, guess in zip(rows, f0, predicted):
        if value is None or guess is None:
            continue
        other = value > BOUNDARY_HZ if u.gender == "male" else value < BOUNDARY_HZ
        cell = cells[(u.corpus, u.gender)]
        cell[2 * other] += 1
        cell[2 * other + 1] += int(guess == u.gender)
    return [SideAccuracy(model, c, g, *cells[(c, g)]) for c, g in sorted(cells)]


def _share(correct: int, n: int) -> str:
    return f"{100 * correct / n:.0f}% ({correct}/{n})" if n else "–"


def to_markdown(groups: Sequence[GroupPitch], *, command: str, sides: Sequence[SideAccuracy] = ()) -> str:
    lines = [
        "# Voice pitch per corpus and gender", "",
        f"Generated by `{command}`. Each clip's median F0 (`librosa.pyin`, 60-500 Hz, voiced frames) after the "
        f"models' own preparation; clips drawn round-robin over speakers. *Other side of {BOUNDARY_HZ:.0f} Hz*: "
        "men above it, women below it.", "",
        "| corpus | gender | clips | speakers | median F0 | quartiles | other side of "
        f"{BOUNDARY_HZ:.0f} Hz |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for g in groups:
        lines.append(f"| {g.corpus} | {g.gender} | {g.clips} | {g.speakers} | {g.median_hz:.0f} Hz "
                     f"| {g.p25_hz:.0f}-{g.p75_hz:.0f} Hz | {100 * g.wrong_side:.0f}% |")
    if sides:
        lines += ["", "## Gender models that never saw the corpus, by pitch", "",
                  "Accuracy of a model trained without the corpus on the clips above, split at "
                  f"{BOUNDARY_HZ:.0f} Hz: *usual side* is men below and women above it.", "",
                  "| model | corpus | gender | usual side | other side |", "|---|---|---|---:|---:|"]
        for a in sides:
            lines.append(f"| `{a.model}` | {a.corpus} | {a.gender} | {_share(a.usual_correct, a.usual_n)} "
                         f"| {_share(a.other_correct, a.other_n)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.corpus_pitch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=80, help="clips per corpus x gender (default 80)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.md and STEM.json (default studies/corpus_pitch/report)")
    parser.add_argument("--models", nargs="*", default=[], metavar="DIR",
                        help="gender models trained with --exclude-corpus: scored on the corpora they never saw")
    args = parser.parse_args(argv)
    if args.clips < 1:
        print("error: --clips must be at least 1", file=sys.stderr)
        return 2
    from pipeline.audio import load_audio
    from pipeline.errors import PipelineError
    unseen = {m: excluded_corpora(m) for m in args.models}
    bad = [m for m, corpora in unseen.items() if not corpora]
    if bad:
        print(f"error: {', '.join(bad)}: not a gender model folder trained with --exclude-corpus", file=sys.stderr)
        return 2
    from pipeline.gender import GenderClassifier

    classifiers = {m: GenderClassifier.load(m) for m in args.models}
    rows = sample_rows([u for u in read_manifest() if u.gender in ("male", "female")], args.clips, seed=args.seed)
    f0: list[float | None] = []
    predicted: dict[str, list] = {m: [] for m in args.models}
    for i, u in enumerate(rows, 1):
        try:
            y = load_audio(u.path).samples
        except PipelineError:
            y = None
        f0.append(None if y is None else clip_median_f0(y))
        for m, classifier in classifiers.items():
            scored = y is not None and u.corpus in unseen[m]
            predicted[m].append(classifier.predict(y) if scored else None)
        if i % 100 == 0:
            print(f"  {i}/{len(rows)} clips", file=sys.stderr, flush=True)
    groups = summarise(rows, f0)
    sides = [a for m in args.models for a in side_accuracy(m, rows, f0, predicted[m])]
    command = command_line("studies.corpus_pitch", argv)
    text = to_markdown(groups, command=command, sides=sides)
    write_report(args.out, {"command": command, "boundary_hz": BOUNDARY_HZ, "groups": [asdict(g) for g in groups],
                            "held_out_models": [asdict(a) for a in sides]}, text, command=command, config=args)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
