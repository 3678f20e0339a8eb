"""What the web app computes and draws for a clip, without Streamlit calls (testable on its own).

``analyse_clip`` scores one uploaded clip with the cascade and adds the pictures
(waveform, labelled spectrogram, and for recordings of :data:`TIMELINE_MIN_S` or
more who speaks when: voices, their gender and each segment's emotion, drawn by
:mod:`pipeline.app_voices`); ``summary_frame`` is the compact table of
several clips; the ``*_chart`` functions build the Altair charts; ``plain_status``
turns a status code into words. ``app.py`` only lays these out.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

import pipeline.audio
from pipeline.audio import AUDIO_EXTENSIONS
from pipeline.batch import prediction_row
from pipeline.cascade import Cascade, Prediction
from pipeline.confidence import EMOTION_UNCERTAIN_BELOW, Judgement, judge_emotion, judge_gender, percent
from pipeline.paths import PROJECT_ROOT
from pipeline.recording import Recording

HOUR_OF_WAV_MB = 3600 * 44100 * 2 / 1e6
"""An hour of 16-bit mono WAV at 44.1 kHz: 317.5 MB."""
MAX_UPLOAD_MB = 400
"""Largest upload, MB: an hour of 16-bit mono 44.1 kHz WAV fits. Keep equal to .streamlit/config.toml maxUploadSize."""
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
UPLOAD_EXTENSIONS: tuple[str, ...] = tuple(e.lstrip(".").lower() for e in AUDIO_EXTENSIONS)
"""File name endings the app reads (from :data:`pipeline.audio.AUDIO_EXTENSIONS`)."""
FORMATS_TEXT: str = getattr(pipeline.audio, "SUPPORTED_FORMATS", ", ".join(e.upper() for e in UPLOAD_EXTENSIONS))
"""The formats as the page names them (``pipeline.audio.SUPPORTED_FORMATS`` where it exists)."""
TIMELINE_MIN_S = 30.0
"""Recordings at least this long also get the speaker-aware view (voices, segments)."""
EXAMPLES_DIR = PROJECT_ROOT / "examples"
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("woman_angry.flac", "Woman, angry"),
    ("woman_sad.flac", "Woman, sad"),
    ("man_calm.flac", "Man, calm"),
    ("man_happy.flac", "Man, happy"),
    ("man_sad.flac", "Man, sad"),
)
"""Example clips shipped in examples/ (RAVDESS test split, CC BY-NC-SA 4.0; see examples/README.md)."""

STATUS_WORDS = {
    "ok": "analysed",
    "unsupported": "not a format the app reads",
    "too_large": "file too large",
    "unreadable": "not a readable recording",
    "not_found": "file could not be read",
    "empty": "no sound in the file",
    "non_finite": "damaged audio",
    "silent": "silent or almost silent",
    "too_short": "too short",
    "too_long": "longer than an hour",
    "no_speech": "no speech found",
    "feature_error": "analysis failed",
    "model_failed": "analysis failed",
    "model_error": "model problem",
    "internal_error": "analysis failed",
}
ADVICE = {
    "unsupported": "Convert it to one of the formats listed above the upload box.",
    "too_large": "Cut it, or save it as FLAC, Opus or MP3, which are several times smaller.",
    "unreadable": "The file is damaged or is not audio. Try exporting it again from the recording app.",
    "empty": "The file holds no sound. Check the recording.",
    "non_finite": "The file holds invalid sample values. Try exporting it again.",
    "silent": "The file holds no audible sound: check that it is the recording you meant to send.",
    "too_short": "Record at least a second of speech; 3-10 seconds works best.",
    "too_long": "Split it into parts shorter than an hour.",
    "no_speech": "The recording seems to hold only silence, noise or music.",
}
SOFT_STATUSES = {"silent", "too_short", "empty", "too_large", "unsupported", "too_long", "no_speech"}
"""Statuses about the recording itself (a warning), not a failure of the app (an error)."""
PLAIN_ENOUGH = {"silent", "empty"}
"""Statuses whose plain words say all there is: the page shows no technical detail for them."""


@dataclass
class ClipResult:
    """Everything shown for one clip, computed once and kept in the session."""

    name: str
    size: int
    prediction: Prediction
    row: dict[str, str]
    waveform: pd.DataFrame | None = None
    spectrogram: bytes | None = None  # PNG with labelled time and frequency axes
    recording: Recording | None = None  # who speaks when (recordings of TIMELINE_MIN_S or more)
    notes: list[str] = field(default_factory=list)
    settings: str = ""  # the options it was analysed with (shown when they have changed since)

    @property
    def gender(self) -> Judgement | None:
        p = self.prediction
        return judge_gender(p.gender, p.gender_confidence) if p.ok else None

    @property
    def emotion(self) -> Judgement | None:
        p, g = self.prediction, self.gender
        return judge_emotion(p.emotion, p.emotion_confidence, gender_uncertain=g.uncertain) if p.ok else None

    @property
    def long(self) -> bool:
        return (self.prediction.duration_s or 0.0) >= TIMELINE_MIN_S or self.recording is not None

    @property
    def several_voices(self) -> bool:
        """True when the recording was split into two voices or more (no single answer then)."""
        rec = self.recording
        return rec is not None and rec.ok and len(rec.voices) > 1


def refusal(name: str, size: int) -> Prediction | None:
    """A ``Prediction`` refusing the upload before decoding (format or size), or ``None``."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in UPLOAD_EXTENSIONS:
        shown = f"'.{ext}'" if ext else "no file name ending"
        return Prediction(status="unsupported", file=name,
                          error=f"the app reads {FORMATS_TEXT}; not {shown}")
    if size > MAX_UPLOAD_BYTES:
        return Prediction(status="too_large", file=name,
                          error=f"the file is {size / 1024 / 1024:.0f} MB; the limit is {MAX_UPLOAD_MB} MB")
    return None


Progress = Callable[[float, str], None]


def analyse_clip(cascade: Cascade, name: str, data: bytes, progress: Progress | None = None, *,
                 voices: str = "auto") -> ClipResult:
    """Score one ``(name, bytes)`` clip and add what the page draws. Never raises for bad input.

    Clips shorter than :data:`TIMELINE_MIN_S` get the cascade's answer for the whole clip.
    Longer recordings are split by voice (:func:`pipeline.app_voices.analyse_voices`) and their
    whole-recording answer is summed up from the voices (:func:`recording_prediction`) instead
    of running the models a second time over the whole recording. ``progress(fraction, text)``
    is called as the work advances (fraction 0..1 of this clip; for long recordings after every
    few speech segments). ``voices``: how a long recording's voices are found
    (:data:`pipeline.recording.VOICE_MODES`).
    """
    report = progress or (lambda fraction, text: None)
    refused = refusal(name, len(data))
    if refused is not None:
        report(1.0, f"{name}: refused")
        return ClipResult(name, len(data), refused, prediction_row(refused, name=name))
    report(0.0, f"{name}: reading the audio")
    mono16 = _decode16(cascade, name, data)
    rate = cascade.audio_config.sample_rate
    if mono16 is not None and mono16.size / rate >= TIMELINE_MIN_S:
        return _analyse_long(cascade, name, data, mono16, report, voices)
    report(0.1, f"{name}: gender and emotion")
    [p] = cascade.predict_files([data], names=[name])
    result = ClipResult(name, len(data), p, prediction_row(p, name=name))
    if mono16 is not None and (p.ok or p.status == "too_long"):
        try:
            _add_pictures(result, mono16, rate)
        except Exception as exc:  # the prediction stands even if a picture fails
            result.notes.append(f"Could not draw the pictures: {type(exc).__name__}: {exc}")
    report(1.0, f"{name}: done")
    return result


def analyse_clips(cascade: Cascade, clips: Sequence[tuple[str, bytes]],
                  progress: Progress | None = None) -> list[ClipResult]:
    """:func:`analyse_clip` for each clip; ``progress(fraction, text)`` over all of them."""
    results = []
    for k, (name, data) in enumerate(clips):
        def part(fraction: float, text: str, k=k) -> None:
            if progress is not None:
                progress((k + fraction) / len(clips), f"Clip {k + 1} of {len(clips)}: {text}")
        results.append(analyse_clip(cascade, name, data, part))
    return results


def _decode16(cascade: Cascade, name: str, data: bytes) -> np.ndarray | None:
    """The clip as mono float32 at the models' rate, ``[shape=(n,)]``; ``None`` if it cannot be decoded."""
    from pipeline.audio import decode_audio, resample, to_mono_float

    try:
        decoded = decode_audio(data, name=name, mono=True)
        mono, _ = to_mono_float(decoded.samples)
        return resample(mono, decoded.sample_rate, cascade.audio_config.sample_rate)
    except Exception:  # noqa: BLE001 - the cascade names what is wrong with the file
        return None


def _add_pictures(result: ClipResult, mono16: np.ndarray, rate: int) -> None:
    result.waveform = waveform_frame(mono16, rate)
    result.spectrogram = spectrogram_png(mono16, rate)


def _analyse_long(cascade: Cascade, name: str, data: bytes, mono16: np.ndarray, report: Progress,
                  voices: str = "auto") -> ClipResult:
    """Who speaks when, and the whole-recording answer summed up from it (see :func:`recording_prediction`)."""
    from pipeline.app_voices import analyse_voices

    rate = cascade.audio_config.sample_rate
    scoring = [False]  # True once the segments are being scored (the encoder is then used for them)
    furthest = [0.0]
    outer = report

    def report(fraction: float, text: str) -> None:  # the bar never moves back
        furthest[0] = max(furthest[0], fraction)
        outer(furthest[0], text)

    def speech(fraction: float) -> None:
        report(0.05 * fraction, f"{name}: finding the speech ({fraction:.0%})")

    def compared(pieces: int) -> None:
        if not scoring[0]:
            report(0.05 + 0.15 * (1 - 1 / (1 + pieces / 20)), f"{name}: telling the voices apart ({pieces} pieces)")

    def segments(done: int, total: int) -> None:
        scoring[0] = True
        report(0.2 + 0.7 * done / max(total, 1), f"{name}: voices and emotions, segment {done} of {total}")

    rec = analyse_voices(cascade, mono16, rate, name, progress=segments, vad_progress=speech, embed_progress=compared,
                         voices=voices)
    p = recording_prediction(rec, routing=cascade.routing)
    p.file = name
    result = ClipResult(name, len(data), p, prediction_row(p, name=name), recording=rec)
    report(0.92, f"{name}: drawing the pictures")
    try:
        _add_pictures(result, mono16, rate)
    except Exception as exc:  # the answer stands even if a picture fails
        result.notes.append(f"Could not draw the pictures: {type(exc).__name__}: {exc}")
    report(1.0, f"{name}: done")
    return result


def recording_prediction(rec: Recording, *, routing: str = "hard") -> Prediction:
    """A whole-recording :class:`Prediction` summed up from its voices and segments.

    Gender probabilities: the voices' means, weighted by their seconds of speech; emotion
    probabilities: the judged segments' probabilities, weighted by their duration;
    ``speech_duration_s``: the seconds of speech found (the same figure as the voice table);
    ``emotion_model``: ``"by voice"`` (each segment answered by the model of its voice's gender,
    or ``"blended"`` with soft routing). A recording whose voices were not found keeps its status.
    """
    if not rec.ok:
        return Prediction(status=rec.status, error=rec.error, file=rec.file, duration_s=rec.duration_s)
    voiced = [v for v in rec.voices if v.gender_probabilities]
    judged = [s for s in rec.segments if s.prediction.ok and s.prediction.emotion_probabilities]
    if not voiced or not judged:
        return Prediction(status="too_short", error="no speech segment was long enough to judge",
                          file=rec.file, duration_s=rec.duration_s)
    weights = np.array([v.speech_s for v in voiced]) + 1e-9
    female = float(np.average([v.gender_probabilities["female"] for v in voiced], weights=weights))
    gender_probs = {"male": 1.0 - female, "female": female}
    w = np.array([s.duration_s for s in judged]) + 1e-9
    labels = list(judged[0].prediction.emotion_probabilities)
    probs = np.average([[s.prediction.emotion_probabilities[e] for e in labels] for s in judged], axis=0, weights=w)
    return Prediction(duration_s=rec.duration_s, speech_duration_s=rec.speech_s,
                      gender=max(gender_probs, key=gender_probs.get), gender_probabilities=gender_probs,
                      emotion=labels[int(np.argmax(probs))],
                      emotion_probabilities={e: float(probs[i]) for i, e in enumerate(labels)},
                      emotion_model="blended" if routing == "soft" else "by voice")


def waveform_frame(y: np.ndarray, sr: int, points: int = 1500) -> pd.DataFrame:
    """Min/max envelope of ``y [shape=(n,)]`` in about ``points`` columns (time in s)."""
    n = y.size
    step = max(1, int(np.ceil(n / points)))
    usable = (n // step) * step
    blocks = y[:usable].reshape(-1, step) if usable else y.reshape(1, -1)
    return pd.DataFrame({
        "time_s": np.arange(blocks.shape[0]) * step / sr,
        "min": blocks.min(axis=1), "max": blocks.max(axis=1),
    })


def spectrogram_png(y: np.ndarray, sr: int, *, n_mels: int = 96, max_frames: int = 1500) -> bytes:
    """Log-mel spectrogram of ``y [shape=(n,)]`` as a PNG with time (s) and frequency (Hz) axes and a dB scale."""
    import librosa
    import matplotlib

    matplotlib.use("Agg", force=False)
    import librosa.display
    import matplotlib.pyplot as plt

    hop = max(160, int(np.ceil(y.size / max_frames / 160)) * 160)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=hop, n_mels=n_mels, fmax=sr / 2)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    fig, ax = plt.subplots(figsize=(10, 3.0), dpi=110)
    try:
        image = librosa.display.specshow(db, sr=sr, hop_length=hop, x_axis="time", y_axis="mel", fmax=sr / 2,
                                         ax=ax, cmap="viridis")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (Hz)")
        fig.colorbar(image, ax=ax, format="%+.0f dB", pad=0.01).set_label("level")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


MICROPHONE_ADVICE = {
    "silent": "No speech could be heard. Check that the microphone is allowed and switched on, and speak a little louder.",
    "empty": "Nothing was recorded. Check that the browser may use the microphone.",
}
"""Advice for the microphone recording, where it differs from the advice for an uploaded file."""


def plain_status(p: Prediction, *, recorded: bool = False) -> tuple[str, str]:
    """``(what happened, what to do)`` in plain words for a clip that was not analysed.

    ``recorded``: the clip came from the page's microphone recorder (the advice then names the microphone).
    """
    words = STATUS_WORDS.get(p.status, "could not be analysed")
    advice = (recorded and MICROPHONE_ADVICE.get(p.status)) or ADVICE.get(
        p.status, "This is a problem in the app, not in your file; please report it.")
    return words[0].upper() + words[1:], advice


def probability_words(result: ClipResult) -> str:
    """The model's probabilities for the answer, e.g. ``"gender 94%, emotion 90%"`` (uncertain ones marked)."""
    g, e = result.gender, result.emotion
    if g is None or e is None or result.several_voices:
        return ""
    return ", ".join(f"{what} {percent(j.probability)}" + (" (uncertain)" if j.uncertain else "")
                     for what, j in (("gender", g), ("emotion", e)))


def answer_words(result: ClipResult) -> str:
    """The answer in a few words: ``"female, angry"``, ``"uncertain: leans male, sad"`` or ``"2 voices"``."""
    g, e = result.gender, result.emotion
    if g is None or e is None:
        return ""
    if result.several_voices:
        return f"{len(result.recording.voices)} voices: see each voice below"
    text = f"{g.label}, {e.label}"
    return f"uncertain: leans {text}" if (g.uncertain or e.uncertain) else text


SUMMARY_COLUMNS = ["file", "answer", "model's probability", "status"]


def summary_frame(results: Sequence[ClipResult]) -> pd.DataFrame:
    """One row per clip (and per voice of a recording split by voice): answer, probabilities, status in words."""
    from pipeline.app_voices import voice_rows

    rows = []
    for r in results:
        p = r.prediction
        if p.ok:
            status = "analysed" + (f"; {voices_words(r)}" if r.recording is not None else "")
        else:
            status = f"not analysed: {STATUS_WORDS.get(p.status, p.status)}"
        rows.append({"file": r.name, "answer": answer_words(r), "model's probability": probability_words(r),
                     "status": status})
        if r.several_voices:
            for v in voice_rows(r.recording):
                main = next(iter(v.emotion_shares.items()), None)
                gender = v.gender or "gender unknown"
                answer = (f"uncertain: leans {gender}" if v.uncertain and v.gender else gender) + (
                    f", mostly {main[0]} ({percent(main[1])} of its speaking time)" if main else "")
                sure = (f"gender {percent(v.gender_probability)}" + (" (uncertain)" if v.uncertain else "")
                        if v.gender_probability is not None else "")
                rows.append({"file": f"{r.name}, voice {v.label}", "answer": answer, "model's probability": sure,
                             "status": f"{v.speech_s:.0f} s of speech"})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def voices_words(result: ClipResult) -> str:
    """``"2 voices"``, or why no voices were found (plain words), for a long recording."""
    rec = result.recording
    if rec is None:
        return "voices not analysed"
    if not rec.ok:
        return STATUS_WORDS.get(rec.status, "voices could not be analysed")
    return f"{len(rec.voices)} voice" + ("" if len(rec.voices) == 1 else "s")


def recording_words(rec: Recording) -> tuple[str, str]:
    """``(what happened, what to do)`` in plain words for a recording whose voices were not found."""
    words = STATUS_WORDS.get(rec.status, "could not be analysed")
    return words[0].upper() + words[1:], ADVICE.get(rec.status, "")


# -- charts (Altair, imported lazily) -------------------------------------------------------------
GENDER_COLOURS = {"female": "#d81b60", "male": "#00897b"}


def bar_chart(probabilities: dict[str, float]):
    """Horizontal bars, one per emotion, with the "uncertain below" level marked."""
    import altair as alt

    probs = pd.DataFrame({"emotion": list(probabilities), "probability": list(probabilities.values()),
                          "shown": [percent(p) for p in probabilities.values()]})  # as the text rounds it
    base = alt.Chart(probs, title="Probability of each emotion").encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title=None,
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1.0], labelFlush=True)),
        y=alt.Y("emotion:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
    )
    bars = base.mark_bar(color="#4c78a8")
    labels = base.mark_text(align="left", dx=4).encode(text="shown:N")
    rule = alt.Chart(pd.DataFrame({"x": [EMOTION_UNCERTAIN_BELOW]})).mark_rule(strokeDash=[4, 4], color="#888").encode(
        x="x:Q", tooltip=[alt.Tooltip("x:Q", format=".0%", title="uncertain below")])
    return (bars + labels + rule).properties(height=alt.Step(22))


def waveform_chart(wave: pd.DataFrame):
    import altair as alt

    return alt.Chart(wave).mark_area(opacity=0.8).encode(
        x=alt.X("time_s:Q", title="time (s)", axis=alt.Axis(tickCount=8, labelFlush=True),
                scale=alt.Scale(domain=[0, float(wave["time_s"].max()) if len(wave) else 1.0], nice=False)),
        y=alt.Y("min:Q", title="amplitude"), y2="max:Q",
    ).properties(height=160)
