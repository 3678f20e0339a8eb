"""Write ``tests/data/ge2e_golden.npz``: resemblyzer's own embeddings of fixed synthetic clips.

Usage (from the project root; resemblyzer is installed into a throwaway folder,
never into the project's environment)::

    .venv/bin/pip install --no-deps --target /tmp/rz/site Resemblyzer-0.1.4-py3-none-any.whl \\
        webrtcvad_wheels-2.0.14.post1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
    PYTHONPATH=/tmp/rz/site .venv/bin/python -m speaker_encoder.make_golden

For each clip of :func:`golden_clips` it runs resemblyzer 0.1.4 exactly as
``VoiceEncoder("cpu").embed_utterance(preprocess_wav(wav))`` would, minus the
webrtcvad silence trimming that :mod:`pipeline.speaker_encoder` leaves out too:
``normalize_volume(wav, -30, increase_only=True)`` then ``embed_utterance`` (its
partials, its ``wav_to_mel_spectrogram``, its network loaded from the wheel's
``pretrained.pt``). ``tests/test_speaker_encoder.py`` regenerates the clips with
:func:`golden_clips` and requires our embeddings to match within 1e-4 cosine.

The npz holds ``names [k]``, ``embeddings [k, 256]`` float32 and
``n_partials [k]``, plus the versions that produced them.
"""
from __future__ import annotations


import numpy as np

from pipeline.paths import PROJECT_ROOT

SR = 16000
GOLDEN = PROJECT_ROOT / "tests" / "data" / "ge2e_golden.npz"

#: name -> (f0 Hz, formant scale, duration s, seed): three "voices" and a short clip.
CLIPS = {
    "low_110hz_3s": (110.0, 1.00, 3.0, 1),
    "high_220hz_3s": (220.0, 1.18, 3.0, 2),
    "mid_160hz_3s": (160.0, 1.08, 3.0, 3),
    "low_110hz_0.5s": (110.0, 1.00, 0.5, 4),
}
_FORMANTS = ((500.0, 80.0), (1500.0, 120.0), (2500.0, 160.0))  # Hz centre, Hz bandwidth


def voice(f0: float, formant_scale: float, duration_s: float, seed: int) -> np.ndarray:
    """A vowel-like harmonic complex ``[shape=(round(duration_s * 16000),)]`` float32, peak 0.5.

    Harmonics of ``f0`` (3% vibrato at 5 Hz) up to 7 kHz, weighted by three formant
    resonances scaled by ``formant_scale``, with a 3 Hz syllable envelope and faint
    noise (``seed``).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration_s * SR))) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    y = np.zeros_like(t)
    for k in range(1, int(7000 // f0) + 1):
        f = k * f0
        gain = sum(1.0 / (1.0 + ((f - c * formant_scale) / bw) ** 2) for c, bw in _FORMANTS)
        y += (gain + 0.02) / np.sqrt(k) * np.sin(k * phase)
    y *= 0.55 - 0.45 * np.cos(2 * np.pi * 3 * t)
    y += 0.002 * np.max(np.abs(y)) * rng.standard_normal(t.size)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def golden_clips() -> dict[str, np.ndarray]:
    """The clips of :data:`CLIPS`, name -> ``[shape=(n,)]`` float32 at 16 kHz."""
    return {name: voice(*spec) for name, spec in CLIPS.items()}


def main() -> int:
    import librosa
    import torch
    from importlib.metadata import version

    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume
    from resemblyzer.hparams import audio_norm_target_dBFS

    torch.set_num_threads(1)
    encoder = VoiceEncoder("cpu", verbose=False)
    names, embeddings, counts = [], [], []
    for name, wav in golden_clips().items():
        wav = normalize_volume(wav, audio_norm_target_dBFS, increase_only=True)
        embed, partials, _ = encoder.embed_utterance(wav, return_partials=True)
        names.append(name)
        embeddings.append(embed.astype(np.float32))
        counts.append(len(partials))
    np.savez(GOLDEN, names=np.array(names), embeddings=np.stack(embeddings), n_partials=np.array(counts),
             resemblyzer=version("Resemblyzer"), librosa=librosa.__version__, torch=torch.__version__)
    print(f"{GOLDEN}: {len(names)} clips, partials {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
