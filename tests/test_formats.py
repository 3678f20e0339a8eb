"""Formats beyond libsndfile (PyAV/FFmpeg), decoding without copies, and the errors of damaged containers.

Every clip is encoded here with PyAV itself, so the tests need nothing but ``requirements.txt``.
"""
from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest

av = pytest.importorskip("av")

from pipeline import errors  # noqa: E402
from pipeline.audio import AUDIO_EXTENSIONS, decode_audio, load_audio, prepare_signal  # noqa: E402
from pipeline.testing import dominant_frequency, speech_like, write_audio  # noqa: E402

F0 = 220.0
DURATION = 1.5

# extension: (FFmpeg muxer, encoder, encoder rate, channels, decoded by soundfile?)
ENCODINGS = {
    ".wav": ("wav", "pcm_s16le", 44100, 1),
    ".flac": ("flac", "flac", 22050, 1),
    ".ogg": ("ogg", "vorbis", 44100, 2),     # FFmpeg's own Vorbis encoder is stereo-only
    ".oga": ("ogg", "libopus", 48000, 1),
    ".opus": ("ogg", "libopus", 48000, 1),
    ".mp3": ("mp3", "libmp3lame", 44100, 1),
    ".m4a": ("ipod", "aac", 44100, 1),
    ".mp4": ("mp4", "aac", 48000, 2),
    ".aac": ("adts", "aac", 16000, 1),
    ".webm": ("webm", "libopus", 48000, 1),  # what browsers record
    ".weba": ("webm", "libopus", 48000, 2),
    ".mka": ("matroska", "libopus", 48000, 1),
    ".amr": ("amr", "libopencore_amrnb", 8000, 1),
    ".wma": ("asf", "wmav2", 44100, 1),
}


def encode(y: np.ndarray, sr: int, muxer: str, codec: str, rate: int, channels: int) -> bytes:
    """``y`` (mono float32 at ``sr``) encoded with PyAV into ``muxer``/``codec`` at ``rate`` Hz."""
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=muxer) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        if codec == "wmav2":
            stream.bit_rate = 64000  # its default (0) does not open
        if codec == "libopencore_amrnb":
            stream.bit_rate = 12200
        stream.codec_context.open()
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=rate)
        fifo = av.AudioFifo()
        frame_size = stream.codec_context.frame_size or 1024
        data = np.repeat(y[None, :], channels, axis=0).T.reshape(1, -1)  # packed, every channel the same
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="flt", layout=layout)
        frame.sample_rate = sr
        for converted in resampler.resample(frame) + resampler.resample(None):
            fifo.write(converted)
        while True:
            chunk = fifo.read(frame_size) or fifo.read()  # the last, partial frame too
            if chunk is None:
                break
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return speech_like(DURATION, sr=44100, f0=F0)


@pytest.fixture(scope="module")
def encoded(clip) -> dict[str, bytes]:
    return {ext: encode(clip, 44100, *spec) for ext, spec in ENCODINGS.items()}


def test_every_listed_extension_is_tested():
    assert set(AUDIO_EXTENSIONS) == set(ENCODINGS)


@pytest.mark.parametrize("ext", list(ENCODINGS))
def test_decodes_from_path_bytes_and_file_object(tmp_path, encoded, ext):
    muxer, codec, rate, channels = ENCODINGS[ext]
    path = tmp_path / f"clip{ext}"
    path.write_bytes(encoded[ext])
    from_path = decode_audio(path)
    from_bytes = decode_audio(encoded[ext], name=path.name)
    from_file = decode_audio(io.BytesIO(encoded[ext]))
    for decoded in (from_path, from_bytes, from_file):
        np.testing.assert_array_equal(decoded.samples, from_path.samples)
    assert from_path.sample_rate == rate and from_path.channels == channels
    assert from_path.samples.dtype == np.float32
    assert from_path.samples.shape[1:] == (() if channels == 1 else (channels,))
    # Codec priming/padding: ADTS AAC has no edit list, so up to 2 frames (2 x 1024) more.
    assert from_path.samples.shape[0] / rate == pytest.approx(DURATION, abs=2 * 1024 / rate + 0.01)
    mono = from_path.samples if channels == 1 else from_path.samples.mean(axis=1)
    assert dominant_frequency(mono, rate) == pytest.approx(F0, rel=0.06)
    prepared = load_audio(path)
    assert prepared.source_sample_rate == rate and prepared.source_channels == channels
    assert dominant_frequency(prepared.samples, prepared.sample_rate) == pytest.approx(F0, rel=0.06)


def test_mono_while_decoding_equals_mixing_afterwards(encoded):
    stereo = decode_audio(encoded[".mp4"])
    mono = decode_audio(encoded[".mp4"], mono=True)
    assert stereo.samples.ndim == 2 and mono.samples.ndim == 1 and mono.channels == 2
    np.testing.assert_array_equal(mono.samples, stereo.samples.astype(np.float64).mean(axis=1).astype(np.float32))
    a = prepare_signal(stereo.samples, stereo.sample_rate)
    b = prepare_signal(mono.samples, mono.sample_rate, channels=mono.channels)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.source_channels == b.source_channels == 2


def test_unseekable_file_object(encoded):
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b) -> int:
            return self._data.readinto(b)

    decoded = decode_audio(io.BufferedReader(Pipe(encoded[".webm"])))
    np.testing.assert_array_equal(decoded.samples, decode_audio(encoded[".webm"]).samples)


def _expect_unreadable(source, *, name: str, words: list[str]) -> str:
    with pytest.raises(errors.UnreadableAudioError) as info:
        load_audio(source, name=name)
    message = str(info.value)
    assert info.value.code == "unreadable"
    assert name in message
    for word in words:
        assert word in message, message
    return message


def test_truncated_m4a_is_unreadable_with_a_message(tmp_path, encoded):
    data = encoded[".m4a"]
    path = tmp_path / "cut.m4a"
    path.write_bytes(data[: len(data) // 2])  # PyAV writes the index (moov) last: it is gone
    _expect_unreadable(path, name=str(path), words=["Failed to load audio", "M4A/AAC", "WebM"])
    _expect_unreadable(data[: len(data) // 2], name="cut.m4a", words=["Failed to load audio"])


def test_garbage_in_an_m4a_header_is_unreadable(encoded):
    data = bytearray(encoded[".m4a"])
    data[8:400] = bytes(392)
    _expect_unreadable(bytes(data), name="zeroed.m4a", words=["Failed to load audio"])


def test_image_is_not_audio():
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    _expect_unreadable(png, name="photo.m4a", words=["png_pipe, not audio"])


def _video_only(muxer: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=muxer) as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, dtype=np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize("muxer,ext", [("mp4", ".mp4"), ("matroska", ".webm")])
def test_video_without_sound_says_so(muxer, ext):
    _expect_unreadable(_video_only(muxer), name=f"silent film{ext}", words=["no audio stream", "video"])


def test_audio_stream_without_frames_is_unreadable():
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as out:
        out.add_stream("libopus", rate=48000, layout="mono")
        out.start_encoding()
    _expect_unreadable(buffer.getvalue(), name="nothing.mka", words=["Failed to load audio"])


@pytest.mark.parametrize("ext", [".wav", ".m4a", ".aac", ".webm"])
def test_too_long_is_refused_before_decoding_it_whole(encoded, ext):
    with pytest.raises(errors.TooLongError) as info:
        decode_audio(encoded[ext], name=f"long{ext}", max_seconds=0.5)
    assert info.value.code == "too_long" and f"long{ext}" in str(info.value) and "limit is 0.5 s" in str(info.value)
    assert decode_audio(encoded[ext], max_seconds=DURATION + 1).samples.size


def test_long_wav_peak_memory_is_about_one_copy(tmp_path):
    """Two minutes of 44.1 kHz mono: the decoded float32 signal, its 16 kHz copy and chunks, nothing more.

    Before the chunked paths, load_audio held bytes + float32 + float64 copies and
    librosa's frame matrix: about 7 times the decoded size.
    """
    sr, seconds = 44100, 120
    y = np.tile(speech_like(10.0, sr=sr), seconds // 10)
    path = write_audio(tmp_path / "two minutes.wav", y, sr, subtype="PCM_16")
    decoded_bytes = y.size * 4
    del y
    load_audio(path)  # warm up lazy imports outside the measurement
    tracemalloc.start()
    try:
        prepared = load_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prepared.duration_s == pytest.approx(seconds, abs=1e-3)
    resampled_bytes = decoded_bytes * 16000 / sr
    chunks = 8e6  # a few float64/float32 chunks of pipeline.audio.CHUNK samples
    assert peak < decoded_bytes + resampled_bytes + chunks, f"peak {peak / 1e6:.0f} MB for {decoded_bytes / 1e6:.0f} MB"
