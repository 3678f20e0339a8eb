"""Does spectral-gating noise reduction help the shipped cascade?

``python -m studies.noise_study`` takes emotional ``test`` clips (speakers never
seen in training), adds noise at several signal-to-noise ratios, and scores each
version with the shipped cascade twice: as is, and with
:func:`pipeline.denoise.reduce_noise` before feature extraction. It writes
``studies/noise_study/report.json`` and ``report.md`` (gender accuracy,
emotion accuracy and macro-F1 per condition); notebook 5 draws the same numbers.

Noise (added to the decoded 16 kHz clip, before any preparation, like real noise):

* ``pink``: stationary 1/f noise, the case spectral gating is designed for;
* ``babble``: six LibriSpeech ``train`` readers talking at once (non-stationary,
  speech-like, the hard case), from speakers outside the test split.

SNR is relative to the power of the *speech* part of the clip (the span
:func:`pipeline.audio.trim_silence` keeps), so the leading and trailing silence of
RAVDESS clips does not make the noise weaker than the stated SNR
(:func:`training.noise.corrupt`, the ``"speech"`` reference of
:func:`training.noise.mix_at_snr`).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.audio import to_mono_float
from pipeline.cascade import Cascade
from pipeline.denoise import DenoiseConfig
from pipeline.emotion import EMOTION_LABELS
from training.corpus import Utterance, read_manifest, spread
from training.evaluate import emotion_metrics
from training.noise import NoiseCondition, babble_talkers, corrupt, make_babble
from training.reporting import command_line, write_report as _write

NOISE_KINDS = ("pink", "babble")
SNRS_DB = (20.0, 10.0, 5.0, 0.0)
#: Where the report goes by default (``report.json``, ``report.md``), beside this module.
STUDY_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Condition(NoiseCondition):
    """A :class:`~training.noise.NoiseCondition` scored as is or with noise reduction (``denoise``)."""

    denoise: bool

    @property
    def label(self) -> str:
        return f"{super().label}, {'denoised' if self.denoise else 'as is'}"


def conditions(kinds: Sequence[str] = NOISE_KINDS, snrs: Sequence[float] = SNRS_DB) -> list[Condition]:
    """Clean plus every (kind, SNR), each without and with noise reduction."""
    noisy = [("clean", None)] + [(k, float(s)) for k in kinds for s in snrs]
    return [Condition(n, s, d) for n, s in noisy for d in (False, True)]


def select_clips(utterances: Sequence[Utterance], n: int) -> list[Utterance]:
    """Every k-th emotional ``test`` clip so that about ``n`` remain (deterministic)."""
    return spread([u for u in utterances if u.split == "test" and u.emotion], n)


def run(cascade: Cascade, clips: Sequence[Utterance], *, babble: np.ndarray,
        conditions_: Sequence[Condition], denoise: DenoiseConfig = DenoiseConfig(), progress: bool = False):
    """Score ``clips`` under every condition; a ``pandas.DataFrame`` with one row per (clip, condition)."""
    import pandas as pd
    import soundfile as sf

    denoising = Cascade(cascade.gender, cascade.emotion_models["male"], cascade.emotion_models["female"],
                        routing=cascade.routing, denoise=denoise)
    signals = []
    for u in clips:
        y, sr = sf.read(u.path, dtype="float32")
        signals.append((to_mono_float(y)[0], sr))
    records = []
    for condition in conditions_:
        model = denoising if condition.denoise else cascade
        noisy = [(corrupt(y, condition, babble=babble, seed=i), sr) for i, (y, sr) in enumerate(signals)]
        for start in range(0, len(noisy), 32):
            for u, p in zip(clips[start:start + 32], model.predict_signals(noisy[start:start + 32])):
                records.append({
                    "path": u.relpath, "corpus": u.corpus, "speaker": u.speaker, "gender": u.gender,
                    "emotion": u.emotion, "noise": condition.noise, "snr_db": condition.snr_db,
                    "denoise": condition.denoise, "condition": condition.label, "status": p.status,
                    "pred_gender": p.gender, "pred_emotion": p.emotion,
                })
        if progress:
            print(f"  {condition.label}: done", flush=True)
    return pd.DataFrame.from_records(records)


def summarise(frame) -> list[dict]:
    """Per condition: clips, scored share, gender accuracy, emotion accuracy and macro-F1 (failures count as wrong)."""
    out = []
    for (noise, snr, denoise), part in frame.groupby(["noise", "snr_db", "denoise"], sort=False, dropna=False):
        ok = part.status == "ok"
        emo = emotion_metrics(part.emotion, part.pred_emotion.fillna("none"))
        out.append({
            "noise": noise, "snr_db": None if snr != snr else float(snr), "denoise": bool(denoise),
            "n": int(len(part)), "scored": float(ok.mean()),
            "gender_accuracy": float((part.pred_gender == part.gender).mean()),
            "emotion_accuracy": emo["accuracy"], "emotion_macro_f1": emo["macro_f1"],
        })
    return out


def to_markdown(summary: list[dict], *, n_clips: int, denoise: DenoiseConfig) -> str:
    lines = ["# Noise reduction study", "",
             f"{n_clips} emotional `test` clips (speakers never seen in training), shipped cascade with hard routing; "
             f"noise reduction: `noisereduce` spectral gating ({json.dumps(denoise.to_dict())}). "
             "SNR relative to the speech part of each clip. Generated by `python -m studies.noise_study`.", "",
             "| noise | SNR | gender as is | gender denoised | emotion as is | emotion denoised | emotion F1 as is | emotion F1 denoised |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    keyed = {(s["noise"], s["snr_db"], s["denoise"]): s for s in summary}
    for (noise, snr, denoise_), s in keyed.items():
        if denoise_:
            continue
        d = keyed[(noise, snr, True)]
        lines.append(f"| {noise} | {'–' if snr is None else f'{snr:g} dB'} | {100 * s['gender_accuracy']:.1f}% | "
                     f"{100 * d['gender_accuracy']:.1f}% | {100 * s['emotion_accuracy']:.1f}% | "
                     f"{100 * d['emotion_accuracy']:.1f}% | {s['emotion_macro_f1']:.3f} | {d['emotion_macro_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def study(*, n_clips: int = 240, kinds: Sequence[str] = NOISE_KINDS, snrs: Sequence[float] = SNRS_DB,
          cascade: Cascade | None = None, progress: bool = False):
    """Run the whole study; returns ``(summary, frame)``."""
    manifest = read_manifest()
    clips = select_clips(manifest, n_clips)
    babble = make_babble(babble_talkers(manifest), seconds=30.0)
    cascade = cascade or Cascade.load()
    frame = run(cascade, clips, babble=babble, conditions_=conditions(kinds, snrs), progress=progress)
    return summarise(frame), frame


def write_report(summary: list[dict], frame, stem: Path = STUDY_DIR / "report", *, command: str | None = None,
                 config=None) -> str:
    """Write ``STEM.json`` and ``STEM.md`` (:func:`training.reporting.write_report`); returns the Markdown."""
    n = int(frame.path.nunique())
    text = to_markdown(summary, n_clips=n, denoise=DenoiseConfig())
    payload = {"n_clips": n, "denoise": DenoiseConfig().to_dict(), "labels": list(EMOTION_LABELS), "conditions": summary}
    _write(stem, payload, text, command=command, config=config)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.noise_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=240, help="about this many test clips (default 240)")
    parser.add_argument("--out", type=Path, default=STUDY_DIR / "report", metavar="STEM",
                        help="writes STEM.json and STEM.md (default studies/noise_study/report)")
    args = parser.parse_args(argv)
    summary, frame = study(n_clips=args.clips, progress=True)
    print(write_report(summary, frame, args.out, command=command_line("studies.noise_study", argv), config=args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
