"""Gender accuracy on whole corpora a model never saw: the held-out-corpus check.

The ``test`` split holds new *speakers* of corpora the shipped model was trained
on. Users' recordings also bring a new language, microphone, room and speaking
style. To measure that, a model is trained with the shipped recipe on every
corpus but one (``python -m training.gender_train --exclude-corpus ased ...``)
and scored here on every gender-labelled row of the corpus it never saw:

    python -m studies.gender_holdout --models /tmp/gHO_ased /tmp/gHO_ravdess \\
        --reference gender_model --out studies/gender_holdout/report

For each held-out corpus the report gives accuracy over all its rows (with a
95% bootstrap interval over speakers), per gender, per arousal, and per speaker:
how many speakers are called right on most of their clips and which speakers
fall below :data:`WEAK_SPEAKER`. On that corpus's ``test`` rows it sets the
held-out model beside the ``--reference`` model (the shipped one, which saw the
corpus's other speakers), so the cost of a new corpus is read on the same clips.
Last, the reference model's per-speaker view of the whole ``test`` split shows
whether its errors are spread out or sit with a few voices.

Nothing is chosen on these numbers: they describe a recipe already fixed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.corpus import Utterance, read_manifest
from training.reporting import command_line, excluded_corpora, pct, write_report
from training.reporting import gender_training as describe

#: Where the reports go by default, beside this module.
STUDY_DIR = Path(__file__).resolve().parent

#: A speaker whose clips are called right less often than this is listed by name.
WEAK_SPEAKER = 0.9

#: What each corpus brings that the others do not (report column).
CORPUS_STYLE = {
    "ased": "Amharic; emotional sentences read by non-actors in their own rooms (Opus)",
    "emovo": "Italian; acted emotions, studio (Opus)",
    "librispeech": "English; read audiobooks, one utterance per reader",
    "ravdess": "North-American English; acted emotions, studio",
    "savee": "British English; acted emotions, studio; male speakers only",
}


@dataclass(frozen=True)
class WeakSpeaker:
    """A speaker called right on fewer than :data:`WEAK_SPEAKER` of ``n`` clips."""

    speaker: str
    gender: str
    n: int
    accuracy: float


@dataclass(frozen=True)
class SpeakerView:
    """Per-speaker summary of one scoring: errors spread out, or a few voices?

    ``mostly_right`` counts speakers with more than half of their clips right;
    ``weak`` lists the speakers below :data:`WEAK_SPEAKER`, worst first;
    ``share_of_errors_in_weak`` is the fraction of all wrong clips that belong to them.
    """

    n_speakers: int
    mostly_right: int
    weak: list[WeakSpeaker]
    share_of_errors_in_weak: float


@dataclass(frozen=True)
class HoldoutResult:
    """One model scored on one set of rows of one corpus.

    ``rows`` is ``"all"`` (every gender-labelled row of the corpus) or ``"test"``;
    ``held_out`` says whether the corpus was left out of the model's training;
    ``metrics`` is :func:`training.gender_eval.evaluate_gender`'s dict; ``interval``
    the 95% speaker-bootstrap interval of the accuracy (``[low, high]``).
    """

    model: str
    corpus: str
    rows: str
    held_out: bool
    metrics: dict
    interval: list[float]
    speakers: SpeakerView


def speaker_view(metrics: dict, rows: Sequence[Utterance]) -> SpeakerView:
    """Summarise ``metrics["per_speaker"]`` (from :func:`~training.gender_eval.evaluate_gender`) of ``rows``."""
    gender_of = {u.speaker: u.gender for u in rows}
    per = metrics["per_speaker"]
    weak = sorted(
        (WeakSpeaker(s, gender_of.get(s, ""), c["n"], c["accuracy"]) for s, c in per.items()
         if c["n"] and c["correct"] / c["n"] < WEAK_SPEAKER),
        key=lambda w: (w.accuracy, w.speaker),
    )
    wrong = sum(c["n"] - c["correct"] for c in per.values())
    wrong_in_weak = sum(per[w.speaker]["n"] - per[w.speaker]["correct"] for w in weak)
    return SpeakerView(
        n_speakers=len(per),
        mostly_right=sum(1 for c in per.values() if c["n"] and 2 * c["correct"] > c["n"]),
        weak=weak,
        share_of_errors_in_weak=wrong_in_weak / wrong if wrong else 0.0,
    )


def speaker_interval(metrics: dict, *, n_boot: int = 2000) -> list[float]:
    """95% bootstrap interval over speakers of the accuracy in ``metrics`` (``[low, high]``)."""
    from training.stats import speaker_bootstrap

    per = metrics["per_speaker"]
    if not per:
        return [float("nan"), float("nan")]
    groups = np.concatenate([[s] * c["n"] for s, c in per.items()])
    hits = np.concatenate([np.r_[np.ones(c["correct"]), np.zeros(c["n"] - c["correct"])] for c in per.values()])
    interval = speaker_bootstrap(groups, lambda idx: float(hits[idx].mean()), n_boot=n_boot)
    return [round(interval.low, 4), round(interval.high, 4)]


def score(classifier, model: str, corpus: str, rows_name: str, rows: Sequence[Utterance], signals: Sequence,
          *, held_out: bool) -> HoldoutResult:
    """Score ``classifier`` on ``rows`` (with their loaded ``signals``) and summarise it."""
    from training.gender_eval import evaluate_gender

    metrics = evaluate_gender(classifier, rows, signals=signals)
    return HoldoutResult(model, corpus, rows_name, held_out, metrics, speaker_interval(metrics),
                         speaker_view(metrics, rows))


def run(models: Sequence[str], reference: str | None, *, progress: bool = True) -> list[HoldoutResult]:
    """Score each held-out model on its excluded corpora, and ``reference`` beside it on their ``test`` rows.

    With ``reference``, the last result is the reference on the whole ``test`` split
    (corpus ``"all"``), for its per-speaker view.
    """
    from pipeline.gender import GenderClassifier
    from training.gender_signals import gender_rows, load_signals

    manifest = [u for u in read_manifest() if u.gender in ("male", "female")]
    for m in models:
        if not Path(m).is_dir():
            raise ValueError(f"{m} is not a gender model folder")
    plan = {str(m): excluded_corpora(m) for m in models}
    for m, corpora in plan.items():
        if not corpora:
            raise ValueError(f"{m} was trained on every corpus (no training.excluded_corpora in its metadata.json); "
                             "train one with `python -m training.gender_train --exclude-corpus CORPUS`")
    signals = {}

    def rows_and_signals(corpus: str) -> tuple[list[Utterance], list]:
        if corpus not in signals:
            rows = [u for u in manifest if u.corpus == corpus]
            signals[corpus] = (rows, load_signals(rows, log_every=0))
        return signals[corpus]

    ref = GenderClassifier.load(reference) if reference else None
    results = []
    for model, corpora in plan.items():
        classifier = GenderClassifier.load(model)
        for corpus in corpora:
            rows, sigs = rows_and_signals(corpus)
            if progress:
                print(f"{model}: {len(rows)} {corpus} clips", file=sys.stderr, flush=True)
            test = [i for i, u in enumerate(rows) if u.split == "test"]
            results.append(score(classifier, model, corpus, "all", rows, sigs, held_out=True))
            results.append(score(classifier, model, corpus, "test", [rows[i] for i in test],
                                 [sigs[i] for i in test], held_out=True))
            if ref is not None:
                results.append(score(ref, str(reference), corpus, "test", [rows[i] for i in test],
                                     [sigs[i] for i in test], held_out=corpus in excluded_corpora(reference)))
    if ref is not None:
        test_rows = gender_rows(manifest, "test")
        results.append(score(ref, str(reference), "all", "test", test_rows, load_signals(test_rows, log_every=0),
                             held_out=False))
    return results


def _cell(metrics: dict, section: str, key: str | None = None) -> str:
    """``accuracy (correct/n)`` of ``metrics[section][key]`` (``metrics[section]`` when ``key`` is None)."""
    c = metrics.get(section) if key is None else metrics.get(section, {}).get(key)
    return f"{pct(c['accuracy'])} ({c['correct']}/{c['n']})" if c and c["n"] else "–"


#: At most this many weak speakers are named in the Markdown report (all are in the JSON).
MAX_NAMED = 8


def _weak_list(view: SpeakerView) -> str:
    """The weakest speakers by name (at most :data:`MAX_NAMED`), then how many more and of which gender."""
    if not view.weak:
        return "none"
    named = "; ".join(f"{w.speaker} ({w.gender}, {pct(w.accuracy)} of {w.n})" for w in view.weak[:MAX_NAMED])
    rest = view.weak[MAX_NAMED:]
    if rest:
        by_gender = ", ".join(f"{sum(w.gender == g for w in rest)} {g}" for g in ("female", "male")
                              if any(w.gender == g for w in rest))
        named += f"; and {len(rest)} more ({by_gender})"
    return named


def to_markdown(results: Sequence[HoldoutResult], *, command: str) -> str:
    """The report: held-out corpora, the same ``test`` rows seen vs unseen, the reference's speakers."""
    held = [r for r in results if r.held_out and r.rows == "all"]
    lines = [
        "# Gender on corpora the model never saw",
        "",
        f"Generated by `{command}`. Each held-out model is trained by `python -m training.gender_train "
        "--exclude-corpus CORPUS` with one corpus left out, so every speaker, the language, the microphones and the "
        "speaking style of that corpus are new to it. Intervals: 95% bootstrap over speakers. Nothing was chosen on "
        "these numbers.",
        "",
        *[f"- `{r.model}` (without {r.corpus}): " + ", ".join(f"{k} {v}" for k, v in describe(r.model).items())
          for r in held],
        "",
        "## Every row of the held-out corpus",
        "",
        "| held out | what is new | clips | speakers | accuracy | 95% interval | female | male "
        "| male, high arousal | female, low arousal | speakers mostly right |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in held:
        m = r.metrics
        lines.append(
            f"| {r.corpus} | {CORPUS_STYLE.get(r.corpus, '')} | {m['overall']['n']} | {r.speakers.n_speakers} "
            f"| {pct(m['overall']['accuracy'])} | {pct(r.interval[0])}-{pct(r.interval[1])} "
            f"| {_cell(m, 'per_gender', 'female')} | {_cell(m, 'per_gender', 'male')} "
            f"| {_cell(m, 'arousal', 'male_high_arousal')} | {_cell(m, 'arousal', 'female_low_arousal')} "
            f"| {r.speakers.mostly_right} of {r.speakers.n_speakers} |"
        )
    lines += ["", f"Speakers below {pct(WEAK_SPEAKER)} of their clips (share of the corpus's wrong clips they hold):", ""]
    for r in held:
        lines.append(f"- {r.corpus}: {len(r.speakers.weak)} of {r.speakers.n_speakers} speakers, holding "
                     f"{pct(r.speakers.share_of_errors_in_weak)} of the errors: {_weak_list(r.speakers)}")
    pairs = [(r, next((q for q in results if q.corpus == r.corpus and q.rows == "test" and not q.held_out), None))
             for r in results if r.held_out and r.rows == "test"]
    if any(q is not None for _, q in pairs):
        lines += [
            "",
            "## The same `test` rows, corpus seen vs never seen",
            "",
            "The reference model saw the corpus's `train` and `val` speakers; the held-out model saw none of it. "
            "Both meet these `test` speakers for the first time.",
            "",
            "| corpus | test clips | test speakers | reference (corpus seen) | held-out model (corpus never seen) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r, q in pairs:
            if q is None:
                continue
            lines.append(f"| {r.corpus} | {r.metrics['overall']['n']} | {r.speakers.n_speakers} "
                         f"| {_cell(q.metrics, 'overall')} | {_cell(r.metrics, 'overall')} |")
    whole = next((r for r in results if r.corpus == "all"), None)
    if whole is not None:
        v = whole.speakers
        lines += [
            "",
            "## Per speaker: the reference model on the whole `test` split",
            "",
            f"`{whole.model}`: {_cell(whole.metrics, 'overall')} of clips, {v.mostly_right} of {v.n_speakers} "
            f"speakers called right on most of their clips. Speakers below {pct(WEAK_SPEAKER)}: {_weak_list(v)}; "
            f"they hold {pct(v.share_of_errors_in_weak)} of its wrong clips.",
        ]
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[HoldoutResult], *, command: str) -> dict:
    """Everything in the report, per result, with the per-speaker tallies."""
    return {"command": command, "weak_speaker_threshold": WEAK_SPEAKER, "results": [asdict(r) for r in results]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="gender model folders trained with --exclude-corpus")
    parser.add_argument("--reference", default="gender_model",
                        help="model set beside them on the held-out corpora's test rows (default: gender_model; "
                        "'none' to skip)")
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="write STEM.md and STEM.json (default studies/gender_holdout/report)")
    args = parser.parse_args(argv)
    reference = None if args.reference == "none" else args.reference
    try:
        results = run(args.models, reference)
    except ValueError as exc:
        parser.error(str(exc))
    command = command_line("studies.gender_holdout", argv)
    report = to_markdown(results, command=command)
    print(report)
    write_report(args.out, to_json(results, command=command), report, command=command, config=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
