"""Random recording channels for training: room reverberation, lossy codecs, narrow bandwidth.

A gender model trained on a handful of corpora can learn how each corpus was
*recorded* instead of how men and women sound: held out of training, Amharic men
recorded at home through Opus were called women and LibriSpeech's audiobook
readers (MP3 at the source) were called men (``studies/gender_holdout/report.md``).
This module puts a clip through a randomly drawn channel so that such cues stop
telling the classes apart.

What is *not* here, on purpose: a fixed microphone or room equaliser. It is a
linear, time-invariant filter, i.e. a constant offset per band in the log-mel
domain, which the front end's mean subtraction over time already removes.

Every effect works on a mono float waveform at ``sr`` Hz (16 kHz in this
project) and keeps its RMS, so the output can go through the same front end and
the same SNR arithmetic as the input (:func:`training.gender_batches.make_batch`
adds noise against the level :func:`pipeline.audio.load_audio` normalises to).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from pipeline.audio import resample

#: Lossy codecs libsndfile encodes, as ``(container format, subtype)`` for :func:`soundfile.write`.
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}

#: Sample rates a band limit resamples through (Nyquist 4, 5.5 and 6 kHz: telephone to low-rate MP3).
BAND_LIMIT_RATES = (8000, 11025, 12000)

#: The telephone channel: its sample rate (Hz) and pass band (Hz, 4th-order Butterworth).
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)


@dataclass(frozen=True)
class Channel:
    """One recording channel; every field ``None`` means "leave as is".

    Attributes:
        rt60_s: reverberation time of a synthetic room impulse response, seconds.
        drr_db: direct-to-reverberant energy ratio of that response, dB.
        band_limit_hz: sample rate (Hz) the clip is resampled through and back,
            which removes everything above half of it.
        codec: a key of :data:`CODECS`.
        codec_level: libsndfile ``compression_level`` in [0, 0.99] (higher = smaller file, worse quality;
            libsndfile refuses 1.0 for MP3).
        telephone: the 300-3400 Hz telephone band at 8 kHz (:func:`telephone_band`), instead of a band limit.
        pcm_u8_peak_db: the clip stored as 8-bit unsigned PCM (:func:`pcm_u8_roundtrip`) with its peak
            at this level, dB re full scale (a quiet recording keeps fewer of the 256 levels).
    """

    rt60_s: float | None = None
    drr_db: float | None = None
    band_limit_hz: int | None = None
    codec: str | None = None
    codec_level: float | None = None
    telephone: bool = False
    pcm_u8_peak_db: float | None = None

    @property
    def effects(self) -> tuple[str, ...]:
        """The effects this channel applies, in order: ``"reverb"``, ``"telephone"`` or ``"band_limit"``, the codec
        name, then ``"pcm_u8"``."""
        return ((("reverb",) if self.rt60_s is not None else ()) + (("telephone",) if self.telephone else ())
                + (("band_limit",) if self.band_limit_hz and not self.telephone else ())
                + ((self.codec,) if self.codec else ()) + (("pcm_u8",) if self.pcm_u8_peak_db is not None else ()))

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``"reverb RT60 0.45 s, mp3 level 0.8"``."""
        parts = []
        if self.rt60_s is not None:
            parts.append(f"reverb RT60 {self.rt60_s:.2f} s DRR {self.drr_db:+.0f} dB")
        if self.telephone:
            parts.append("telephone band")
        elif self.band_limit_hz is not None:
            parts.append(f"band limit {self.band_limit_hz / 2000:.1f} kHz")
        if self.codec is not None:
            parts.append(f"{self.codec} level {self.codec_level:.2f}")
        if self.pcm_u8_peak_db is not None:
            parts.append(f"8-bit PCM, peak {self.pcm_u8_peak_db:+.0f} dBFS")
        return ", ".join(parts) or "clean"


@dataclass(frozen=True)
class ChannelRecipe:
    """How :func:`draw_channel` draws a :class:`Channel`; each effect independently.

    At least one effect is always drawn (a clean channel is redrawn), so a
    channel copy of a clip always differs from the original. ``p_telephone`` and
    ``p_pcm_u8`` are 0 by default (the channels of the earlier studies); when
    positive they are drawn after the others, so the earlier draws are unchanged.
    A telephone band replaces a band limit drawn for the same channel.
    """

    p_reverb: float = 0.5
    rt60_s: tuple[float, float] = (0.15, 0.9)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    p_band_limit: float = 0.35
    p_codec: float = 0.5
    codec_level: tuple[float, float] = (0.4, 0.95)
    p_telephone: float = 0.0
    p_pcm_u8: float = 0.0
    pcm_u8_peak_db: tuple[float, float] = (-24.0, -1.0)

    def to_dict(self) -> dict:
        d = {
            "p_reverb": self.p_reverb, "rt60_s": list(self.rt60_s), "drr_db": list(self.drr_db),
            "p_band_limit": self.p_band_limit, "band_limit_rates": list(BAND_LIMIT_RATES),
            "p_codec": self.p_codec, "codecs": sorted(CODECS), "codec_level": list(self.codec_level),
        }
        if self.p_telephone or self.p_pcm_u8:
            d.update(p_telephone=self.p_telephone, telephone_band_hz=list(TELEPHONE_BAND_HZ),
                     p_pcm_u8=self.p_pcm_u8, pcm_u8_peak_db=list(self.pcm_u8_peak_db))
        return d


def draw_channel(rng: np.random.Generator, recipe: ChannelRecipe = ChannelRecipe()) -> Channel:
    """A random :class:`Channel` with at least one effect, drawn from ``recipe`` with ``rng``."""
    if max(recipe.p_reverb, recipe.p_band_limit, recipe.p_codec, recipe.p_telephone, recipe.p_pcm_u8) <= 0:
        raise ValueError("a channel recipe needs at least one effect with a positive probability")
    while True:
        fields: dict = {}
        if rng.random() < recipe.p_reverb:
            fields["rt60_s"] = float(rng.uniform(*recipe.rt60_s))
            fields["drr_db"] = float(rng.uniform(*recipe.drr_db))
        if rng.random() < recipe.p_band_limit:
            fields["band_limit_hz"] = int(BAND_LIMIT_RATES[int(rng.integers(len(BAND_LIMIT_RATES)))])
        if rng.random() < recipe.p_codec:
            names = sorted(CODECS)
            fields["codec"] = names[int(rng.integers(len(names)))]
            fields["codec_level"] = float(rng.uniform(*recipe.codec_level))
        if recipe.p_telephone > 0 and rng.random() < recipe.p_telephone:
            fields["telephone"] = True
        if recipe.p_pcm_u8 > 0 and rng.random() < recipe.p_pcm_u8:
            fields["pcm_u8_peak_db"] = float(rng.uniform(*recipe.pcm_u8_peak_db))
        if fields:
            return Channel(**fields)


def room_impulse_response(sr: int, *, rt60_s: float, drr_db: float, seed: int) -> np.ndarray:
    """A synthetic room impulse response, ``np.ndarray [shape=(n,)]`` float64, ``n = rt60_s * sr``.

    A unit direct path at sample 0, then exponentially decaying Gaussian noise
    (energy falls by 60 dB in ``rt60_s`` seconds) starting 2.5 ms later, scaled
    so that direct / reverberant energy is ``drr_db``.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be positive, got {rt60_s}")
    rng = np.random.default_rng(seed)
    n = max(int(round(rt60_s * sr)), 2)
    start = min(int(round(0.0025 * sr)), n - 1)
    t = np.arange(n - start) / sr
    tail = rng.standard_normal(n - start) * np.exp(-3.0 * np.log(10.0) * t / rt60_s)  # amplitude: -60 dB at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    h = np.zeros(n)
    h[0] = 1.0
    h[start:] += tail
    return h


def encode_decode(y: np.ndarray, sr: int, *, codec: str, level: float) -> np.ndarray:
    """``y`` encoded with a lossy ``codec`` (a key of :data:`CODECS`) in memory and decoded again.

    Returns float32 ``[shape=(len(y),)]``: the decoded signal, aligned on its
    start and cut or zero-padded to the input length (encoders add a few ms of
    priming). Uses libsndfile through :mod:`soundfile`.
    """
    import soundfile as sf

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODECS)}")
    fmt, subtype = CODECS[codec]
    buffer = io.BytesIO()
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    scale = 0.9 / peak if peak > 0.9 else 1.0  # codecs clip at full scale
    sf.write(buffer, np.asarray(y, dtype=np.float32) * scale, sr, format=fmt, subtype=subtype,
             compression_level=min(max(float(level), 0.0), 0.99))
    buffer.seek(0)
    out, out_sr = sf.read(buffer, dtype="float32", always_2d=False)
    if out_sr != sr:
        out = resample(out, out_sr, sr)
    out = out[: len(y)] / scale
    if len(out) < len(y):
        out = np.pad(out, (0, len(y) - len(out)))
    return out.astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded at its end to ``n`` samples, float32."""
    x = np.asarray(x, dtype=np.float32)[:n]
    return np.pad(x, (0, n - x.size)) if x.size < n else x


def pcm_u8_roundtrip(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` (float ``[shape=(n,)]``, full scale 1.0) written as an 8-bit unsigned PCM WAV by libsndfile and
    read back: float32 ``[shape=(n,)]``, at most 256 levels (quantisation noise about 48 dB below full scale)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(y, dtype=np.float32), sr, format="WAV", subtype="PCM_U8")
    buffer.seek(0)
    return sf.read(buffer, dtype="float32")[0]


def telephone_band(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` (float ``[shape=(n,)]`` at ``sr`` Hz) through a telephone line: resampled to
    :data:`TELEPHONE_RATE`, band-passed to :data:`TELEPHONE_BAND_HZ` (4th-order Butterworth, causal) and
    resampled back to ``sr``; float32 ``[shape=(n,)]``."""
    from scipy.signal import butter, sosfilt

    narrow = resample(np.asarray(y, dtype=np.float32), sr, TELEPHONE_RATE)
    sos = butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    return fit_length(resample(sosfilt(sos, narrow).astype(np.float32), TELEPHONE_RATE, sr), len(y))


def apply_channel(y: np.ndarray, sr: int, channel: Channel, *, seed: int = 0) -> np.ndarray:
    """``y [shape=(n,)]`` through ``channel``: reverberation, band limit or telephone band, codec, 8-bit PCM.

    The output has the same length and RMS as ``y`` (float32); the reverberation
    tail past the end of the clip is dropped, as a recorder stopping would.
    ``seed`` fixes the room impulse response.
    """
    from scipy.signal import fftconvolve

    x = np.asarray(y, dtype=np.float64)
    rms_in = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    if channel.rt60_s is not None:
        h = room_impulse_response(sr, rt60_s=channel.rt60_s, drr_db=channel.drr_db or 0.0, seed=seed)
        x = fftconvolve(x, h)[: len(y)]
    if channel.telephone:
        x = telephone_band(x, sr)
    elif channel.band_limit_hz is not None and channel.band_limit_hz < sr:
        x = resample(resample(x, sr, channel.band_limit_hz), channel.band_limit_hz, sr)
        x = x[: len(y)] if len(x) >= len(y) else np.pad(x, (0, len(y) - len(x)))
    if channel.codec is not None:
        x = encode_decode(x, sr, codec=channel.codec, level=channel.codec_level or 0.5)
    if channel.pcm_u8_peak_db is not None:
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 0:
            gain = 10 ** (channel.pcm_u8_peak_db / 20) / peak
            x = pcm_u8_roundtrip(np.asarray(x, dtype=np.float32) * gain, sr) / gain
    rms_out = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if rms_out > 0 and rms_in > 0:
        x = x * (rms_in / rms_out)
    return np.asarray(x, dtype=np.float32)
