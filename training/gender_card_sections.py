"""Sections of the gender model card that come from outside the training run (studies/gender_fusion).

:func:`training.gender_cards.write_gender_card` adds them to
:func:`training.gender_cards.model_card`; each builder returns Markdown lines, or an empty
list when its data does not exist, so a section is only written when there is something to say:

* :func:`speaker_section`: distinct speakers and clips fitted per corpus and gender, counted
  in the manifest with the model's ``fit_splits`` / ``excluded_corpora`` / ``excluded_speakers``;
* :func:`loco_section`: the leave-one-corpus-out study (``studies/gender_fusion/report.json``);
* :func:`robustness_section` / :func:`calibration_section`: ``metrics["gender_robustness"]`` and
  ``metrics["gender_calibration"]`` of ``python -m pipeline.evaluate`` (``reports/metrics.json``);
* :func:`fusion_paragraph`: the GE2E speaker encoder's licence and the fusion settings when the
  folder holds ``fusion.json``.

Percentages are of clips; "points" are differences of percentages.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from training.reporting import pct

LOCO_REPORT = Path("studies") / "gender_fusion" / "report.json"
"""The leave-one-corpus-out report, relative to :data:`pipeline.paths.PROJECT_ROOT`."""

LOCO_CORPORA = ("ravdess", "savee", "librispeech", "ased", "emovo", "speechocean")
"""The six folds of the study (``studies.gender_fusion.study.CORPORA``), in its order."""

LOCO_METHODS = {"ecapa": "ECAPA", "ge2e_lr": "GE2E-LR", "fused": "fused"}
"""Methods of the study shown on the card (``fused``: ECAPA weight chosen on ``val``)."""

RULE_REPORT = Path("studies") / "gender_fusion" / "rule_report.json"
"""The report of the gender decision rule (``studies/gender_fusion/plan.md``, amendment 3)."""

RULE_NAMES = {"E0": "ECAPA, plain recipe", "R": "ECAPA, robust recipe", "G": "GE2E-LR", "Gd": "GE2E-LR (degraded copies) alone",
              "Gdp": "GE2E-LR + degraded and pitch-moved copies",
              "F(E0,Gd)": "fused (weight on `val`): ECAPA + GE2E-LR with degraded copies",
              "F*(E0,Gd)": "fused: ECAPA + GE2E-LR with degraded copies",
              "F*(E0,Gdp)": "fused: ECAPA + GE2E-LR with degraded and pitch-moved copies",
              "F(R,Gd)": "fused (weight on `val`): robust ECAPA + GE2E-LR with degraded copies",
              "F*(R,Gd)": "fused: robust ECAPA + GE2E-LR with degraded copies"}
"""Candidates of the rule report as the card names them."""

RULE_TARGET_CORPUS = 0.88
"""Target of the rule report's folds: every held-out corpus at least this accuracy..."""

RULE_TARGET_MEAN = 0.93
"""... and their mean at least this."""

LOCO_TARGET_CORPUS = 0.92
"""Target on corpora never seen: every held-out corpus at least this accuracy..."""

LOCO_TARGET_MEAN = 0.96
"""... and the mean over the held-out corpora at least this."""

PITCH_REASON = ("speechocean speakers whose median F0 contradicts their label, "
                "see `studies/gender_fusion/robust_plan.md`")
"""Why speechocean speakers are left out of fitting (the recipe's ``exclude_speakers``)."""

GE2E_LICENCE = (
    "The second opinion of this folder (`fusion.json`, `pipeline/gender_fusion.py`) reads the GE2E speaker "
    "encoder of `resemblyzer` (its `pretrained.pt`, Apache-2.0; trained by its authors on LibriSpeech, "
    "VoxCeleb1 and VoxCeleb2), whose 256-d embedding a logistic regression fitted in this project turns into "
    "log-odds of *female*; the two opinions are combined as "
    "`z = w * z_ecapa / T_ecapa + (1 - w) * z_ge2e / T_ge2e`."
)


@dataclass(frozen=True)
class SpeakerCount:
    """Speakers and clips of one corpus and gender that the model was fitted on.

    Attributes:
        corpus, gender: the manifest's values (gender ``male`` / ``female``).
        speakers: distinct speakers, or None when the manifest could not be read.
        clips: clips fitted (from the manifest; from ``training.train_rows`` when it could not be read).
    """

    corpus: str
    gender: str
    speakers: int | None
    clips: int


def fitted_counts(training: dict, manifest: Sequence | None) -> list[SpeakerCount]:
    """:class:`SpeakerCount` per corpus and gender, sorted by corpus then gender.

    ``training``: the model's ``metadata["training"]`` (``fit_splits``, default ``["train"]``;
    ``corpora`` fitted, when recorded, so corpora added to the manifest after training are not
    counted; ``excluded_corpora``; optional ``excluded_speakers``). ``manifest``: rows with ``.corpus``
    ``.speaker`` ``.gender`` ``.split`` (:func:`training.corpus.read_manifest`), or None: then the
    clips are ``training["train_rows"]`` (``"corpus/gender" -> clips``) and the speakers unknown.
    """
    if manifest is None:
        out = []
        for key, n in sorted(training.get("train_rows", {}).items()):
            corpus, _, gender = key.partition("/")
            out.append(SpeakerCount(corpus, gender, None, int(n)))
        return out
    splits = set(training.get("fit_splits") or ["train"])
    fitted = set(training.get("corpora") or [])  # empty: every corpus of the manifest not excluded
    corpora = set(training.get("excluded_corpora") or [])
    speakers_out = set(training.get("excluded_speakers") or [])
    speakers: dict[tuple[str, str], set] = defaultdict(set)
    clips: dict[tuple[str, str], int] = defaultdict(int)
    for u in manifest:
        if (u.split in splits and u.gender in ("male", "female") and u.corpus not in corpora
                and (not fitted or u.corpus in fitted) and u.speaker not in speakers_out):
            speakers[(u.corpus, u.gender)].add(u.speaker)
            clips[(u.corpus, u.gender)] += 1
    return [SpeakerCount(c, g, len(speakers[(c, g)]), clips[(c, g)]) for c, g in sorted(clips)]


def manifest_or_none() -> list | None:
    """:func:`training.corpus.read_manifest`'s rows, or None when it cannot be read (no shared corpus)."""
    from training.corpus import read_manifest

    try:
        return read_manifest()
    except (OSError, KeyError, ValueError):
        return None


def _excluded_sentence(excluded: Sequence[str], manifest: Sequence | None, splits: Sequence[str]) -> str:
    """The sentence naming the speakers left out of fitting and why."""
    ocean = sorted(s for s in excluded if s.startswith("speechocean_"))
    other = sorted(s for s in excluded if not s.startswith("speechocean_"))
    parts = []
    if ocean:
        parts.append(f"{', '.join(ocean)} ({PITCH_REASON})")
    if other:
        parts.append(f"{', '.join(other)} (the recipe's `exclude_speakers`)")
    sentence = f"Left out of fitting, and not counted above: {len(excluded)} speaker(s), " + "; ".join(parts) + "."
    if manifest is not None:
        fitted_splits = set(splits)
        clips = sum(1 for u in manifest if u.speaker in set(excluded) and u.split in fitted_splits)
        sentence += (f" They hold {clips} clip(s) of the fitted splits; the evaluation still scores those "
                     "of them that are in `test`.")
    return sentence


def speaker_section(metadata: dict, manifest: Sequence | None) -> list[str]:
    """Markdown lines of "Training speakers per corpus" (empty when the model records no training rows).

    ``manifest``: :func:`training.corpus.read_manifest`'s rows, or None when it could not be read
    (the clip counts of ``metadata.json`` are shown, speakers unknown).
    """
    tr = metadata.get("training") or {}
    counts = fitted_counts(tr, manifest)
    if not counts:
        return []
    splits = list(tr.get("fit_splits") or ["train"])
    lines = ["## Training speakers per corpus", ""]
    if manifest is None:
        lines += ["Speakers: unknown (the manifest of the shared corpus could not be read when this card was "
                  "written); the clips fitted are those `metadata.json` records.", ""]
    else:
        lines += [f"Distinct speakers and clips of the fitted splits ({' + '.join(f'`{s}`' for s in splits)}), "
                  "counted in the manifest of the shared corpus.", ""]
    by_corpus: dict[str, dict[str, SpeakerCount]] = defaultdict(dict)
    for c in counts:
        by_corpus[c.corpus][c.gender] = c

    def cell(c: SpeakerCount | None, attr: str) -> str:
        if c is None:
            return "0"
        value = getattr(c, attr)
        return "?" if value is None else str(value)

    lines += ["| corpus | female speakers | male speakers | female clips | male clips |",
              "|---|---:|---:|---:|---:|"]
    for corpus, genders in by_corpus.items():
        f, m = genders.get("female"), genders.get("male")
        lines.append(f"| {corpus} | {cell(f, 'speakers')} | {cell(m, 'speakers')} | {cell(f, 'clips')} | "
                     f"{cell(m, 'clips')} |")
    total = {g: [c for c in counts if c.gender == g] for g in ("female", "male")}
    spk = {g: (None if any(c.speakers is None for c in cs) else sum(c.speakers for c in cs)) for g, cs in total.items()}
    lines.append(f"| **all** | {'?' if spk['female'] is None else spk['female']} | "
                 f"{'?' if spk['male'] is None else spk['male']} | {sum(c.clips for c in total['female'])} | "
                 f"{sum(c.clips for c in total['male'])} |")
    excluded = list(tr.get("excluded_speakers") or [])
    if excluded:
        lines += ["", _excluded_sentence(excluded, manifest, splits)]
    n_manifest, n_fitted = sum(c.clips for c in counts), tr.get("n_train")
    if manifest is not None and n_fitted is not None and n_manifest != n_fitted:
        lines += ["", f"The manifest lists {n_manifest} clips for these splits; {n_fitted} were fitted (clips refused "
                  "by the audio checks, a `max_rows` draw, or a manifest changed since training)."]
    return lines + [""]


def _judge_loco(folds: dict, method: str, mean: float | None, complete: bool, pending: Sequence[str]) -> str:
    """'met' / 'not met' / 'not decided yet' for the gender-on-unseen-voices LOCO target, with the numbers behind it."""
    accs = {c: f["methods"][method]["accuracy"]["estimate"] for c, f in folds.items() if method in f["methods"]}
    low = {c: a for c, a in accs.items() if a < LOCO_TARGET_CORPUS}
    mean_text = f"mean of {len(accs)} folds {pct(mean)}" if mean is not None else "no mean"
    if low:
        return ("**not met** (below 92%: " + ", ".join(f"{c} {pct(a)}" for c, a in low.items()) + f"; {mean_text})")
    if not complete:
        return f"not decided yet (every fold so far >= 92%; {mean_text}; waiting for {', '.join(pending)})"
    if mean is not None and mean >= LOCO_TARGET_MEAN:
        return f"**met** (every corpus >= 92%; {mean_text})"
    return f"**not met** (every corpus >= 92%, but {mean_text} < 96%)"


def loco_section(report: dict | None, *, shipped_method: str) -> list[str]:
    """Markdown lines of "On corpora never seen (leave-one-corpus-out)" from the study's ``report.json``.

    ``report``: ``{"folds": {corpus: {"methods": {method: {"clips", "speakers", "accuracy":
    {"estimate", "low", "high"}}}}}, "summary": {"means", "complete", "verdict", ...}}``
    (:func:`studies.gender_fusion.study.decide` / ``render``), or None: no section.
    ``shipped_method``: the study's method this folder corresponds to (``"fused"`` with
    ``fusion.json``, else ``"ecapa"``).
    """
    folds = (report or {}).get("folds") or {}
    if not folds:
        return []
    summary = report.get("summary") or {}
    means = summary.get("means") or {}
    order = [c for c in LOCO_CORPORA if c in folds] + sorted(c for c in folds if c not in LOCO_CORPORA)
    pending = [c for c in LOCO_CORPORA if c not in folds]
    complete = bool(summary.get("complete", not pending))
    methods = [m for m in LOCO_METHODS if all(m in folds[c]["methods"] for c in order)]

    def cell(result: dict) -> str:
        a = result["accuracy"]
        return f"{pct(a['estimate'])} ({pct(a['low'])}-{pct(a['high'])})"

    lines = ["## On corpora never seen (leave-one-corpus-out)", "",
             "How the recipe does on recordings unlike all of its training data. These are not this folder's "
             "weights: for each corpus, models of the study were trained on the other five corpora (`train` split "
             "only) and scored on every clip of the held-out one; 95% intervals by bootstrap over speakers. ECAPA: "
             "the small ECAPA-TDNN of the shipped recipe (`training/recipes/gender.yaml`); GE2E-LR: a logistic regression on GE2E speaker "
             "embeddings; fused: the two combined in log-odds with the ECAPA weight chosen on `val`. "
             "Full report: `studies/gender_fusion/report.md` (`python -m studies.gender_fusion`).", ""]
    if pending:
        lines += [f"Folds in: {len(order)} of {len(LOCO_CORPORA)} (not yet: {', '.join(pending)}).", ""]
    lines += ["| held out | clips | speakers | " + " | ".join(LOCO_METHODS[m] for m in methods) + " |",
              "|---|---:|---:|" + "---:|" * len(methods)]
    for c in order:
        m = folds[c]["methods"]
        first = m[methods[0]] if methods else {}
        lines.append(f"| {c} | {first.get('clips', '?')} | {first.get('speakers', '?')} | "
                     + " | ".join(cell(m[k]) for k in methods) + " |")
    if means and all(k in means for k in methods):
        lines.append(f"| **mean of {len(order)}** | | | " + " | ".join(f"**{pct(means[k])}**" for k in methods) + " |")
    lines += ["", "Target on corpora never seen: every corpus >= 92% and the mean >= 96%.", ""]
    for k in methods:
        mark = " (the method of this folder)" if k == shipped_method else ""
        lines.append(f"- {LOCO_METHODS[k]}{mark}: " + _judge_loco({c: folds[c] for c in order}, k, means.get(k),
                                                                      complete, pending))
    verdict = summary.get("verdict")
    if verdict:
        lines += ["", f"The study's decision rule (`studies/gender_fusion/plan.md`) ships: "
                  f"{LOCO_METHODS.get(verdict, verdict)}."]
    return lines + [""]


def rule_section(report: dict | None, *, shipped: str) -> list[str]:
    """Markdown lines of "On corpora never seen" from the rule report (``rule_report.json``), or ``[]``.

    ``report``: ``{"folds": {corpus: {"candidates": {name: {"clips", "accuracy": {"estimate", "low", "high"},
    "female", "male"}}}}, "decision": {"candidates": {name: {"score", ...}}, "winner"}}``
    (:mod:`studies.gender_fusion.rule`). ``shipped``: the candidate this folder is (``"F(E0,Gd)"``...).
    """
    folds = (report or {}).get("folds") or {}
    if not folds or not all(c in folds for c in LOCO_CORPORA):
        return []
    # the first opinion alone, the second alone and the shipped stage (the report has every other candidate)
    first, second = (shipped[shipped.index("(") + 1:shipped.index(",")], shipped[shipped.index(",") + 1:-1]) \
        if "," in shipped else (shipped, None)
    names = [n for n in dict.fromkeys(("E0", first, second, shipped))
             if n and all(n in folds[c]["candidates"] for c in LOCO_CORPORA)]
    if shipped not in names:
        return []

    def cell(result: dict) -> str:
        a = result["accuracy"]
        return f"{pct(a['estimate'])} ({pct(a['low'])}-{pct(a['high'])})"

    def mean(name: str, key: str | None = None) -> float | None:
        values = [folds[c]["candidates"][name]["accuracy"]["estimate"] if key is None else folds[c]["candidates"][name].get(key)
                  for c in LOCO_CORPORA]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    lines = ["## On corpora never seen (leave-one-corpus-out)", "",
             "How the recipe does on recordings unlike all of its training data. These are not this folder's weights: "
             "for each corpus, the candidates were fitted on the `train` split of the other five corpora and scored on "
             "every clip of the held-out one; 95% intervals by bootstrap over speakers. Full report, with the degraded "
             "recordings and every candidate tried: `studies/gender_fusion/rule_report.md` "
             "(`python -m studies.gender_fusion.rule`).", "",
             "| held out | clips | " + " | ".join(RULE_NAMES[n] + (" (this folder)" if n == shipped else "") for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for c in LOCO_CORPORA:
        cands = folds[c]["candidates"]
        lines.append(f"| {c} | {cands[shipped].get('clips', '?')} | " + " | ".join(cell(cands[n]) for n in names) + " |")
    lines.append("| **mean of 6** | | " + " | ".join(f"**{pct(mean(n))}**" for n in names) + " |")
    lines.append("| women / men (mean of the folds) | | "
                 + " | ".join(f"{pct(mean(n, 'female'))} / {pct(mean(n, 'male'))}" for n in names) + " |")
    accs = {c: folds[c]["candidates"][shipped]["accuracy"]["estimate"] for c in LOCO_CORPORA}
    low = {c: a for c, a in accs.items() if a < RULE_TARGET_CORPUS}
    m = mean(shipped)
    verdict = ("**met**" if not low and m >= RULE_TARGET_MEAN else "**not met** ("
               + "; ".join(([f"below {pct(RULE_TARGET_CORPUS)}: " + ", ".join(f"{c} {pct(a)}" for c, a in low.items())]
                            if low else []) + ([f"mean {pct(m)}"] if m < RULE_TARGET_MEAN else [])) + ")")
    lines += ["", f"Target on corpora never seen: every corpus >= {pct(RULE_TARGET_CORPUS)} and the mean >= "
              f"{pct(RULE_TARGET_MEAN)}; this folder's method: {verdict}."]
    return lines + [""]


def _same_model(metrics: dict, folder: Path) -> bool:
    """Whether ``metrics`` were measured on the model in ``folder`` (True when they do not say)."""
    source = metrics.get("gender_model")
    if not source:
        return True
    try:
        return Path(source).resolve() == Path(folder).resolve()
    except (OSError, RuntimeError):
        return False


def robustness_section(metrics: dict, training_corpora: Sequence[str] = ()) -> list[str]:
    """Markdown lines of "Robustness" from ``metrics["gender_robustness"]`` (empty when absent).

    ``metrics["gender_robustness"]``: ``{"split", "target_pts", "conditions": {name: {"description",
    "n", "accuracy", "change_pts", "flipped", "per_corpus"}}}`` (:func:`training.evaluate.gender_robustness`;
    ``change_pts`` in percentage points against ``clean``, ``flipped`` a share of clips).
    """
    rob = (metrics or {}).get("gender_robustness") or {}
    conditions = rob.get("conditions") or {}
    if "clean" not in conditions:
        return []
    target = float(rob.get("target_pts", 2.0))
    clean = conditions["clean"]
    unseen = sorted(set(clean.get("per_corpus") or {}) - set(training_corpora)) if training_corpora else []
    lines = ["## Robustness", "",
             f"The gender answer on the {clean['n']} gender-labelled `{rob.get('split', 'test')}` clips as recorded and "
             "as they would arrive degraded (`training/gender_conditions.py`, measured by `python -m pipeline.evaluate`, "
             "`reports/metrics.md`)"
             + (f"; these clips include corpora the model was not fitted on ({', '.join(unseen)}), so clean accuracy "
                "here differs from the test metrics above" if unseen else "")
             + f". *Answers changed*: share of clips whose gender differs from the clean clip's. Target: "
             f"at most {target:g} points below clean under each condition.", "",
             "| condition | clips | accuracy | vs clean | answers changed | target |",
             "|---|---:|---:|---:|---:|---|"]
    verdicts = []
    for name, c in conditions.items():
        if name == "clean":
            lines.append(f"| {c.get('description', name)} | {c['n']} | {pct(c['accuracy'])} | – | – | – |")
            continue
        change = c.get("change_pts")
        ok = None if change is None else change >= -target
        verdicts.append(ok)
        lines.append(f"| {c.get('description', name)} | {c['n']} | {pct(c['accuracy'])} | "
                     + ("n/a" if change is None else f"{change:+.1f} pts") + f" | {pct(c.get('flipped'))} | "
                     + {True: "met", False: "**not met**", None: "n/a"}[ok] + " |")
    judged = [v for v in verdicts if v is not None]
    lines += ["", f"Target met under {sum(judged)} of {len(judged)} degraded conditions."]
    return lines + [""]


def calibration_section(metrics: dict) -> list[str]:
    """Markdown lines of "Calibration" from ``metrics["gender_calibration"]`` (empty when it has no ECE)."""
    cal = (metrics or {}).get("gender_calibration") or {}
    ece = (cal.get("p_female") or {}).get("ece")
    if ece is None:
        return []
    top = (cal.get("top_label") or {}).get("ece")
    seen = cal.get("seen_corpora")
    text = (f"Expected calibration error of P(female) over {cal.get('n', '?')} `{metrics.get('split', 'test')}` clips "
            f"(10 equal-width bins, P(female) against the share of female voices): **{ece:.3f}**"
            + (f"; of the confidence in the predicted gender: {top:.3f}" if top is not None else "")
            + (f". On the {seen['n']} clips of the corpora it was fitted on: {seen['p_female_ece']:.3f} and "
               f"{seen['top_label_ece']:.3f}" if seen else "")
            + ". Reliability bins: `reports/metrics.md`.")
    return ["## Calibration", "", text, ""]


def fusion_paragraph(folder: Path) -> list[str]:
    """The licence paragraph of the GE2E encoder and the fusion settings, when ``folder`` holds ``fusion.json``.

    ``fusion.json`` keys read: ``ecapa_weight`` (``w``), ``ecapa_temperature``, ``ge2e_temperature``,
    ``provenance`` (scalar entries listed). Empty list without the file; a note when it is unreadable.
    """
    from pipeline.gender_fusion import FUSION_FILE

    path = Path(folder) / FUSION_FILE
    if not path.is_file():
        return []
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        settings = (f"ECAPA weight w = {float(spec['ecapa_weight']):.2f}, temperatures T_ecapa = "
                    f"{float(spec['ecapa_temperature']):.2f} and T_ge2e = {float(spec['ge2e_temperature']):.2f}")
    except (OSError, ValueError, KeyError, TypeError):
        return [GE2E_LICENCE + f" (`{FUSION_FILE}` could not be read when this card was written.)", ""]
    provenance = {k: v for k, v in (spec.get("provenance") or {}).items() if isinstance(v, (str, int, float, bool))}
    text = GE2E_LICENCE + f" Settings of `{FUSION_FILE}`: {settings}."
    if provenance:
        text += " Provenance: " + "; ".join(f"{k}: {v}" for k, v in provenance.items()) + "."
    return [text, ""]


def card_sections(metadata: dict, folder: Path, metrics: dict | None, loco_report: dict | None, *,
                  manifest: Sequence | None, rule_report: dict | None = None) -> tuple[list[str], list[str]]:
    """``(licence_lines, section_lines)`` to add to the card of ``folder``.

    ``licence_lines`` belong after the licences of the training data (the fusion paragraph);
    ``section_lines`` are the new sections. ``metrics`` measured on another model
    (``metrics["gender_model"]`` naming another folder) are not used.
    """
    fusion = fusion_paragraph(folder)
    usable = metrics if metrics and _same_model(metrics, folder) else {}
    corpora = (metadata.get("training") or {}).get("corpora") or ()
    decision = (rule_report or {}).get("decision", {})
    rule = rule_section(rule_report, shipped=decision.get("shipped", decision.get("winner", "E0"))
                        if fusion else "E0")
    sections = [*speaker_section(metadata, manifest),
                *(rule or loco_section(loco_report, shipped_method="fused" if fusion else "ecapa")),
                *robustness_section(usable, corpora),
                *calibration_section(usable)]
    return fusion, sections


def read_loco_report(path: Path) -> dict | None:
    """``report.json`` of the leave-one-corpus-out study, or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
