"""Prose of a gender model: its model card (``README.md``) and the training-length report.

Everything is built from the ``metadata.json`` a run wrote
(:func:`training.gender_train.train_gender`, or
:func:`training.gender_ensemble.ensemble_metadata` for a seed ensemble), so the
numbers of the card are those of the training run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

#: Licence of each training corpus, as the model card lists it.
LICENCES = {
    "ravdess": "CC BY-NC-SA 4.0 (non-commercial, share-alike)",
    "savee": "free for research use",
    "librispeech": "CC BY 4.0",
    "ased": "research use",
    "emovo": "research use",
    "speechocean": "speechocean762 (Zhang et al. 2021): free for commercial and non-commercial use per its README, "
                   "no licence file",
}



def _noise_limit(kinds: Sequence[str]) -> str:
    """The model card's sentence on training noise and where its effect is measured."""
    where = ("(the noise study in `studies/noise_study/report.md` measures pink noise and babble at 20-0 dB SNR; "
             "`python -m studies.gender_robustness` compares gender models under the same noise)")
    if list(kinds) == ["white"]:
        return f"Training adds white noise only, and pink noise lowers its accuracy markedly {where}."
    return f"Training adds {', '.join(kinds)} noise; accuracy still falls as the SNR drops {where}."



def length_report(metadata: dict, *, command: str) -> str:
    """Markdown: validation curve of a ``train``-only run, used to fix the epochs of a ``train`` + ``val`` fit.

    ``metadata`` is what :func:`train_gender` returns (or its ``metadata.json``)
    for a run with ``fit_splits=("train",)``; ``command`` is the command line
    that produced it. Reports, per epoch, train and val accuracy and val loss, the
    best epoch, and the mean and range of val accuracy over the last 5 and 15 epochs
    (what a fixed-length fit that keeps its last epoch should expect).
    """
    tr = metadata["training"]
    hist = [h for h in tr["history"] if "val_accuracy" in h]  # a run keeping its last epoch scores val every few
    if not hist:
        raise ValueError("length_report needs a run selected on val (fit_splits=('train',))")
    val = np.array([h["val_accuracy"] for h in hist])
    last5 = float(val[-5:].mean())
    # the epoch training kept (ties on accuracy broken by val loss), else the first maximum
    best = int(tr.get("best_epoch") or hist[int(np.argmax(val))]["epoch"])
    lines = [
        "# Gender model: training length",
        "",
        f"Generated from `{command}`: the small ECAPA-TDNN fitted on the `train` split "
        f"({tr['n_train']} clips) and scored after every epoch on the `val` speakers ({tr['n_val']} clips, "
        "whole clips, as at inference). The shipped model is then fitted on `train` + `val` for the same "
        "number of epochs and keeps its last epoch, so what matters is the accuracy at the end of the "
        "schedule, not at its best epoch. The `test` split is not used.",
        "",
        f"- epochs: {tr['epochs']} ({tr['samples_per_epoch']} crops each, one-cycle learning rate)",
        f"- best val accuracy: {100 * val.max():.2f}% (the epoch kept, ties broken by val loss: {best})",
        f"- last epoch: {100 * val[-1]:.2f}%; mean of the last 5 epochs: {100 * last5:.2f}%; "
        f"of the last 15: {100 * float(val[-15:].mean()):.2f}% (range {100 * float(val[-15:].min()):.2f}-"
        f"{100 * float(val[-15:].max()):.2f}%)",
        *(
            [f"- BatchNorm statistics re-estimated on clean `train` crops after the best epoch: "
             f"{100 * bn['val_accuracy']:.2f}% on `val`"]
            if (bn := tr.get("bn_recalibration")) and bn.get("val_accuracy") is not None else []
        ),
        "",
        "| epoch | train accuracy (augmented crops) | val accuracy | val loss |",
        "|---:|---:|---:|---:|",
    ]
    for h in hist:
        lines.append(f"| {h['epoch']} | {100 * h['train_accuracy']:.1f}% | {100 * h['val_accuracy']:.2f}% | {h['val_loss']:.4f} |")
    return "\n".join(lines) + "\n"



def write_length_report(metadata: dict, stem: str | Path, *, command: str) -> None:
    """Write :func:`length_report` to ``stem.md`` and the run's history to ``stem.json``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(length_report(metadata, command=command), encoding="utf-8")
    tr = metadata["training"]
    payload = {"command": command, "epochs": tr["epochs"], "n_train": tr["n_train"], "n_val": tr["n_val"],
               "history": tr["history"]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")



def _table(rows: dict, header: str) -> str:
    lines = [f"| {header} | n | correct | accuracy |", "|---|---:|---:|---:|"]
    for key, c in rows.items():
        lines.append(f"| {key} | {c['n']} | {c['correct']} | {100 * c['accuracy']:.1f}% |")
    return "\n".join(lines)


def _data_sentence(metadata: dict) -> str:
    """Which splits (and corpora) the model was fitted on and how its length was chosen (model card)."""
    excluded = metadata["training"].get("excluded_corpora")
    sentence = _splits_sentence(metadata)
    if excluded:
        sentence += (f" Left out of training on purpose, to measure a corpus never seen: {', '.join(excluded)} "
                     "(`--exclude-corpus`, scored by `python -m studies.gender_holdout`).")
    return sentence


def _splits_sentence(metadata: dict) -> str:
    """Which splits the model was fitted on and how its length was chosen."""
    tr = metadata["training"]
    fit = tr.get("fit_splits", ["train"])
    if "val" in fit:
        return (
            "Gender-labelled rows of the shared corpus, `train` + `val` splits (speaker-disjoint from `test`), "
            f"fitted for a fixed {tr['epochs']} epochs (the last one is kept, no selection). The length is checked "
            "by a run with the same recipe fitted on `train` alone and scored on `val` after every epoch "
            "(`studies/gender_recipe/length.md`, written by `--fit-splits train --length-report`). "
            "The `test` split was used only for the metrics below."
        )
    if tr.get("keep") == "last":
        val = metadata.get("val_accuracy")
        return (
            "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`), "
            f"fitted for a fixed {tr['epochs']} epochs (the last one is kept, no selection)"
            + (f"; `val` accuracy of that epoch {100 * val:.1f}%" if val is not None else "")
            + ". The `test` split was used only for the metrics below."
        )
    if "best_epoch" not in tr:  # an ensemble whose members each kept their own best epoch
        return (
            "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`); "
            f"each member kept its best epoch of {tr['epochs']} on `val` (see its own `metadata.json`). "
            "The `test` split was used only for the metrics below."
        )
    return (
        "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`); "
        f"model selection on `val` (best epoch {tr['best_epoch']} of {tr['epochs']}, "
        f"val accuracy {100 * metadata['val_accuracy']:.1f}%). The `test` split was used only for the metrics below."
    )


def model_card(metadata: dict, out_dir: Path) -> str:
    """Markdown model card built from ``metadata`` (numbers come from the training run).

    ``metadata`` is a single model's (:func:`train_gender`) or a seed ensemble's
    (:func:`training.gender_ensemble.ensemble_metadata`, with an ``"ensemble"`` key).
    """
    tr = metadata["training"]
    ensemble = metadata.get("ensemble")
    weights = [out_dir / m / "model.safetensors" for m in ensemble["members"]] if ensemble else [out_dir / "model.safetensors"]
    size_mb = sum(f.stat().st_size for f in weights) / 1e6 if all(f.exists() for f in weights) else float("nan")
    w = metadata["architecture"]
    counts = "\n".join(f"| {k} | {v} |" for k, v in tr["train_rows"].items())
    seeds = ", ".join(str(s) for s in tr.get("seeds", [tr.get("seed")]))

    def architecture(size: str) -> str:
        return ("ECAPA-TDNN (Desplanques et al. 2020) with the parameter names of the public "
                "`JaesungHuh/voice-gender-classifier`, at reduced width "
                f"(C={w['C']}, MFA {w['mfa_channels']}, attention {w['attention_channels']}, "
                f"embedding {w['embedding_dim']}; {size}). Trained from scratch in this project; no public weights "
                "used. Front end: pre-emphasis 0.97, 25 ms Hamming window / 10 ms hop, 512-point FFT, 80 HTK mel "
                "bands 20-7600 Hz, log(mel + 1e-6), per-band mean subtraction over the clip.")

    if ensemble:
        n = len(ensemble["members"])
        member_accs = [m.get("test_accuracy") for m in metadata.get("members", {}).values()]
        head = [
            f"# Gender model (seed ensemble of {n} small ECAPA-TDNNs)",
            "",
            "Predicts the speaker's gender (`male` / `female`) from a 16 kHz mono "
            "speech signal prepared by `pipeline.audio.load_audio` (silence-trimmed, RMS-normalised to "
            f"{metadata['audio_config']['target_rms_dbfs']} dBFS): the mean of the probabilities of {n} networks "
            f"trained with the same recipe and data, seeds {seeds}. It routes each clip to the male or female "
            "emotion model of this project.",
            "",
            "Why an ensemble: single models of this recipe score "
            + (" / ".join(f"{100 * a:.1f}%" for a in member_accs) if None not in member_accs else "differently")
            + " on `test` depending on the seed (`studies/gender_recipe/seeds.md`). How a three-seed ensemble compares "
            "with its own members on held-out `val` speakers, clean and under noise: "
            "`studies/gender_recipe/ensemble_val.md` (and the rule it was judged by, "
            "`studies/gender_recipe/ensemble_plan.md`).",
            "",
            "Architecture of each member: " + architecture(
                f"{metadata['n_parameters']:,} parameters in all, {size_mb:.1f} MB of weights"),
            "",
            f"Files: `ensemble.json` (member folders, read by `GenderClassifier.load`), one folder per member "
            f"({', '.join(f'`{m}/`' for m in ensemble['members'])}: `config.json` and `model.safetensors` in the hub "
            "layout, each loadable on its own, and its training `metadata.json`), `metadata.json` (the ensemble's "
            "labels, front end, audio config, training recipe, metrics).",
        ]
    else:
        head = [
            "# Gender model (small ECAPA-TDNN)",
            "",
            "Predicts the speaker's gender (`male` / `female`, logits index 0 / 1) from a 16 kHz mono "
            "speech signal prepared by `pipeline.audio.load_audio` (silence-trimmed, RMS-normalised to "
            f"{metadata['audio_config']['target_rms_dbfs']} dBFS). It routes each clip to the male or female "
            "emotion model of this project.",
            "",
            "Architecture: " + architecture(
                f"{metadata['n_parameters']:,} parameters, model.safetensors {size_mb:.1f} MB"),
            "",
            "Files: `config.json` (widths, read by `ECAPAGender.from_pretrained`), `model.safetensors`, "
            "`metadata.json` (labels, front end, audio config, training history, metrics); `model.onnx` (the "
            "network from its log-mel input, the front end left to numpy) and its card `model.onnx.json`, written by "
            "`python -m training.export_onnx` for ONNX Runtime (`docs/runtime.md`).",
        ]
    parts = [
        *head,
        "",
        "```python",
        "from pipeline.audio import load_audio",
        "from pipeline.gender import GenderClassifier",
        "clf = GenderClassifier.load()            # this folder",
        "p_male, p_female = clf.predict_proba(load_audio('clip.wav').samples)",
        "```",
        "",
        "## Training data and licences",
        "",
        _data_sentence(metadata),
        "",
        "| corpus/gender | clips fitted |",
        "|---|---:|",
        counts,
        "",
        "Licences of the training data:",
        "",
        *[f"- {c}: {LICENCES.get(c, 'see corpus')}" for c in tr["corpora"]],
        "",
        "**Because the model is trained on RAVDESS, it inherits RAVDESS's CC BY-NC-SA 4.0 terms: "
        "non-commercial use only, and derivatives must be shared alike.** SAVEE, ASED and EMOVO are "
        "released for research use.",
        "",
        f"Training: {tr['optimiser']}; {tr['augmentation']}; {tr['sampling']}; "
        f"{tr['samples_per_epoch']} sampled crops per epoch, batch {tr['batch_size']}, "
        f"seed{'s' if ensemble else ''} {seeds}; torch {metadata['torch_version']}, torchaudio {metadata['torchaudio_version']}; "
        f"{tr['wall_seconds'] / 60:.1f} min wall on {tr.get('threads', '?')} CPU thread(s) "
        f"(audio loading, feature caching and training{', all members' if ensemble else ''}).",
        "",
        *(
            [
                "BatchNorm running statistics re-estimated on clean (un-augmented) train crops after training: "
                + ("used" if tr["bn_recalibration"]["used"] else "not used")
                + f" (val accuracy with them {100 * tr['bn_recalibration']['val_accuracy']:.1f}%; kept only if "
                "validation improves).",
                "",
            ]
            if (tr.get("bn_recalibration") or {}).get("val_accuracy") is not None
            else []
        ),
        *(
            [
                "Validation accuracy by epoch: "
                + ", ".join(f"{h['epoch']}: {100 * h['val_accuracy']:.1f}" for h in tr["history"] if "val_accuracy" in h)
                + " (%).",
            ]
            if metadata.get("val_accuracy") is not None
            else []
        ),
        "",
        "Retrain (reads `../shared/data` or `$SER_DATA_DIR`):",
        "",
        "```",
        *(
            [f"python -m training.gender_train --out /tmp/gender_seed{x} --seed {x}" for x in tr["seeds"]]
            + ["python -m training.gender_ensemble --members "
               + " ".join(f"/tmp/gender_seed{x}" for x in tr["seeds"]) + " --out gender_model"]
            if ensemble
            else ["python -m training.gender_train --out gender_model"]
        ),
        "```",
        "",
        "The recipe is `training/recipes/gender.yaml`; every run saves its resolved recipe as `recipe.yaml` next to "
        "its weights (" + ("in each member's folder" if ensemble else "in this folder") + "), and "
        "`python -m training.gender_train --recipe recipe.yaml` repeats it.",
        "",
    ]
    metrics = metadata.get("test_metrics")
    if metrics:
        o = metrics["overall"]
        parts += [
            "## Metrics (test split, speakers unseen in training)",
            "",
            f"Overall accuracy: **{100 * o['accuracy']:.2f}%** ({o['correct']}/{o['n']} clips, "
            f"{metrics['skipped']} skipped by audio checks). Computed by "
            "`training.gender_eval.evaluate_gender` on whole clips.",
            "",
            _table(metrics["per_corpus"], "corpus"),
            "",
            _table(metrics["per_gender"], "gender"),
            "",
            "Arousal check (high = angry/happy/fearful/surprised, low = sad/calm/neutral): high-arousal "
            "male and low-arousal female speech are where gender models usually fail.",
            "",
            _table(metrics["arousal"], "group"),
            "",
            _table(metrics["per_gender_emotion"], "gender/emotion"),
            "",
        ]
    parts += [
        "## Known limits",
        "",
        "- Binary self-reported gender labels of the corpora; the model estimates voice "
        "characteristics, not identity, and will misjudge some speakers (e.g. children, "
        "voices outside the training range).",
        "- Trained on adult acted/read speech in English, Amharic and Italian, mostly clean "
        "close-microphone recordings; noisy, far-field, telephone or other-language audio may be less accurate. "
        + _noise_limit(metadata["training"].get("noise_kinds", ["white"])),
        "- The test split holds few speakers per corpus (e.g. SAVEE: one male speaker, no female; "
        "LibriSpeech: 25 readers), so per-corpus numbers have wide confidence intervals.",
        "- Recordings unlike all of the training corpora (another language, microphone, room or speaking style) "
        "are judged much less accurately than the test split suggests: trained without one corpus, this recipe "
        "fell far below its test accuracy on that corpus for two of the three corpora tried. Held-out-corpus "
        "and per-speaker figures are in `studies/gender_holdout/report.md` of the project (`make gender-holdout`). "
        "The voices misjudged there are mostly pitched unusually for their gender (men above about 165 Hz, "
        "women below it; `studies/corpus_pitch/report.md`, `make corpus-pitch`).",
        "- Very short clips (< 1 s of speech) are less reliable.",
        "",
    ]
    return "\n".join(parts)


RESEARCH_SENTENCE = "SAVEE, ASED and EMOVO are released for research use."
"""The last sentence of the card's licence paragraph (where :func:`gender_card` adds the fusion's licence)."""

LIMITS_HEADING = "## Known limits"
"""The card's last section (:func:`gender_card` adds its sections before it)."""


def gender_card(folder: str | Path, metrics: dict | None, loco_report: str | Path | None = None, *,
                manifest=None) -> str:
    """The model card of the gender model in ``folder``: :func:`model_card` plus the sections of studies/gender_fusion.

    Adds (each only when its data exists; :mod:`training.gender_card_sections`): training speakers
    per corpus (from the manifest, or speakers unknown without it), the leave-one-corpus-out table
    (``loco_report``, default ``studies/gender_fusion/report.json``), the robustness table and the
    gender calibration error of ``metrics`` (``reports/metrics.json`` of ``python -m pipeline.evaluate``;
    not used when ``metrics["gender_model"]`` names another folder), and the GE2E licence paragraph
    when ``folder`` holds ``fusion.json``. ``manifest``: rows of :func:`training.corpus.read_manifest`
    (default: read it; None when it cannot be read).
    """
    from pipeline.paths import PROJECT_ROOT
    from training.gender_card_sections import LOCO_REPORT, RULE_REPORT, card_sections, manifest_or_none, read_loco_report

    folder = Path(folder)
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    card = model_card(metadata, folder)
    report = read_loco_report(Path(loco_report) if loco_report is not None else PROJECT_ROOT / LOCO_REPORT)
    rule = read_loco_report(PROJECT_ROOT / RULE_REPORT) if loco_report is None else None
    licence, sections = card_sections(metadata, folder, metrics, report, rule_report=rule,
                                      manifest=manifest if manifest is not None else manifest_or_none())
    if licence:
        where = card.find(RESEARCH_SENTENCE)
        if where >= 0:
            cut = where + len(RESEARCH_SENTENCE)
            card = card[:cut] + "\n\n" + "\n".join(licence).rstrip("\n") + card[cut:]
        else:
            sections = ["## Licence of the speaker encoder", "", *licence, *sections]
    if sections:
        text = "\n".join(sections)
        where = card.find("\n" + LIMITS_HEADING + "\n")
        card = (card[:where + 1] + text + "\n" + card[where + 1:]) if where >= 0 else card.rstrip("\n") + "\n\n" + text
    return card


def write_gender_card(folder: str | Path, metrics: dict | None, loco_report: str | Path | None = None) -> Path:
    """(Re)write ``folder/README.md`` as :func:`gender_card`; returns its path.

    ``folder`` holds the model's ``metadata.json``; ``metrics`` is what ``python -m pipeline.evaluate``
    writes as ``reports/metrics.json``; ``loco_report`` overrides the study's ``report.json``.
    """
    path = Path(folder) / "README.md"
    path.write_text(gender_card(folder, metrics, loco_report), encoding="utf-8")
    return path
