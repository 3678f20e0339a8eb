"""Compare gender models on one split, clean and under added noise.

``python -m studies.gender_robustness --models gender_model /tmp/other --split val``
scores every gender model folder (or hub id) on the gender-labelled rows of a
manifest split, first as recorded and then with pink noise and babble added at
several SNRs (:func:`training.noise.corrupt`, as in :mod:`studies.noise_study`:
added to the decoded 16 kHz clip before any preparation, SNR against the speech
part of the clip; babble of six LibriSpeech readers that gender training never
uses as noise). It prints a table and, with ``--out STEM``, writes ``STEM.md``
and ``STEM.json``. The comparisons made with it are in ``studies/gender_recipe/``.

This is how gender training recipes are compared: on ``val`` with models fitted
on ``train`` only. Scoring ``test`` is for reporting a recipe that was already
chosen (e.g. seed replicates of the shipped recipe), never for choosing.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from training.corpus import Utterance, read_manifest, spread
from training.reporting import command_line, write_report
from training.reporting import gender_training as describe  # how a model folder was trained (report header)

#: Noisy conditions scored after the clean one: (noise kind, SNR in dB).
DEFAULT_CONDITIONS = tuple((kind, snr) for kind in ("pink", "babble") for snr in (20.0, 10.0, 5.0, 0.0))


@dataclass(frozen=True)
class ConditionResult:
    """Gender accuracy of one model under one condition (``snr_db`` None when clean).

    ``per_corpus`` maps a corpus to ``[n, correct]``.
    """

    model: str
    noise: str
    snr_db: float | None
    n: int
    correct: int
    per_corpus: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def gender_clips(utterances: Sequence[Utterance], split: str, n: int | None = None) -> list[Utterance]:
    """Gender-labelled rows of ``split``; about ``n`` of them spread evenly when ``n`` is given."""
    rows = [u for u in utterances if u.split == split and u.gender in ("male", "female")]
    return spread(rows, n) if n else rows


def score(classifier, signals: Sequence[tuple[np.ndarray, int]], genders: Sequence[str]) -> np.ndarray:
    """Whether each of ``signals`` (raw ``(samples, sr)`` pairs) gets its gender from ``genders`` right.

    Returns a bool array ``[len(signals)]``; a clip :func:`pipeline.audio.prepare_signal` refuses counts as wrong.
    """
    from pipeline.audio import prepare_signal
    from pipeline.errors import AudioError
    from pipeline.gender import GENDER_LABELS

    prepared, kept = [], []
    for i, (y, sr) in enumerate(signals):
        try:
            prepared.append(prepare_signal(y, sr).samples)
            kept.append(i)
        except AudioError:
            pass
    right = np.zeros(len(signals), dtype=bool)
    if prepared:
        probs = classifier.predict_proba_batch(prepared)
        for i, p in zip(kept, probs):
            right[i] = GENDER_LABELS[int(np.argmax(p))] == genders[i]
    return right


def compare(models: Sequence[str], clips: Sequence[Utterance], *,
            conditions: Sequence[tuple[str, float]] = DEFAULT_CONDITIONS, progress: bool = False) -> list[ConditionResult]:
    """Score each of ``models`` (folders or hub ids) on ``clips``, clean and under each condition."""
    import soundfile as sf

    from pipeline.audio import to_mono_float
    from pipeline.gender import GenderClassifier
    from training.noise import NoiseCondition, babble_talkers, corrupt, make_babble

    manifest = read_manifest()
    babble = make_babble(babble_talkers(manifest), seconds=30.0)
    raw = []
    for u in clips:
        y, sr = sf.read(u.path, dtype="float32")
        raw.append((to_mono_float(y)[0], sr))
    genders = [u.gender for u in clips]
    corpora = np.array([u.corpus for u in clips])
    classifiers = {str(source): GenderClassifier.load(source) for source in models}
    results = []
    for noise, snr in [("clean", None), *conditions]:
        condition = NoiseCondition(noise, snr)
        # each noisy version is made once and scored by every model
        noisy = [(corrupt(y, condition, babble=babble, seed=i), sr) for i, (y, sr) in enumerate(raw)]
        for source, classifier in classifiers.items():
            right = score(classifier, noisy, genders)
            per_corpus = {c: [int((corpora == c).sum()), int(right[corpora == c].sum())] for c in sorted(set(corpora))}
            results.append(ConditionResult(source, noise, snr, len(clips), int(right.sum()), per_corpus))
            if progress:
                print(f"  {source} {condition.label}: {100 * results[-1].accuracy:.1f}%", file=sys.stderr, flush=True)
    order = list(classifiers)
    results.sort(key=lambda r: order.index(r.model))  # stable: per model, clean first, then the conditions
    return results


def to_markdown(results: Sequence[ConditionResult], *, split: str, n_clips: int) -> str:
    """One row per condition, one column per model (accuracy in %), plus the mean over noisy conditions.

    A first table says how each model was trained, where its folder records it.
    """
    models = list(dict.fromkeys(r.model for r in results))
    keys = list(dict.fromkeys((r.noise, r.snr_db) for r in results))
    table = {(r.model, r.noise, r.snr_db): r for r in results}
    lines = [f"# Gender accuracy under noise (`{split}` split, {n_clips} clips)", "",
             "Generated by `python -m studies.gender_robustness`. Noise added to the decoded clip before "
             "preparation; SNR against the speech part of the clip.", ""]
    described = {m: describe(m) for m in models}
    fields = list(dict.fromkeys(k for d in described.values() for k in d))
    if fields:
        lines += ["| training | " + " | ".join(f"`{m}`" for m in models) + " |",
                  "|---|" + "---|" * len(models)]
        lines += [f"| {f} | " + " | ".join(str(described[m].get(f, "")) for m in models) + " |" for f in fields]
        lines.append("")
    lines += ["| condition | " + " | ".join(f"`{m}`" for m in models) + " |",
             "|---|" + "---:|" * len(models)]
    for noise, snr in keys:
        label = "clean" if noise == "clean" else f"{noise} {snr:g} dB"
        lines.append(f"| {label} | " + " | ".join(f"{100 * table[(m, noise, snr)].accuracy:.1f}%" for m in models) + " |")
    means = [mean_noisy(results, m) for m in models]
    if any(r.noise != "clean" for r in results):
        lines.append("| mean of noisy conditions | " + " | ".join(f"{100 * v:.1f}%" for v in means) + " |")
    clean = {r.model: r for r in results if r.noise == "clean"}
    corpora = sorted({c for r in clean.values() for c in r.per_corpus})
    if corpora:
        lines += ["", "Clean clips per corpus (correct / clips):", "",
                  "| corpus | " + " | ".join(f"`{m}`" for m in models) + " |", "|---|" + "---:|" * len(models)]
        for c in corpora:
            cells = []
            for m in models:
                n, k = clean[m].per_corpus.get(c, [0, 0]) if m in clean else [0, 0]
                cells.append(f"{100 * k / n:.1f}% ({k}/{n})" if n else "")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_noisy(results: Sequence[ConditionResult], model: str) -> float:
    """Mean accuracy of ``model`` over its noisy (non-clean) conditions."""
    accs = [r.accuracy for r in results if r.model == model and r.noise != "clean"]
    return float(np.mean(accs)) if accs else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="gender model folders or hub ids")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--clips", type=int, default=None, help="score about this many clips, spread evenly")
    parser.add_argument("--clean-only", action="store_true", help="score the clean clips only")
    parser.add_argument("--out", default=None, metavar="STEM", help="write STEM.md and STEM.json")
    args = parser.parse_args(argv)
    clips = gender_clips(read_manifest(), args.split, args.clips)
    results = compare(args.models, clips, conditions=() if args.clean_only else DEFAULT_CONDITIONS, progress=True)
    text = to_markdown(results, split=args.split, n_clips=len(clips))
    print(text)
    if args.out:
        command = command_line("studies.gender_robustness", argv)
        payload = {"command": command, "split": args.split, "n_clips": len(clips),
                   "results": [{**asdict(r), "accuracy": r.accuracy} for r in results]}
        write_report(args.out, payload, text, command=command, config=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
