"""The app's speaker-aware view of a long recording, without Streamlit calls (testable on its own).

For recordings of :data:`pipeline.app_views.TIMELINE_MIN_S` or more the page shows who speaks
when (:func:`pipeline.recording.analyse_recording`): :func:`voices_frame` (a row per voice:
gender, share of speech, dominant emotions), :func:`voice_timeline_chart` (segments in a lane
per voice, coloured by voice, the emotion written on each), :func:`segments_frame` (the segment
table the page shows; a selected row plays from its start) and :func:`segment_csv` (the same
columns as ``script.py --segments``). ``app.py`` only lays these out.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import pandas as pd

from pipeline.recording import Recording
from pipeline.segments_csv import segment_rows, segments_csv_bytes

VOICE_COLOURS = ["#1e88e5", "#fb8c00", "#43a047", "#8e24aa", "#e53935", "#00acc1", "#6d4c41", "#757575"]
SEGMENT_WORDS = {"ok": "analysed", "too_short": "too short to judge", "silent": "too quiet to judge"}


@lru_cache(maxsize=1)
def speaker_models():
    """``(voice activity detector, speaker encoder)``, loaded once per process."""
    from pipeline.speaker_encoder import SpeakerEncoder
    from pipeline.vad import SileroVad

    return SileroVad(), SpeakerEncoder()


def analyse_voices(cascade, y, sr: int, name: str, progress: Callable[[int, int], None] | None = None) -> Recording:
    """Who speaks when in ``y [shape=(n,)]`` (never raises for bad audio; see ``Recording.status``)."""
    try:
        vad, encoder = speaker_models()
    except Exception:  # noqa: BLE001 - analyse_recording loads them itself and reports what fails
        vad = encoder = None
    return cascade.analyse_recording(y, sr, name=name, progress=progress, vad=vad, encoder=encoder)


def _mmss(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def voices_frame(rec: Recording) -> pd.DataFrame:
    """A row per voice: gender (and how sure), share of the speech, dominant emotions, turns, first heard."""
    total = rec.speech_s or 1.0
    rows = []
    for v in rec.voices:
        emotion_s: dict[str, float] = {}
        for s in rec.segments:
            if s.voice == v.label and s.prediction.ok and s.prediction.emotion:
                emotion_s[s.prediction.emotion] = emotion_s.get(s.prediction.emotion, 0.0) + s.duration_s
        judged = sum(emotion_s.values())
        top = sorted(emotion_s.items(), key=lambda kv: -kv[1])[:3]
        gender = f"{v.gender} ({v.gender_confidence:.0%})" if v.gender else "unknown"
        rows.append({"voice": v.label, "gender": gender, "share of speech": f"{v.speech_s / total:.0%}",
                     "speech": f"{v.speech_s:.1f} s",
                     "dominant emotions": ", ".join(f"{e} {t / judged:.0%}" for e, t in top) if judged else "",
                     "turns": v.n_segments, "first heard": _mmss(v.first_s)})
    return pd.DataFrame(rows, columns=["voice", "gender", "share of speech", "speech", "dominant emotions", "turns",
                                       "first heard"])


def segments_frame(rec: Recording) -> pd.DataFrame:
    """The segment table the page shows: times, voice, emotion and how sure, status in words."""
    rows = []
    for s in rec.segments:
        p = s.prediction
        rows.append({"from": _mmss(s.start_s), "start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2),
                     "voice": s.voice, "emotion": p.emotion or "",
                     "confidence": f"{p.emotion_confidence:.0%}" if p.emotion_confidence is not None else "",
                     "status": SEGMENT_WORDS.get(p.status, p.status.replace("_", " "))})
    return pd.DataFrame(rows, columns=["from", "start_s", "end_s", "voice", "emotion", "confidence", "status"])


def segment_csv(rec: Recording, name: str) -> bytes:
    """The segment CSV (the columns of ``script.py --segments``)."""
    return segments_csv_bytes(segment_rows(rec, name))


def voice_timeline_chart(rec: Recording):
    """Segments as bars in one lane per voice, coloured by voice, each labelled with its emotion."""
    import altair as alt

    data = pd.DataFrame([{"start_s": s.start_s, "end_s": s.end_s, "mid_s": (s.start_s + s.end_s) / 2,
                          "voice": s.voice, "emotion": s.prediction.emotion or "?",
                          "confidence": s.prediction.emotion_confidence or 0.0} for s in rec.segments])
    labels = [v.label for v in rec.voices]
    x = alt.X("start_s:Q", title="time (s)", scale=alt.Scale(domain=[0, rec.duration_s or data["end_s"].max()]))
    y = alt.Y("voice:N", title="voice", sort=labels)
    bars = alt.Chart(data, title="Who speaks when (text: the segment's emotion)").mark_bar(
        cornerRadius=2, height={"band": 0.8}).encode(
        x=x, x2="end_s:Q", y=y,
        color=alt.Color("voice:N", sort=labels, legend=None,
                        scale=alt.Scale(domain=labels, range=VOICE_COLOURS[:max(1, len(labels))]
                                        if len(labels) <= len(VOICE_COLOURS) else alt.Undefined)),
        tooltip=["voice", alt.Tooltip("start_s:Q", format=".1f", title="from (s)"),
                 alt.Tooltip("end_s:Q", format=".1f", title="to (s)"), "emotion",
                 alt.Tooltip("confidence:Q", format=".0%")],
    )
    text = alt.Chart(data).mark_text(color="white", fontSize=10).encode(
        x=alt.X("mid_s:Q"), y=y, text="emotion:N")
    return (bars + text).properties(height=alt.Step(40))
