"""The app's speaker-aware view of a long recording, without Streamlit calls (testable on its own).

For recordings of :data:`pipeline.app_views.TIMELINE_MIN_S` or more the page shows who speaks
when (:func:`pipeline.recording.analyse_recording`): :func:`voice_rows` / :func:`voices_frame`
(a row per voice: gender and how sure, speech, emotions as shares of its speaking time, turns
counted as a transcript would), :func:`voice_timeline_chart` (segments in a lane per voice,
coloured by emotion, clickable), :func:`segments_frame` (the segment table; a clicked row plays
from its start) and :func:`segment_csv` (the same columns as ``script.py --segments``).
``app.py`` only lays these out.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import pandas as pd

from pipeline.confidence import judge_emotion, judge_gender, percent
from pipeline.recording import VOICE_MODES, Recording
from pipeline.segments_csv import segment_rows, segments_csv_bytes

EMOTION_COLOURS = ["#9e9e9e", "#80cbc4", "#fdd835", "#1e88e5", "#e53935", "#8e24aa", "#6d4c41", "#fb8c00"]
"""One colour per emotion, in the order of :data:`pipeline.emotion.EMOTION_LABELS`."""
SEGMENT_WORDS = {"ok": "analysed", "too_short": "too short to judge", "silent": "too quiet to judge"}


@lru_cache(maxsize=1)
def speaker_models():
    """``(voice activity detector, speaker encoder)``, loaded once per process."""
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad

    return SileroVad(), SpeakerEncoder()


PROGRESS_BATCH = 4
"""Segments per model call in the app: small, so the progress bar moves every second or two."""


class SingleThreadVad:
    """A :class:`pipeline.vad.SileroVad` run on one torch thread, reporting its progress.

    silero-vad steps through a recording 32 ms at a time; each step is a tiny model call, and
    with torch's default two threads on a busy two-core machine every call waits for the other
    thread: a 77 s recording took 12-22 s instead of about 2 s on one thread (measured while two
    trainings ran). ``progress(fraction)`` is called as the frames advance. Every other attribute
    is the wrapped detector's.
    """

    def __init__(self, vad, progress: Callable[[float], None] | None = None) -> None:
        self.vad, self.progress = vad, progress

    def _one_thread(self, method: str, y, **kwargs):
        from pipeline.backend import torch_threads  # a no-op where torch does not run (the ONNX path)

        if self.progress is not None and "progress" not in kwargs:
            kwargs["progress"] = self.progress
        with torch_threads(1):
            return getattr(self.vad, method)(y, **kwargs)

    def segments(self, y, **kwargs):
        return self._one_thread("segments", y, **kwargs)

    def regions(self, y, **kwargs):
        return self._one_thread("regions", y, **kwargs)

    def probabilities(self, y, **kwargs):
        return self._one_thread("probabilities", y, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.vad, name)


class ReportingEncoder:
    """A speaker encoder that reports each batch it embeds (``progress(pieces embedded so far)``).

    Telling voices apart embeds many short pieces of speech before the segments are scored; this
    keeps the progress bar moving through that step. Every other attribute is the wrapped encoder's.
    """

    def __init__(self, encoder, progress: Callable[[int], None] | None = None) -> None:
        self.encoder, self.progress, self.done = encoder, progress, 0

    def embed_many(self, clips, *args, **kwargs):
        out = self.encoder.embed_many(clips, *args, **kwargs)
        self.done += len(clips)
        if self.progress is not None:
            self.progress(self.done)
        return out

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)


def analyse_voices(cascade, y, sr: int, name: str, progress: Callable[[int, int], None] | None = None,
                   vad_progress: Callable[[float], None] | None = None,
                   embed_progress: Callable[[int], None] | None = None, voices: str = "auto") -> Recording:
    """Who speaks when in ``y [shape=(n,)]`` (never raises for bad audio; see ``Recording.status``).

    ``voices``: how voices are found, a key of :data:`pipeline.recording.VOICE_MODES` (``auto``, ``room``).

    ``vad_progress(fraction)`` while the speech is found; ``embed_progress(pieces)`` as pieces of
    speech are compared; ``progress(done, total)`` over the speech segments, every
    :data:`PROGRESS_BATCH` segments (the results do not depend on the batch size).
    """
    try:
        vad, encoder = speaker_models()
        vad, encoder = SingleThreadVad(vad, vad_progress), ReportingEncoder(encoder, embed_progress)
    except Exception:  # noqa: BLE001 - analyse_recording loads them itself and reports what fails
        vad = encoder = None
    return cascade.analyse_recording(y, sr, name=name, progress=progress, vad=vad, encoder=encoder,
                                     batch_size=PROGRESS_BATCH, diarization=VOICE_MODES[voices])


def _mmss(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def count_turns(rec: Recording) -> dict[str, int]:
    """Turns per voice, counted as a reference transcript would: a turn lasts until another voice speaks.

    Consecutive segments of one voice (the speech detector cuts long turns and pauses into several
    segments) are one turn. Returns ``{voice label: turns}``.
    """
    turns: dict[str, int] = {v.label: 0 for v in rec.voices}
    previous = None
    for s in sorted(rec.segments, key=lambda s: (s.start_s, s.end_s)):
        if s.voice != previous:
            turns[s.voice] = turns.get(s.voice, 0) + 1
        previous = s.voice
    return turns


@dataclass(frozen=True)
class VoiceRow:
    """One voice as the page and the voice CSV show it.

    Attributes:
        label: ``"A"``, ``"B"``... in order of first speech.
        gender: ``"male"``, ``"female"`` or ``None`` (no segment could be judged).
        gender_probability: the model's probability for ``gender``, 0..1 (``None`` with it).
        uncertain: True when the gender is below the page's "uncertain" level (or unknown).
        speech_s: seconds of speech of this voice; share_of_speech: of all voices' speech, 0..1.
        emotion_shares: ``{emotion: share of this voice's judged speech time}``, largest first
            (shares of time, not probabilities).
        turns: turns, counted as :func:`count_turns`; first_s: start of its first speech, seconds.
    """

    label: str
    gender: str | None
    gender_probability: float | None
    uncertain: bool
    speech_s: float
    share_of_speech: float
    emotion_shares: dict[str, float]
    turns: int
    first_s: float


def voice_rows(rec: Recording) -> list[VoiceRow]:
    """A :class:`VoiceRow` per voice of ``rec`` (time-ordered by first speech)."""
    total = rec.speech_s or 1.0
    turns = count_turns(rec)
    rows = []
    for v in rec.voices:
        emotion_s: dict[str, float] = {}
        for s in rec.segments:
            if s.voice == v.label and s.prediction.ok and s.prediction.emotion:
                emotion_s[s.prediction.emotion] = emotion_s.get(s.prediction.emotion, 0.0) + s.duration_s
        judged = sum(emotion_s.values())
        shares = {e: t / judged for e, t in sorted(emotion_s.items(), key=lambda kv: -kv[1])} if judged else {}
        p = v.gender_confidence
        uncertain = v.gender is None or judge_gender(v.gender, p).uncertain
        rows.append(VoiceRow(v.label, v.gender, p, uncertain, v.speech_s, v.speech_s / total, shares,
                             turns.get(v.label, 0), v.first_s))
    return rows


def gender_words(row: VoiceRow) -> str:
    """``"female (96%)"``, ``"uncertain: leans male (64%)"`` or ``"unknown"``."""
    if row.gender is None:
        return "unknown"
    shown = f"{row.gender} ({percent(row.gender_probability)})"
    return f"uncertain: leans {shown}" if row.uncertain else shown


def voices_frame(rec: Recording) -> pd.DataFrame:
    """A row per voice: gender (how sure, uncertain marked), speech, emotions as shares of time, turns, first heard."""
    rows = []
    for r in voice_rows(rec):
        top = list(r.emotion_shares.items())[:3]
        rows.append({"voice": r.label, "gender": gender_words(r),
                     "speech": f"{r.speech_s:.1f} s ({r.share_of_speech:.0%} of all speech)",
                     EMOTION_TIME_COLUMN: ", ".join(f"{e} {percent(t)}" for e, t in top),
                     "turns": r.turns, "first heard": _mmss(r.first_s)})
    return pd.DataFrame(rows, columns=VOICE_COLUMNS)


EMOTION_TIME_COLUMN = "emotions (share of its speaking time)"
VOICE_COLUMNS = ["voice", "gender", "speech", EMOTION_TIME_COLUMN, "turns", "first heard"]


def segments_frame(rec: Recording) -> pd.DataFrame:
    """The segment table the page shows: times, voice, emotion and how sure (uncertain marked), status in words."""
    uncertain_voice = {r.label: r.uncertain for r in voice_rows(rec)}
    rows = []
    for s in rec.segments:
        p = s.prediction
        sure = ""
        if p.emotion_confidence is not None:
            j = judge_emotion(p.emotion or "", p.emotion_confidence, gender_uncertain=uncertain_voice.get(s.voice, True))
            sure = percent(p.emotion_confidence) + (" uncertain" if j.uncertain else "")
        rows.append({"from": _mmss(s.start_s), "to": _mmss(s.end_s), "voice": s.voice, "emotion": p.emotion or "",
                     "probability": sure, "status": SEGMENT_WORDS.get(p.status, p.status.replace("_", " "))})
    return pd.DataFrame(rows, columns=SEGMENT_TABLE_COLUMNS)


SEGMENT_TABLE_COLUMNS = ["from", "to", "voice", "emotion", "probability", "status"]


def segment_csv(rec: Recording, name: str) -> bytes:
    """The segment CSV (the columns of ``script.py --segments``)."""
    return segments_csv_bytes(segment_rows(rec, name))


TIMELINE_PICK = "pick"
"""Name of the timeline's click selection (``state["selection"][TIMELINE_PICK]``: the clicked bar's fields)."""


def voice_timeline_chart(rec: Recording):
    """Segments as bars in one lane per voice, coloured by emotion (legend below), clickable.

    The time axis runs from 0 to the recording's length exactly (no rounding up). Clicking a bar
    selects it (:data:`TIMELINE_PICK`, fields ``segment`` and ``start_s``): the page plays from there.
    """
    import altair as alt

    from pipeline.emotion import EMOTION_LABELS

    data = pd.DataFrame([{"segment": k, "start_s": s.start_s, "end_s": s.end_s, "voice": s.voice,
                          "emotion": s.prediction.emotion or "not judged",
                          "probability": percent(s.prediction.emotion_confidence)
                          if s.prediction.emotion_confidence is not None else ""}
                         for k, s in enumerate(rec.segments)])
    labels = [v.label for v in rec.voices]
    end = float(rec.duration_s or data["end_s"].max())
    pick = alt.selection_point(name=TIMELINE_PICK, fields=["segment", "start_s"], on="click", clear=False)
    domain = [*EMOTION_LABELS, "not judged"]
    colours = [*EMOTION_COLOURS[:len(EMOTION_LABELS)], "#e0e0e0"]
    present = [e for e in domain if e in set(data["emotion"])]
    bars = alt.Chart(data, title=alt.Title("Timeline", subtitle=["colour: the emotion of each segment",
                                                                 "click a bar to play from there"])).mark_bar(
        cornerRadius=2, height={"band": 0.8}, cursor="pointer").encode(
        x=alt.X("start_s:Q", title="time (s)", scale=alt.Scale(domain=[0, end], nice=False, zero=True),
                axis=alt.Axis(labelFlush=True)),
        x2="end_s:Q",
        y=alt.Y("voice:N", title="voice", sort=labels),
        color=alt.Color("emotion:N", scale=alt.Scale(domain=domain, range=colours),
                        legend=alt.Legend(orient="bottom", title="emotion", columns=3, labelLimit=90,
                                          values=present)),
        tooltip=["voice", alt.Tooltip("start_s:Q", format=".1f", title="from (s)"),
                 alt.Tooltip("end_s:Q", format=".1f", title="to (s)"), "emotion", "probability"],
    ).add_params(pick)
    return bars.properties(height=alt.Step(34))
