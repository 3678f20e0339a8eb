"""training.noise.mix_at_snr: one mixer, two SNR definitions, each caller's numbers unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from training.noise import NoiseCondition, clip_power, corrupt, mix_at_snr, pink_noise, speech_power

SR = 16000


def _tone_with_silence() -> np.ndarray:
    """1 s of silence, 2 s of a 220 Hz tone (amplitude 0.5), 1 s of silence: half the clip is speech-like."""
    t = np.arange(2 * SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    return np.concatenate([np.zeros(SR), tone, np.zeros(SR)]).astype(np.float32)


def _snr(y: np.ndarray, noisy: np.ndarray, power: float) -> float:
    added = noisy.astype(np.float64) - y.astype(np.float64)
    return 10 * np.log10(power / np.mean(added**2))


@pytest.mark.parametrize("reference, power", [("speech", speech_power), ("clip", clip_power)])
def test_tone_plus_white_noise_at_10_db_measures_10_db(reference, power):
    y = _tone_with_silence()
    noise = np.random.default_rng(0).standard_normal(10 * SR)
    noisy = mix_at_snr(y, noise, 10.0, reference=reference, seed=3)
    assert noisy.dtype == np.float32 and noisy.shape == y.shape
    assert _snr(y, noisy, power(y)) == pytest.approx(10.0, abs=1e-3)


def test_the_two_definitions_differ_by_the_silent_share():
    y = _tone_with_silence()
    # the tone's power is 0.125; the whole clip's is half that (half of it is silence): 3 dB apart
    assert speech_power(y) == pytest.approx(0.125, rel=0.02)
    assert clip_power(y) == pytest.approx(0.0625, rel=1e-6)
    noise = np.random.default_rng(1).standard_normal(10 * SR)
    by_speech = mix_at_snr(y, noise, 10.0, reference="speech", seed=0)
    assert _snr(y, by_speech, clip_power(y)) == pytest.approx(10.0 - 10 * np.log10(2), abs=0.1)
    with pytest.raises(ValueError, match="reference"):
        mix_at_snr(y, noise, 10.0, reference="whole")


def test_emotion_augmentation_keeps_its_numbers():
    """add_noise (clip SNR, pink noise of unit power by construction) equals its former formula bit for bit."""
    from training.augment import add_noise

    rng = np.random.default_rng(7)
    for seed in range(5):
        y = (0.3 * rng.standard_normal(int(rng.integers(2000, 20000)))).astype(np.float32)
        signal_power = float(np.mean(np.square(y, dtype=np.float64)))
        before = (y + pink_noise(y.size, seed=seed) * np.sqrt(signal_power / (10 ** (15.0 / 10)))).astype(np.float32)
        assert np.array_equal(add_noise(y, snr_db=15.0, seed=seed), before)


def test_study_noise_keeps_its_numbers():
    """corrupt (speech SNR, seeded offset into the noise) equals the noise study's former formula bit for bit."""
    y = _tone_with_silence()[: 3 * SR]
    babble = np.random.default_rng(2).standard_normal(8 * SR).astype(np.float32)
    for seed, snr in ((0, 20.0), (5, 0.0)):
        rng = np.random.default_rng(seed)
        start = int(rng.integers(0, max(1, babble.size - y.size)))
        segment = np.resize(babble[start:], y.size).astype(np.float64)
        gain = np.sqrt(speech_power(y) / (np.mean(segment**2) or 1.0) / 10 ** (snr / 10))
        before = (y + gain * segment).astype(np.float32)
        assert np.array_equal(corrupt(y, NoiseCondition("babble", snr), babble=babble, seed=seed), before)
    assert corrupt(y, NoiseCondition("clean", None), babble=babble, seed=0) is y
    assert NoiseCondition("pink", 10.0).label == "pink 10 dB"
