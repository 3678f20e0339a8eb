"""Handcrafted utterance-level statistics read by the emotion models.

One frozen, versioned :class:`FeatureConfig` defines every parameter; every
output dimension has a name (:func:`feature_names`). The input is a
:class:`pipeline.audio.PreparedAudio` signal: 16 kHz mono, silence-trimmed and
RMS-normalised, so no feature depends on recording level.

Groups (frame-level descriptors, 32 ms window, 10 ms hop, pooled over the clip):

========== ===================================================== ==========
group      frame descriptor                                      statistics
========== ===================================================== ==========
mfcc       40 MFCCs of the log-mel spectrogram                   mean, std, median
mfcc_delta first and second time derivatives of the MFCCs        std (each)
mel        64-band log-mel power (dB)                             mean, std
mel_delta  time derivative of the log-mel bands                  std
chroma     12-bin STFT chroma                                    mean, std
contrast   7-band spectral contrast                              mean, std
tonnetz    6-d tonal centroid, from the STFT chroma               mean, std
spectral   centroid, bandwidth, rolloff (Hz/1000), flatness, ZCR  mean, std, p10, p50, p90
energy     frame RMS in dB relative to the clip's loudest frame   mean, std, p10, p50, p90, delta std
pitch      F0 (YIN, 60-500 Hz) in semitones, on voiced frames     mean, std, p10, p50, p90, range, slope, delta abs mean, voiced fraction
rhythm     onsets per second of trimmed audio                      value
========== ===================================================== ==========

Tonnetz is computed from the STFT chroma, not from the HPSS harmonic component and
a CQT chroma: that variant takes most of the extraction time of such a feature set
(about 80%, as measured when this set was specified), while the STFT chroma is already
computed. ``python -m pipeline.bench`` reports the feature stage's time per clip.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from pipeline.errors import FeatureError

FEATURE_VERSION = "2.0"


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of feature extraction; frozen and saved beside each model."""

    version: str = FEATURE_VERSION
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0
    n_mfcc: int = 40
    delta_width: int = 9
    rolloff_percent: float = 0.85
    f0_min: float = 60.0
    f0_max: float = 500.0
    f0_frame_length: int = 1024
    voicing_db: float = -30.0
    min_frames: int = 9

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        config = cls(**data)
        if config.version != FEATURE_VERSION:
            raise FeatureError(
                f"model expects feature version {config.version}, this code computes {FEATURE_VERSION}; "
                "retrain the model or install the matching release"
            )
        return config


DEFAULT_FEATURE_CONFIG = FeatureConfig()

_SPECTRAL = ("centroid", "bandwidth", "rolloff", "flatness", "zcr")
_PERCENTILE_STATS = ("mean", "std", "p10", "p50", "p90")
_PITCH_STATS = ("mean", "std", "p10", "p50", "p90", "range", "slope", "delta_abs_mean", "voiced_fraction")


@lru_cache(maxsize=8)
def feature_names(config: FeatureConfig = DEFAULT_FEATURE_CONFIG) -> tuple[str, ...]:
    """Names of the output dimensions, in order (``len == n_features``)."""
    names: list[str] = []
    for stat in ("mean", "std", "median"):
        names += [f"mfcc{i:02d}_{stat}" for i in range(config.n_mfcc)]
    for order in ("d1", "d2"):
        names += [f"mfcc{i:02d}_{order}_std" for i in range(config.n_mfcc)]
    for stat in ("mean", "std"):
        names += [f"mel{i:02d}_{stat}" for i in range(config.n_mels)]
    names += [f"mel{i:02d}_d1_std" for i in range(config.n_mels)]
    for stat in ("mean", "std"):
        names += [f"chroma{i:02d}_{stat}" for i in range(12)]
    for stat in ("mean", "std"):
        names += [f"contrast{i}_{stat}" for i in range(7)]
    for stat in ("mean", "std"):
        names += [f"tonnetz{i}_{stat}" for i in range(6)]
    for descriptor in _SPECTRAL:
        names += [f"{descriptor}_{stat}" for stat in _PERCENTILE_STATS]
    names += [f"energy_{stat}" for stat in _PERCENTILE_STATS] + ["energy_delta_std"]
    names += [f"f0_{stat}" for stat in _PITCH_STATS]
    names += ["onset_rate"]
    return tuple(names)


def feature_groups(config: FeatureConfig = DEFAULT_FEATURE_CONFIG) -> dict[str, list[int]]:
    """Map group name (mfcc, mfcc_delta, mel, chroma, ...) to its column indices."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(feature_names(config)):
        if name.startswith(("mfcc", "mel")):
            base = "mfcc" if name.startswith("mfcc") else "mel"
            group = f"{base}_delta" if "_d1_" in name or "_d2_" in name else base
        elif name.startswith(("centroid", "bandwidth", "rolloff", "flatness", "zcr")):
            group = "spectral"
        elif name.startswith("f0_"):
            group = "pitch"
        elif name.startswith("onset"):
            group = "rhythm"
        else:
            group = name.split("_")[0].rstrip("0123456789")
        groups.setdefault(group, []).append(index)
    return groups


def _percentile_stats(x: np.ndarray) -> list[float]:
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return [float(np.mean(x)), float(np.std(x)), float(p10), float(p50), float(p90)]


def extract_features(y: np.ndarray, *, config: FeatureConfig = DEFAULT_FEATURE_CONFIG) -> np.ndarray:
    """Compute the utterance statistics of one prepared signal.

    Args:
        y: ``np.ndarray [shape=(n_samples,)]``, float32 mono at
            ``config.sample_rate`` Hz, as produced by :func:`pipeline.audio.prepare_signal`.
        config: the frozen feature configuration.

    Returns:
        ``np.ndarray [shape=(n_features,)]`` float32, ordered as :func:`feature_names`.

    Raises:
        FeatureError: the signal is too short for the analysis windows or a
            descriptor came out non-finite.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise FeatureError(f"expected a mono signal of shape (n,), got {y.shape}")
    n_frames = 1 + y.size // config.hop_length
    if n_frames < config.min_frames or y.size < config.f0_frame_length:
        raise FeatureError(
            f"signal of {y.size} samples is too short for analysis; "
            f"need at least {max(config.min_frames * config.hop_length, config.f0_frame_length)}"
        )
    if not np.all(np.isfinite(y)):
        raise FeatureError("signal contains non-finite samples")
    sr = config.sample_rate
    power = np.abs(librosa.stft(y, n_fft=config.n_fft, hop_length=config.hop_length)) ** 2
    magnitude = np.sqrt(power)
    mel = _mel_basis(config) @ power
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc)
    d1 = librosa.feature.delta(mfcc, width=config.delta_width, order=1, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=config.delta_width, order=2, mode="nearest")
    # Equivalent to librosa.feature.chroma_stft(S=power, tuning=0.0): speech has no tuning to estimate.
    chroma = librosa.util.normalize(_chroma_basis(config) @ power, norm=np.inf, axis=0)
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=config.n_fft, fmin=200.0, n_bands=6)
    tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=sr)
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr)[0] / 1000.0
    bandwidth = librosa.feature.spectral_bandwidth(S=magnitude, sr=sr)[0] / 1000.0
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=sr, roll_percent=config.rolloff_percent)[0] / 1000.0
    flatness = librosa.feature.spectral_flatness(S=magnitude)[0]
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=config.n_fft, hop_length=config.hop_length)[0]
    rms = librosa.feature.rms(S=magnitude, frame_length=config.n_fft)[0]
    energy_db = librosa.amplitude_to_db(rms, ref=np.max, amin=1e-8, top_db=80.0)

    parts: list[np.ndarray | list[float]] = [
        mfcc.mean(axis=1), mfcc.std(axis=1), np.median(mfcc, axis=1),
        d1.std(axis=1), d2.std(axis=1),
        log_mel.mean(axis=1), log_mel.std(axis=1),
        librosa.feature.delta(log_mel, width=config.delta_width, order=1, mode="nearest").std(axis=1),
        chroma.mean(axis=1), chroma.std(axis=1),
        contrast.mean(axis=1), contrast.std(axis=1),
        tonnetz.mean(axis=1), tonnetz.std(axis=1),
    ]
    for descriptor in (centroid, bandwidth, rolloff, flatness, zcr):
        parts.append(_percentile_stats(descriptor))
    parts.append(_percentile_stats(energy_db) + [float(np.std(np.diff(energy_db)))])
    parts.append(_pitch_stats(y, energy_db, config=config))
    envelope = librosa.onset.onset_strength(S=log_mel, sr=sr, hop_length=config.hop_length)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=config.hop_length)
    parts.append([len(onsets) / (y.size / sr)])

    features = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts]).astype(np.float32)
    if features.shape[0] != len(feature_names(config)):
        raise FeatureError(f"internal error: {features.shape[0]} features, {len(feature_names(config))} names")
    if not np.all(np.isfinite(features)):
        bad = [feature_names(config)[i] for i in np.flatnonzero(~np.isfinite(features))[:5]]
        raise FeatureError(f"non-finite feature values ({', '.join(bad)})")
    return features


@lru_cache(maxsize=8)
def _mel_basis(config: FeatureConfig) -> np.ndarray:
    """Mel filterbank ``[shape=(n_mels, 1 + n_fft // 2)]`` (Slaney scale, area-normalised)."""
    import librosa

    return librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
    )


@lru_cache(maxsize=8)
def _chroma_basis(config: FeatureConfig) -> np.ndarray:
    """Chroma filterbank ``[shape=(12, 1 + n_fft // 2)]``, as ``librosa.feature.chroma_stft`` uses."""
    import librosa

    return librosa.filters.chroma(sr=config.sample_rate, n_fft=config.n_fft, tuning=0.0)


def _pitch_stats(y: np.ndarray, energy_db: np.ndarray, *, config: FeatureConfig) -> list[float]:
    """F0 statistics in semitones re 100 Hz over voiced frames (YIN + energy gate)."""
    import librosa

    f0 = librosa.yin(
        y, fmin=config.f0_min, fmax=config.f0_max, sr=config.sample_rate,
        frame_length=config.f0_frame_length, hop_length=config.hop_length,
    )
    n = min(f0.size, energy_db.size)
    f0, energy_db = f0[:n], energy_db[:n]
    voiced = (energy_db > config.voicing_db) & (f0 > config.f0_min * 1.05) & (f0 < config.f0_max * 0.95)
    fraction = float(voiced.mean()) if n else 0.0
    if voiced.sum() < 3:
        return [0.0] * (len(_PITCH_STATS) - 1) + [fraction]
    semitones = 12.0 * np.log2(f0[voiced] / 100.0)
    p10, p50, p90 = np.percentile(semitones, [10, 50, 90])
    times = np.flatnonzero(voiced) * (config.hop_length / config.sample_rate)
    slope = float(np.polyfit(times, semitones, 1)[0]) if np.ptp(times) > 0 else 0.0
    # Jumps between consecutive voiced frames only (octave errors are clipped at 12 st).
    steps = np.abs(np.diff(semitones))[np.diff(np.flatnonzero(voiced)) == 1]
    delta = float(np.mean(np.minimum(steps, 12.0))) if steps.size else 0.0
    return [float(np.mean(semitones)), float(np.std(semitones)), float(p10), float(p50), float(p90),
            float(p90 - p10), slope, delta, fraction]
