"""pipeline.features: shape, names, determinism, known answers, invariances, errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.audio import prepare_signal
from pipeline.errors import FeatureError, PipelineError
from pipeline.features import (
    DEFAULT_FEATURE_CONFIG,
    FEATURE_VERSION,
    FeatureConfig,
    extract_features,
    feature_groups,
    feature_names,
)
from pipeline.testing import tone, voiced_signal, white_noise

SR = 16000
NAMES = feature_names()
INDEX = {name: i for i, name in enumerate(NAMES)}


def features_of(y: np.ndarray, sr: int = SR) -> np.ndarray:
    return extract_features(prepare_signal(y, sr).samples)


def value(features: np.ndarray, name: str) -> float:
    return float(features[INDEX[name]])


@pytest.fixture(scope="module")
def speech_features():
    return features_of(voiced_signal(1.5, f0=150.0, seed=0))


# --------------------------------------------------------------------------- structure


def test_shape_dtype_finite(speech_features):
    assert speech_features.shape == (len(NAMES),)
    assert speech_features.dtype == np.float32
    assert np.all(np.isfinite(speech_features))


def test_names_unique():
    assert len(set(NAMES)) == len(NAMES)
    assert all(isinstance(n, str) and n for n in NAMES)


def test_groups_cover_every_index_once():
    groups = feature_groups()
    indices = sorted(i for members in groups.values() for i in members)
    assert indices == list(range(len(NAMES)))
    assert {"mfcc", "mfcc_delta", "mel", "mel_delta", "chroma", "contrast", "tonnetz",
            "spectral", "energy", "pitch", "rhythm"} == set(groups)
    assert len(groups["pitch"]) == 9 and len(groups["rhythm"]) == 1


def test_names_follow_config():
    config = dataclasses.replace(DEFAULT_FEATURE_CONFIG, n_mfcc=13, n_mels=40)
    assert len(feature_names(config)) == len(NAMES) - (40 - 13) * 5 - (64 - 40) * 3
    y = prepare_signal(voiced_signal(1.0, seed=2), SR).samples
    assert extract_features(y, config=config).shape == (len(feature_names(config)),)


def test_deterministic():
    y = prepare_signal(voiced_signal(1.2, f0=170.0, seed=3), SR).samples
    first = extract_features(y)
    second = extract_features(y.copy())
    np.testing.assert_array_equal(first, second)


def test_accepts_float64_and_does_not_modify_input():
    y = prepare_signal(voiced_signal(1.0, seed=4), SR).samples
    before = y.copy()
    a = extract_features(y)
    b = extract_features(y.astype(np.float64))
    np.testing.assert_array_equal(y, before)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("f0,semitones", [(200.0, 12.0), (120.0, 12 * np.log2(1.2)), (150.0, 12 * np.log2(1.5))])
def test_pitch_known_answer(f0, semitones):
    f = features_of(voiced_signal(1.5, f0=f0, seed=5))
    assert value(f, "f0_p50") == pytest.approx(semitones, abs=1.0)
    assert value(f, "f0_mean") == pytest.approx(semitones, abs=1.0)
    assert value(f, "f0_voiced_fraction") > 0.5
    # 1 % vibrato is about +-0.17 semitones: the spread stays small
    assert value(f, "f0_range") < 1.5


def test_pitch_orders_voices():
    low = features_of(voiced_signal(1.5, f0=110.0, seed=6))
    high = features_of(voiced_signal(1.5, f0=220.0, seed=6))
    assert value(high, "f0_p50") - value(low, "f0_p50") == pytest.approx(12.0, abs=1.0)


def test_noise_is_flatter_than_a_tone():
    noise = features_of(white_noise(1.0, SR, seed=7))
    sine = features_of(tone(440.0, 1.0, SR))
    assert value(noise, "flatness_mean") > value(sine, "flatness_mean")
    assert value(noise, "flatness_mean") > 0.3
    assert value(sine, "flatness_mean") < 0.05
    # and has (almost) no voiced frames in the 60-500 Hz pitch range
    assert value(noise, "f0_voiced_fraction") < value(sine, "f0_voiced_fraction")


def test_tone_centroid_and_rolloff():
    f = features_of(tone(1000.0, 1.0, SR))
    assert value(f, "centroid_p50") == pytest.approx(1.0, abs=0.15)
    assert value(f, "rolloff_p50") == pytest.approx(1.0, abs=0.15)
    assert value(f, "bandwidth_p50") < 0.5
    # 1 kHz at 16 kHz: 2 zero crossings per 16 samples
    assert value(f, "zcr_p50") == pytest.approx(2 * 1000 / SR, abs=0.01)


def test_onset_rate_of_syllables():
    y = voiced_signal(3.0, f0=160.0, seed=8, syllable_hz=4.0, am_depth=0.95)
    f = features_of(y)
    assert 1.0 <= value(f, "onset_rate") <= 10.0


def test_steady_tone_energy_is_flat():
    f = features_of(tone(300.0, 1.0, SR))
    assert value(f, "energy_p50") == pytest.approx(0.0, abs=1.0)
    assert value(f, "energy_std") < 2.0


# --------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("gain", [0.1, 3.0])
def test_level_invariance_end_to_end(gain):
    y = voiced_signal(1.5, f0=140.0, seed=9)
    reference = features_of(y)
    scaled = features_of((gain * y).astype(np.float32))
    np.testing.assert_allclose(scaled, reference, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("n", [0, 1, 100, 1023])
def test_too_short_signal(n):
    with pytest.raises(FeatureError) as info:
        extract_features(np.full(n, 0.1, dtype=np.float32))
    assert info.value.code == "feature_error"
    assert isinstance(info.value, PipelineError)


def test_two_dimensional_input():
    y = prepare_signal(voiced_signal(1.0, seed=10), SR).samples
    with pytest.raises(FeatureError):
        extract_features(np.stack([y, y]))
    with pytest.raises(FeatureError):
        extract_features(y[:, None])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(bad):
    y = prepare_signal(voiced_signal(1.0, seed=11), SR).samples.copy()
    y[500] = bad
    with pytest.raises(FeatureError):
        extract_features(y)


def test_config_roundtrip_and_version_check():
    data = DEFAULT_FEATURE_CONFIG.to_dict()
    assert FeatureConfig.from_dict(data) == DEFAULT_FEATURE_CONFIG
    assert data["version"] == FEATURE_VERSION
    with pytest.raises(FeatureError) as info:
        FeatureConfig.from_dict({**data, "version": "1.0"})
    assert "1.0" in str(info.value) and FEATURE_VERSION in str(info.value)
