"""Property tests: whatever goes in, the pipeline answers with a result or a PipelineError.

``prepare_signal`` then ``extract_features`` on arbitrary arrays (any length, rate,
dtype, channel layout, with NaN/inf/huge/tiny values), and ``load_audio`` on
arbitrary bytes, must either return a valid result or raise
:class:`pipeline.errors.PipelineError` -- never any other exception.

The audio config used here only lowers ``max_duration_s`` to 10 s: with rates down
to 1 Hz, a 20000-sample array would otherwise be resampled to hours of 16 kHz audio
and make each example take minutes. Every other threshold is the default, and the
too-long path is still exercised (asserted below).
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.audio import DEFAULT_AUDIO_CONFIG, PreparedAudio, load_audio, prepare_signal
from pipeline.errors import PipelineError, TooLongError
from pipeline.features import extract_features, feature_names
from pipeline.testing import voiced_signal

CONFIG = dataclasses.replace(DEFAULT_AUDIO_CONFIG, max_duration_s=10.0)
N_FEATURES = len(feature_names())
TARGET_RMS = 10 ** (CONFIG.target_rms_dbfs / 20)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

DTYPES = (np.float32, np.float64, np.int16, np.int32, np.uint8)
SPECIAL = (np.nan, np.inf, -np.inf, 1e30, -1e30, 3.4e38, 1e300, 1e-30, 1e-45, -0.0, 0.0, 1.0, -1.0)


def _elements(dtype):
    if np.issubdtype(dtype, np.floating):
        width = 32 if dtype == np.float32 else 64
        return st.floats(allow_nan=True, allow_infinity=True, width=width)
    return st.integers(np.iinfo(dtype).min, np.iinfo(dtype).max)


@st.composite
def shapes(draw):
    n = draw(st.integers(0, 20000))
    layout = draw(st.sampled_from(["mono", "rows", "cols"]))
    if layout == "mono":
        return (n,)
    channels = draw(st.integers(1, 6))
    per_channel = max(n // channels, 0)
    return (per_channel, channels) if layout == "rows" else (channels, per_channel)


@st.composite
def raw_arrays(draw):
    """Arbitrary arrays: random elements, or a structured signal with special values sprinkled in."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes())
    kind = draw(st.sampled_from(["random", "constant", "structured"]))
    if kind == "random":
        # hypothesis fills most of a big array with one value and sets a few others
        return draw(hnp.arrays(dtype, shape, elements=_elements(dtype), fill=_elements(dtype)))
    if kind == "constant":
        return np.full(shape, draw(_elements(dtype)), dtype=dtype)
    n = shape[0] if len(shape) == 1 else max(shape)
    y = voiced_signal(n / 16000, sr=16000, f0=draw(st.floats(60, 400)), seed=draw(st.integers(0, 3)))[:n]
    y = np.pad(y, (0, n - y.size)).astype(np.float64)
    level = draw(st.sampled_from([1e-12, 1e-6, 1e-4, 1e-3, 0.01, 0.5, 1.0, 2.0, 1e6, 1e30, 1e300]))
    y = y * level
    if len(shape) == 2:
        y = y[:, None].repeat(min(shape), axis=1) if shape[0] >= shape[1] else y[None, :].repeat(min(shape), axis=0)
        y = y.reshape(shape) if y.shape == shape else y[: shape[0], : shape[1]]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        y = np.clip(np.round(y / max(level, 1.0) * info.max * 0.9) + (info.max + 1) // 2 * (info.min == 0), info.min, info.max)
        return y.astype(dtype)
    with np.errstate(all="ignore"):
        y = y.astype(dtype)
    flat = y.reshape(-1)
    for _ in range(draw(st.integers(0, 3))):
        if flat.size:
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(SPECIAL))
    return y


def _check_prepared(p: PreparedAudio, n_in: int, sr: int) -> None:
    assert isinstance(p, PreparedAudio)
    assert p.sample_rate == CONFIG.sample_rate
    assert p.source_sample_rate == sr
    assert p.samples.ndim == 1 and p.samples.dtype == np.float32
    assert p.samples.size >= CONFIG.min_speech_s * CONFIG.sample_rate
    assert np.all(np.isfinite(p.samples)), "prepare_signal returned non-finite samples"
    assert CONFIG.min_duration_s <= p.duration_s <= CONFIG.max_duration_s
    rms = float(np.sqrt(np.mean(np.square(p.samples, dtype=np.float64))))
    assert rms == pytest.approx(TARGET_RMS, rel=1e-2)


@SETTINGS
@given(y=raw_arrays(), sr=st.one_of(st.integers(1, 200000), st.sampled_from([8000, 16000, 22050, 44100, 48000])))
def test_prepare_then_extract_never_crashes(y, sr):
    n_frames = max(y.shape) if y.ndim == 2 and min(y.shape) > 0 else (y.shape[0] if y.ndim == 2 else y.size)
    try:
        prepared = prepare_signal(y, sr, config=CONFIG)
    except TooLongError:
        event("prepare: too_long")
        assert n_frames / sr > CONFIG.max_duration_s
        return
    except PipelineError as exc:
        event(f"prepare: {exc.code}")
        return
    _check_prepared(prepared, y.size, sr)
    try:
        features = extract_features(prepared.samples)
    except PipelineError as exc:
        event(f"features: {exc.code}")
        return
    event("features: ok")
    assert features.shape == (N_FEATURES,)
    assert features.dtype == np.float32
    assert np.all(np.isfinite(features))


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_load_audio_arbitrary_bytes(data):
    try:
        result = load_audio(data, config=CONFIG)
    except PipelineError as exc:
        event(f"load: {exc.code}")
        return
    event("load: ok")
    _check_prepared(result, 0, result.source_sample_rate)


def _wav_header_bytes():
    buf = io.BytesIO()
    sf.write(buf, voiced_signal(0.5, seed=1), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


WAV = _wav_header_bytes()


@SETTINGS
@given(
    cut=st.integers(0, len(WAV)),
    flips=st.lists(st.tuples(st.integers(0, len(WAV) - 1), st.integers(0, 255)), max_size=8),
)
def test_load_audio_corrupted_wav(cut, flips):
    """A real WAV, truncated and with random bytes overwritten (header included)."""
    data = bytearray(WAV[:cut])
    for position, byte in flips:
        if position < len(data):
            data[position] = byte
    try:
        result = load_audio(bytes(data), config=CONFIG)
    except PipelineError as exc:
        event(f"corrupt: {exc.code}")
        return
    event("corrupt: ok")
    _check_prepared(result, 0, result.source_sample_rate)
