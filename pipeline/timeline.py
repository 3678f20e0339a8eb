"""Emotion and gender over time for long recordings.

:func:`predict_timeline` prepares a whole recording once (mono, 16 kHz, with the
same decoder-side helpers as :mod:`pipeline.audio`, but with no maximum length),
cuts it into overlapping windows and scores the windows through the cascade in
batches. Each window then goes through exactly the per-clip path of
:meth:`pipeline.cascade.Cascade.predict_signals` (validation, silence trimming,
level normalisation, features, models), so a window's answer is what the batch
scorer would say for that excerpt saved as a file.

Windows that cannot be judged (silence between utterances, a short tail) stay in
the timeline with their ``status`` (``silent``, ``too_short``, ...) so the
segments always tile the recording in order.

Used by the web app for clips of a minute or longer; written so ``script.py``
can use it for a per-window CSV later (:meth:`Timeline.to_frame`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.audio import DEFAULT_AUDIO_CONFIG, resample, to_mono_float, validate_rate
from pipeline.cascade import Prediction
from pipeline.emotion import EMOTION_LABELS
from pipeline.errors import SilentAudioError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.cascade import Cascade

#: Columns of :meth:`Timeline.to_frame`, in order.
TIMELINE_COLUMNS: tuple[str, ...] = (
    "start_s", "end_s", "status", "gender", "gender_confidence", "emotion", "emotion_confidence",
    *(f"prob_{label}" for label in EMOTION_LABELS),
)


@dataclass(frozen=True)
class Segment:
    """One analysis window of a recording.

    Attributes:
        start_s: window start, seconds from the beginning of the recording.
        end_s: window end in seconds (``end_s - start_s`` is the window length,
            shorter only for the last window).
        prediction: the cascade's answer for the window; ``prediction.status`` is
            ``"ok"`` or why the window was not judged (``silent``, ``too_short``...).
    """

    start_s: float
    end_s: float
    prediction: Prediction

    @property
    def ok(self) -> bool:
        return self.prediction.ok


@dataclass
class Timeline:
    """Windowed predictions over a whole recording.

    Attributes:
        segments: the windows in time order (overlapping when ``hop_s < window_s``).
        duration_s: length of the whole recording in seconds.
    """

    segments: list[Segment] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok_segments(self) -> list[Segment]:
        """The windows that were judged (``status == "ok"``)."""
        return [s for s in self.segments if s.ok]

    def to_frame(self) -> "pd.DataFrame":
        """One row per window, columns :data:`TIMELINE_COLUMNS`.

        ``start_s``/``end_s`` in seconds; confidences and ``prob_<emotion>`` are
        probabilities in [0, 1] (NaN, and ``None`` labels, for windows not judged).
        """
        import pandas as pd

        rows = []
        for seg in self.segments:
            p = seg.prediction
            row = {
                "start_s": float(seg.start_s),
                "end_s": float(seg.end_s),
                "status": p.status,
                "gender": p.gender,
                "gender_confidence": p.gender_confidence,
                "emotion": p.emotion,
                "emotion_confidence": p.emotion_confidence,
            }
            for label in EMOTION_LABELS:
                row[f"prob_{label}"] = p.emotion_probabilities.get(label)
            rows.append(row)
        frame = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
        numeric = ["start_s", "end_s", "gender_confidence", "emotion_confidence",
                   *(f"prob_{label}" for label in EMOTION_LABELS)]
        frame[numeric] = frame[numeric].astype("float64")
        return frame


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start indices of successive windows over ``n_samples`` samples.

    Windows start every ``hop`` samples; a window is kept only if it reaches
    audio that the previous window did not cover, so the last one may be short
    and none is wholly inside its predecessor. Always at least one window.
    """
    starts = [0]
    while True:
        prev_end = starts[-1] + window
        if prev_end >= n_samples:
            return starts
        starts.append(starts[-1] + hop)


def predict_timeline(
    cascade: "Cascade",
    y: np.ndarray,
    sr: int,
    *,
    window_s: float = 4.0,
    hop_s: float = 2.0,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> Timeline:
    """Gender and emotion per window over a recording of any length.

    Args:
        cascade: loaded models (:class:`pipeline.cascade.Cascade`).
        y: ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]``, any real
            dtype (integers are scaled to [-1, 1]), as from
            :func:`pipeline.audio.decode_audio`.
        sr: sample rate of ``y`` in Hz.
        window_s: window length in seconds (default 4 s, about the RAVDESS clip
            length the emotion models were trained on).
        hop_s: seconds between window starts (default 2 s: 50 % overlap).
        batch_size: windows per model call (memory vs. speed; results do not depend on it).
        progress: optional ``progress(done, total)`` called after each batch.

    Returns:
        :class:`Timeline` with one :class:`Segment` per window, in time order.
        The signal is mixed to mono and resampled once to the models' rate
        (16 kHz); each window is then validated, trimmed and level-normalised
        on its own, like a clip. A window whose peak is more than the trimming
        threshold (40 dB) below the recording's loudest peak is marked
        ``silent`` without running the models (pauses are not speech even if a
        quiet room tone passes the absolute silence threshold).

    Raises:
        ValueError: ``window_s``/``hop_s``/``batch_size`` not positive.
        pipeline.errors.PipelineError: the signal as a whole is unusable (no
            samples, NaN/inf samples, implausible sample rate).
    """
    if not (window_s > 0 and hop_s > 0):
        raise ValueError(f"window_s and hop_s must be positive, got {window_s} and {hop_s}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    config = getattr(cascade, "audio_config", DEFAULT_AUDIO_CONFIG)
    sr = validate_rate(sr)
    mono, _ = to_mono_float(y)  # raises for empty / non-finite / non-numeric input
    duration_s = mono.size / sr
    rate = config.sample_rate
    mono = resample(mono, sr, rate, quality=config.resample_quality)

    window = max(1, int(round(window_s * rate)))
    hop = max(1, int(round(hop_s * rate)))
    starts = window_starts(mono.size, window, hop)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    floor = peak * 10 ** (-config.trim_top_db / 20)

    spans = [(s, min(s + window, mono.size)) for s in starts]
    predictions: list[Prediction | None] = [None] * len(spans)
    to_score: list[int] = []
    for i, (a, b) in enumerate(spans):
        chunk = mono[a:b]
        if chunk.size and float(np.max(np.abs(chunk))) < floor:
            predictions[i] = Prediction.failure(
                SilentAudioError(
                    f"window is more than {config.trim_top_db:.0f} dB below the loudest part of the recording (a pause)"
                ),
                duration_s=chunk.size / rate,
            )
        else:
            to_score.append(i)

    done = len(spans) - len(to_score)
    for k in range(0, len(to_score), batch_size):
        batch = to_score[k:k + batch_size]
        results = cascade.predict_signals([(mono[spans[i][0]:spans[i][1]], rate) for i in batch])
        for i, result in zip(batch, results):
            predictions[i] = result
        done += len(batch)
        if progress is not None:
            progress(done, len(spans))
    if progress is not None and not to_score:
        progress(done, len(spans))

    segments = [
        Segment(start_s=a / rate, end_s=min(b / rate, duration_s), prediction=p)
        for (a, b), p in zip(spans, predictions)
    ]
    return Timeline(segments=segments, duration_s=float(duration_s))
