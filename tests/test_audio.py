"""pipeline.audio: decoding, validation, mixing, resampling, trimming, levels."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf

from pipeline import errors
from pipeline.audio import DEFAULT_AUDIO_CONFIG, PreparedAudio, load_audio, prepare_signal
from pipeline.testing import (
    align_and_correlate,
    dominant_frequency,
    silence,
    tone,
    voiced_signal,
    white_noise,
    with_silence_padding,
    write_audio,
)

SR = 16000
TARGET_RMS = 10 ** (DEFAULT_AUDIO_CONFIG.target_rms_dbfs / 20)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(y, dtype=np.float64)))))


def assert_prepared(p: PreparedAudio) -> None:
    assert isinstance(p, PreparedAudio)
    assert p.sample_rate == SR
    assert p.samples.dtype == np.float32
    assert p.samples.ndim == 1
    assert np.all(np.isfinite(p.samples))
    assert p.speech_duration_s == pytest.approx(p.samples.size / SR)
    assert rms(p.samples) == pytest.approx(TARGET_RMS, rel=1e-3)


@pytest.fixture(scope="module")
def speech():
    """1.5 s of voiced signal at 16 kHz, no padding (trimming keeps almost all of it)."""
    return voiced_signal(1.5, sr=SR, f0=150.0, seed=1)


# --------------------------------------------------------------------------- decoding

LOSSLESS = [
    ("clip.wav", "PCM_U8", None, 0.95),
    ("clip.wav", "PCM_16", None, 0.999),
    ("clip.wav", "PCM_24", None, 0.999),
    ("clip.wav", "PCM_32", None, 0.999),
    ("clip.wav", "FLOAT", None, 0.999),
    ("clip.flac", None, None, 0.999),
    ("clip.ogg", "VORBIS", "OGG", 0.9),
    ("CLIP.WAV", "PCM_16", "WAV", 0.999),
    ("CLIP.FLAC", None, "FLAC", 0.999),
    ("my clip (take 2).wav", "PCM_16", None, 0.999),
    ("émotion – 音声 ✓.flac", None, None, 0.999),
]


@pytest.mark.parametrize("name,subtype,fmt,min_corr", LOSSLESS, ids=[f"{n}-{s}" for n, s, _, _ in LOSSLESS])
def test_decodes_formats_and_names(tmp_path, speech, name, subtype, fmt, min_corr):
    path = write_audio(tmp_path / name, speech, SR, subtype=subtype, format=fmt)
    p = load_audio(path)
    assert_prepared(p)
    assert p.source_sample_rate == SR and p.source_channels == 1
    assert p.duration_s == pytest.approx(speech.size / SR, abs=1e-3)
    reference = prepare_signal(speech, SR).samples
    assert abs(p.samples.size - reference.size) <= 2 * DEFAULT_AUDIO_CONFIG.trim_hop_length
    assert align_and_correlate(p.samples, reference, max_lag=400) > min_corr


@pytest.mark.parametrize("name", ["clip.mp3", "CLIP.MP3"])
def test_decodes_mp3_loosely(tmp_path, name):
    y = tone(440.0, 1.5, SR, amplitude=0.5)
    path = write_audio(tmp_path / name, y, SR, format="MP3", subtype="MPEG_LAYER_III")
    p = load_audio(path)
    assert_prepared(p)
    # the encoder adds delay/padding: duration within 0.1 s, dominant frequency kept
    assert p.duration_s == pytest.approx(1.5, abs=0.1)
    assert dominant_frequency(p.samples, SR) == pytest.approx(440.0, abs=5.0)


def test_decodes_stereo_44k_flac_file(tmp_path):
    y = voiced_signal(1.0, sr=44100, f0=200.0, seed=3)
    stereo = np.stack([y, 0.5 * y], axis=1)
    p = load_audio(write_audio(tmp_path / "stereo.flac", stereo, 44100))
    assert_prepared(p)
    assert p.source_sample_rate == 44100 and p.source_channels == 2
    assert p.duration_s == pytest.approx(1.0, abs=1e-3)


def test_bytes_and_file_object_input(tmp_path, speech):
    path = write_audio(tmp_path / "clip.wav", speech, SR, subtype="PCM_16")
    from_path = load_audio(path)
    data = open(path, "rb").read()
    from_bytes = load_audio(data)
    from_bytearray = load_audio(bytearray(data))
    from_stream = load_audio(io.BytesIO(data))
    with open(path, "rb") as handle:
        from_handle = load_audio(handle)
    for p in (from_bytes, from_bytearray, from_stream, from_handle):
        assert_prepared(p)
        np.testing.assert_array_equal(p.samples, from_path.samples)


def test_flac_and_ogg_bytes_input(speech):
    for fmt, subtype in (("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")):
        buf = io.BytesIO()
        sf.write(buf, speech, SR, format=fmt, subtype=subtype)
        p = load_audio(buf.getvalue())
        assert_prepared(p)
        assert p.duration_s == pytest.approx(1.5, abs=0.1)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 96000])
def test_resampling_keeps_length_and_frequency(sr):
    duration = 1.0
    y = tone(440.0, duration, sr, amplitude=0.5)
    p = prepare_signal(y, sr)
    assert_prepared(p)
    assert p.source_sample_rate == sr
    assert p.duration_s == pytest.approx(duration, abs=1.0 / sr)
    # a steady tone is not trimmed (except maybe one hop at an edge)
    assert abs(p.samples.size - int(duration * SR)) <= DEFAULT_AUDIO_CONFIG.trim_hop_length
    assert dominant_frequency(p.samples, SR) == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 96000])
def test_resampled_voiced_signal_matches_native(sr):
    native = prepare_signal(voiced_signal(1.0, sr=SR, f0=180.0, seed=4), SR).samples
    other = prepare_signal(voiced_signal(1.0, sr=sr, f0=180.0, seed=4), sr).samples
    assert abs(other.size - native.size) <= 2 * DEFAULT_AUDIO_CONFIG.trim_hop_length
    # the 8 kHz version lacks everything above 4 kHz; the harmonics are below 2 kHz
    assert align_and_correlate(other, native, max_lag=400) > 0.9


# --------------------------------------------------------------------------- layout and dtypes


def test_stereo_and_multichannel_mixed_to_mono(speech):
    mono = prepare_signal(speech, SR)
    stereo = prepare_signal(np.stack([speech, speech], axis=1), SR)
    six = prepare_signal(np.stack([speech] * 6, axis=1), SR)
    assert stereo.source_channels == 2 and six.source_channels == 6
    for p in (stereo, six):
        assert_prepared(p)
        np.testing.assert_allclose(p.samples, mono.samples, rtol=1e-5, atol=1e-6)


def test_mixing_averages_channels():
    left = tone(300.0, 1.0, SR, amplitude=0.4)
    right = tone(700.0, 1.0, SR, amplitude=0.4)
    p = prepare_signal(np.stack([left, right], axis=1), SR)
    spectrum = np.abs(np.fft.rfft(p.samples))
    freqs = np.fft.rfftfreq(p.samples.size, 1 / SR)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(300.0) == pytest.approx(at(700.0), rel=0.05)


def test_channels_first_orientation(speech):
    rows = np.stack([speech, speech], axis=1)
    p_rows = prepare_signal(rows, SR)
    p_cols = prepare_signal(rows.T.copy(), SR)
    assert p_cols.source_channels == 2
    np.testing.assert_array_equal(p_cols.samples, p_rows.samples)
    p_six = prepare_signal(np.stack([speech] * 6, axis=0), SR)
    assert p_six.source_channels == 6
    np.testing.assert_allclose(p_six.samples, p_rows.samples, rtol=1e-5, atol=1e-6)


def test_integer_dtypes_are_scaled(speech):
    reference = prepare_signal(speech, SR)
    as_int16 = np.round(speech * 32767).astype(np.int16)
    as_int32 = np.round(speech.astype(np.float64) * (2**31 - 1)).astype(np.int32)
    as_uint8 = np.round(speech * 127 + 128).astype(np.uint8)
    for y, corr in ((as_int16, 0.999), (as_int32, 0.999), (as_uint8, 0.95)):
        p = prepare_signal(y, SR)
        assert_prepared(p)
        assert align_and_correlate(p.samples, reference.samples, max_lag=400) > corr
    # uint8 centred on 128: a constant 128 is digital silence, not a DC offset
    with pytest.raises(errors.SilentAudioError):
        prepare_signal(np.full(SR, 128, dtype=np.uint8), SR)
    with pytest.raises(errors.SilentAudioError):
        prepare_signal(np.zeros(SR, dtype=np.int16), SR)


def test_int16_file_scaling_matches_float(tmp_path, speech):
    """A PCM_16 WAV and the int16 array it holds give the same prepared signal."""
    as_int16 = np.round(speech * 32767).astype(np.int16)
    path = write_audio(tmp_path / "x.wav", as_int16, SR, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(path).samples, prepare_signal(as_int16, SR).samples, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- errors


def _expect(exc_type, code, func, *args, path=None, **kwargs):
    with pytest.raises(exc_type) as info:
        func(*args, **kwargs)
    assert type(info.value) is exc_type
    assert info.value.code == code
    assert isinstance(info.value, errors.PipelineError)
    assert info.value.message
    if path is not None:
        assert str(path) in str(info.value)
        assert info.value.path == str(path)
    return info.value


def test_error_codes_are_distinct():
    classes = [
        errors.UnreadableAudioError, errors.FileAccessError, errors.EmptyAudioError,
        errors.NonFiniteAudioError, errors.SilentAudioError, errors.TooShortError, errors.TooLongError,
        errors.FeatureError, errors.ModelError, errors.PredictionError,
    ]
    codes = [c.code for c in classes]
    assert len(set(codes)) == len(codes)
    assert all(issubclass(c, errors.PipelineError) for c in classes)


def test_text_file_named_wav_is_unreadable(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio, just some text\n" * 20)
    _expect(errors.UnreadableAudioError, "unreadable", load_audio, path, path=path)


def test_png_named_wav_is_unreadable(tmp_path):
    path = tmp_path / "image.wav"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8))
    path.write_bytes(png)
    _expect(errors.UnreadableAudioError, "unreadable", load_audio, path, path=path)


def test_random_bytes_are_unreadable(tmp_path):
    blob = bytes(np.random.default_rng(42).integers(0, 256, 4096, dtype=np.uint8))
    _expect(errors.UnreadableAudioError, "unreadable", load_audio, blob)
    path = tmp_path / "random.flac"
    path.write_bytes(blob)
    _expect(errors.UnreadableAudioError, "unreadable", load_audio, path, path=path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect(errors.EmptyAudioError, "empty", load_audio, path, path=path)
    _expect(errors.EmptyAudioError, "empty", load_audio, b"")


def test_wav_header_without_frames(tmp_path):
    path = write_audio(tmp_path / "noframes.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    assert os.path.getsize(path) > 0
    _expect(errors.EmptyAudioError, "empty", load_audio, path, path=path)
    stereo = write_audio(tmp_path / "noframes2.wav", np.zeros((0, 2), dtype=np.float32), SR, subtype="PCM_16")
    _expect(errors.EmptyAudioError, "empty", load_audio, stereo, path=stereo)


def test_truncated_wav_mid_header(tmp_path, speech):
    data = open(write_audio(tmp_path / "full.wav", speech, SR, subtype="PCM_16"), "rb").read()
    for cut in (4, 12, 20, 30):
        path = tmp_path / f"cut{cut}.wav"
        path.write_bytes(data[:cut])
        with pytest.raises(errors.PipelineError) as info:
            load_audio(path)
        assert isinstance(info.value, (errors.UnreadableAudioError, errors.EmptyAudioError))
        assert str(path) in str(info.value)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.9])
def test_truncated_wav_mid_data(tmp_path, speech, fraction):
    data = open(write_audio(tmp_path / "full.wav", speech, SR, subtype="PCM_16"), "rb").read()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: 44 + int((len(data) - 44) * fraction) + 1])  # odd cut: half a sample
    try:
        p = load_audio(path)
    except errors.PipelineError as exc:
        assert str(path) in str(exc)
    else:
        assert_prepared(p)
        assert p.duration_s <= speech.size / SR


def test_non_finite_samples():
    for bad in (np.nan, np.inf, -np.inf):
        y = voiced_signal(1.0, seed=5)
        y[1234] = bad
        _expect(errors.NonFiniteAudioError, "non_finite", prepare_signal, y, SR)


def test_non_finite_float_wav(tmp_path):
    y = voiced_signal(1.0, seed=5)
    y[100] = np.nan
    path = write_audio(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    _expect(errors.NonFiniteAudioError, "non_finite", load_audio, path, path=path)


def test_digital_silence(tmp_path):
    _expect(errors.SilentAudioError, "silent", prepare_signal, silence(2.0), SR)
    path = write_audio(tmp_path / "silence.wav", silence(2.0), SR, subtype="PCM_16")
    _expect(errors.SilentAudioError, "silent", load_audio, path, path=path)


def test_noise_at_minus_100_dbfs_is_silent():
    y = white_noise(2.0, SR, peak=10 ** (-100 / 20), seed=6)
    _expect(errors.SilentAudioError, "silent", prepare_signal, y, SR)


def test_too_short_clip(tmp_path):
    y = voiced_signal(0.05, seed=7)
    _expect(errors.TooShortError, "too_short", prepare_signal, y, SR)
    path = write_audio(tmp_path / "short.wav", y, SR, subtype="PCM_16")
    _expect(errors.TooShortError, "too_short", load_audio, path, path=path)


def test_click_between_silences_is_too_little_speech():
    click = voiced_signal(0.1, seed=8, am_depth=0.0)
    y = with_silence_padding(click, SR, 1.0, 1.0)
    err = _expect(errors.TooShortError, "too_short", prepare_signal, y, SR)
    assert "ms of sound" in err.message


def test_too_long_clip():
    # 3601 samples at 1 Hz: over the one-hour limit, refused before any resampling
    y = np.random.default_rng(0).standard_normal(3601).astype(np.float32)
    _expect(errors.TooLongError, "too_long", prepare_signal, y, 1)


@pytest.mark.parametrize("sr", [0, -16000, "abc", None, 2_000_000])
def test_bad_sample_rate(sr, speech):
    _expect(errors.UnreadableAudioError, "unreadable", prepare_signal, speech, sr)


def test_bad_arrays():
    _expect(errors.EmptyAudioError, "empty", prepare_signal, np.zeros(0, dtype=np.float32), SR)
    _expect(errors.EmptyAudioError, "empty", prepare_signal, np.zeros((0, 2), dtype=np.float32), SR)
    _expect(errors.EmptyAudioError, "empty", prepare_signal, np.float32(0.5), SR)
    _expect(errors.UnreadableAudioError, "unreadable", prepare_signal, np.zeros((2, 2, 2)), SR)
    _expect(errors.UnreadableAudioError, "unreadable", prepare_signal, np.array(["a", "b"]), SR)
    _expect(errors.UnreadableAudioError, "unreadable", prepare_signal, np.ones(SR, dtype=bool), SR)
    _expect(errors.UnreadableAudioError, "unreadable", prepare_signal, np.ones(SR, dtype=np.complex64), SR)


def test_missing_path(tmp_path):
    path = tmp_path / "nope.wav"
    err = _expect(errors.FileAccessError, "not_found", load_audio, path, path=path)
    assert "not found" in err.message
    _expect(errors.FileAccessError, "not_found", load_audio, str(path), path=path)


def test_directory_path(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    _expect(errors.FileAccessError, "not_found", load_audio, folder, path=folder)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_permissions(tmp_path, speech):
    path = write_audio(tmp_path / "locked.wav", speech, SR, subtype="PCM_16")
    os.chmod(path, 0)
    try:
        err = _expect(errors.FileAccessError, "not_found", load_audio, path, path=path)
        assert "permission" in err.message.lower()
    finally:
        os.chmod(path, 0o644)


def test_permission_denied_on_open_is_file_access_error(tmp_path, speech, monkeypatch):
    """Same path as chmod 000, but also runs as root: ``open`` raises PermissionError."""
    import pipeline.audio as audio_module

    path = write_audio(tmp_path / "locked.wav", speech, SR, subtype="PCM_16")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audio_module, "open", denied, raising=False)
    err = _expect(errors.FileAccessError, "not_found", load_audio, path, path=path)
    assert "permission" in err.message.lower()


def test_name_overrides_label(speech):
    with pytest.raises(errors.TooShortError) as info:
        load_audio(io.BytesIO(_wav_bytes(speech[:800])), name="upload.wav")
    assert info.value.path == "upload.wav"
    assert str(info.value).startswith("upload.wav: ")


def _wav_bytes(y, sr=SR, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


# --------------------------------------------------------------------------- levels and trimming


def test_quiet_recording_is_accepted_and_normalised(speech):
    loud = prepare_signal(speech, SR)
    quiet_y = speech * (10 ** (-55 / 20) / np.max(np.abs(speech)))
    quiet = prepare_signal(quiet_y.astype(np.float32), SR)
    assert_prepared(quiet)
    assert rms(quiet.samples) == pytest.approx(rms(loud.samples), rel=1e-4)
    np.testing.assert_allclose(quiet.samples, loud.samples, rtol=1e-3, atol=1e-4)


def test_quiet_16bit_file_is_accepted(tmp_path, speech):
    quiet_y = speech * (10 ** (-55 / 20) / np.max(np.abs(speech)))
    p = load_audio(write_audio(tmp_path / "quiet.wav", quiet_y, SR, subtype="PCM_16"))
    assert_prepared(p)


def test_trimming_leading_and_trailing_silence():
    voiced = voiced_signal(2.0, seed=9)
    y = with_silence_padding(voiced, SR, 1.0, 1.0)
    p = prepare_signal(y, SR)
    assert_prepared(p)
    assert p.duration_s == pytest.approx(4.0, abs=1e-6)
    assert p.speech_duration_s == pytest.approx(2.0, abs=0.15)
    # what is kept is the voiced part, not the silence
    assert align_and_correlate(p.samples, prepare_signal(voiced, SR).samples, max_lag=800) > 0.99


def test_trimming_is_relative_to_the_loudest_frame():
    voiced = voiced_signal(2.0, seed=10)
    hiss = white_noise(1.0, SR, peak=10 ** (-70 / 20), seed=11)  # 64 dB below the speech peak
    y = np.concatenate([hiss, voiced, hiss])
    p = prepare_signal(y, SR)
    assert p.speech_duration_s == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize("gain", [0.1, 3.0, "peak"])
def test_level_invariance(speech, gain):
    y = with_silence_padding(speech, SR, 0.3, 0.2)
    reference = prepare_signal(y, SR)
    scaled = y / np.max(np.abs(y)) if gain == "peak" else y * gain
    p = prepare_signal(scaled.astype(np.float32), SR)
    assert p.samples.shape == reference.samples.shape
    np.testing.assert_allclose(p.samples, reference.samples, rtol=1e-4, atol=1e-5)
    assert p.speech_duration_s == reference.speech_duration_s


# --------------------------------------------------------------------------- known bugs in pipeline/audio.py

@pytest.mark.parametrize("peak_dbfs", [-55.0, -70.0])
def test_quiet_padded_recording_is_trimmed_like_a_loud_one(peak_dbfs):
    y = with_silence_padding(voiced_signal(2.0, seed=9), SR, 1.0, 1.0)
    loud = prepare_signal(y, SR)
    quiet = prepare_signal((y * (10 ** (peak_dbfs / 20) / np.max(np.abs(y)))).astype(np.float32), SR)
    assert quiet.speech_duration_s == pytest.approx(2.0, abs=0.15)
    assert quiet.speech_duration_s == loud.speech_duration_s
    np.testing.assert_allclose(quiet.samples, loud.samples, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("gain", [1e20, 1e30])
def test_level_invariance_huge_finite_float_samples(speech, gain):
    y = with_silence_padding(speech, SR, 0.3, 0.2)
    reference = prepare_signal(y, SR)
    scaled = (y.astype(np.float64) * gain).astype(np.float32)
    assert np.all(np.isfinite(scaled))
    p = prepare_signal(scaled, SR)
    np.testing.assert_allclose(p.samples, reference.samples, rtol=1e-4, atol=1e-5)
