"""What the web app computes, without Streamlit: voices, turns, progress, session state, charts, model loading.

Known-answer checks of :mod:`pipeline.app_views`, :mod:`pipeline.app_voices`,
:mod:`pipeline.app_state` and :mod:`pipeline.app_models` with the tiny models of
``conftest.tiny_models`` and the example clips; the page itself is driven in
``tests/test_app.py`` (AppTest) and ``tests/test_browser.py`` (Chromium).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.testing import SR

ROOT = Path(__file__).resolve().parent.parent


def wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format="WAV")
    return buffer.getvalue()


def conversation_wav() -> bytes:
    """About 39 s of a man and a woman (examples/) taking turns, 0.8 s pauses: two voices."""
    man, _ = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    woman, _ = sf.read(ROOT / "examples" / "woman_angry.flac", dtype="float32")
    gap = np.zeros(int(0.8 * SR), dtype=np.float32)
    return wav_bytes(np.concatenate([man, gap, woman, gap] * 6))


def test_one_voice_recording_keeps_one_answer():
    """A long recording of one voice: the whole-recording answer is that voice's, with the same speech figure."""
    from pipeline.app_views import recording_prediction
    from pipeline.cascade import Prediction
    from pipeline.emotion import EMOTION_LABELS
    from pipeline.recording import Recording, SegmentResult
    from pipeline.voices import VoiceSummary

    def segment(start, end, emotion):
        p = Prediction(gender="female", gender_probabilities={"male": 0.1, "female": 0.9})
        p.set_emotion({"female": np.array([0.9 if e == emotion else 0.1 / 7 for e in EMOTION_LABELS])},
                      routing="hard", labels=EMOTION_LABELS)
        return SegmentResult(start, end, "A", p)

    rec = Recording(duration_s=40.0, segments=[segment(0, 6, "sad"), segment(7, 9, "angry"), segment(10, 16, "sad")],
                    voices=[VoiceSummary("A", 14.0, 3, 0.0, "female", {"male": 0.1, "female": 0.9})])
    p = recording_prediction(rec)
    assert p.ok and p.gender == "female" and p.gender_confidence == pytest.approx(0.9)
    assert p.speech_duration_s == pytest.approx(rec.speech_s) == pytest.approx(14.0)
    assert p.emotion == "sad" and p.emotion_model == "by voice"
    assert recording_prediction(Recording(duration_s=40.0, status="no_speech", error="none")).status == "no_speech"


def test_turns_are_counted_as_a_transcript_would():
    from pipeline.app_voices import count_turns
    from pipeline.cascade import Prediction
    from pipeline.recording import Recording, SegmentResult
    from pipeline.voices import VoiceSummary

    # A speaks in three pieces (one turn cut by the speech detector), then B, then A again
    voices = [SegmentResult(0, 5, "A", Prediction()), SegmentResult(5.2, 9, "A", Prediction()),
              SegmentResult(9.5, 12, "A", Prediction()), SegmentResult(12.5, 15, "B", Prediction()),
              SegmentResult(15.5, 18, "A", Prediction())]
    rec = Recording(duration_s=20.0, segments=voices, voices=[VoiceSummary("A", 14.3, 4, 0.0),
                                                              VoiceSummary("B", 2.5, 1, 12.5)])
    assert count_turns(rec) == {"A": 2, "B": 1}


def test_long_recording_progress_moves_through_the_steps(tiny_cascade, monkeypatch):
    """With a slow model the progress bar still moves: finding speech, then every few segments."""
    import time

    from pipeline.app_models import one_torch_thread, warm_up
    from pipeline.app_views import analyse_clip

    one_torch_thread()  # as the app runs, with the models warmed up as the app does when the page opens
    warm_up(tiny_cascade, (ROOT / "examples" / "man_calm.flac").read_bytes())
    slow = tiny_cascade.featurise_signal

    def featurise_slowly(*args, **kwargs):
        time.sleep(0.05)
        return slow(*args, **kwargs)

    monkeypatch.setattr(tiny_cascade, "featurise_signal", featurise_slowly)
    seen: list[tuple[float, float, str]] = []
    start = time.perf_counter()
    result = analyse_clip(tiny_cascade, "talk.wav", conversation_wav(),
                          lambda fraction, text: seen.append((time.perf_counter() - start, fraction, text)))
    assert result.recording.ok
    texts_seen = [t for _, _, t in seen]
    assert any("finding the speech" in t for t in texts_seen)
    segment_steps = [t for t in texts_seen if "segment" in t]
    n = len(result.recording.segments)
    assert len(segment_steps) >= n // 4  # a step every few segments, not one at the end
    fractions = [f for _, f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    gaps = np.diff([t for t, _, _ in seen])
    assert gaps.max() < 2.0, list(zip(gaps.round(1), texts_seen[1:]))  # never 2 s without a step (0.05 s/segment)


def test_session_state_keeps_clips_until_removed():
    from types import SimpleNamespace

    from pipeline.app_state import CLIPS_KEY, clear, page_clips, sync_widget

    def upload(file_id, name):
        return SimpleNamespace(file_id=file_id, name=name, getvalue=lambda: name.encode())

    state: dict = {}
    sync_widget(state, "uploads", [upload("1", "a.wav"), upload("2", "a.wav")], source="upload", fresh=True)
    assert [c.name for c in page_clips(state)] == ["a.wav", "a.wav (2)"]
    sync_widget(state, "uploads", [], source="upload", fresh=True)  # back from another page: the box is empty
    assert len(state[CLIPS_KEY]) == 2
    sync_widget(state, "uploads", [upload("3", "b.wav")], source="upload", fresh=False)  # a new file added
    assert [c.name for c in page_clips(state)] == ["a.wav", "a.wav (2)", "b.wav"]
    sync_widget(state, "uploads", [], source="upload", fresh=False)  # the visitor removed it in the box
    assert [c.name for c in page_clips(state)] == ["a.wav", "a.wav (2)"]
    clear(state)
    assert page_clips(state) == []


def test_clicking_a_segment_plays_from_its_start(tiny_cascade, monkeypatch):
    import streamlit

    import app
    from pipeline.app_views import ClipResult
    from pipeline.app_voices import TIMELINE_PICK
    from pipeline.cascade import Prediction

    rec = tiny_cascade.analyse_recording(conversation_wav(), name="talk.wav")
    result = ClipResult("talk.wav", 0, Prediction(duration_s=rec.duration_s), {}, recording=rec)
    state = {"segments_table_0_0": {"selection": {"rows": [], "cells": [[3, "emotion"]]}}}
    monkeypatch.setattr(streamlit, "session_state", state)
    assert app._selected_start(result, 0) is None
    app._picked_in_table(0)  # a click on any cell of row 3
    assert app._selected_start(result, 0) == pytest.approx(rec.segments[3].start_s)
    assert app._selected_start(result, 1) is None  # another clip's table
    assert app._widget_key("timeline", 0) == "timeline_0_1"  # the timeline starts afresh: any bar is a new click
    state["timeline_0_1"] = {"selection": {TIMELINE_PICK: [{"segment": 5, "start_s": rec.segments[5].start_s}]}}
    app._picked_in_chart(0)  # then a click on a bar of the timeline
    assert app._widget_key("segments_table", 0) == "segments_table_0_1"  # row 3 can be clicked again
    assert app._selected_start(result, 0) == pytest.approx(rec.segments[5].start_s)


def test_timeline_axis_ends_at_the_recording_and_bars_are_clickable():
    """The time axis runs from 0 to the file's length exactly; bars carry a click selection; no cut labels."""
    from pipeline.app_voices import TIMELINE_PICK, voice_timeline_chart
    from pipeline.cascade import Prediction
    from pipeline.recording import Recording, SegmentResult
    from pipeline.voices import VoiceSummary

    p = Prediction(emotion="disgust", emotion_probabilities={"disgust": 0.6})
    rec = Recording(duration_s=30.0, segments=[SegmentResult(1.0, 4.0, "A", p), SegmentResult(20.0, 29.5, "B", p)],
                    voices=[VoiceSummary("A", 3.0, 1, 1.0), VoiceSummary("B", 9.5, 1, 20.0)])
    spec = voice_timeline_chart(rec).to_dict()
    x = spec["encoding"]["x"]["scale"]
    assert x["domain"] == [0, 30.0] and x["nice"] is False
    assert [param["name"] for param in spec["params"]] == [TIMELINE_PICK]
    assert spec["mark"]["type"] == "bar"  # the emotion is the bar's colour (legend below), not cut text on it
    assert spec["encoding"]["color"]["legend"]["values"] == ["disgust"]


def test_bar_labels_round_like_the_text():
    """The bar chart's labels are the page's own rounding (down): never "90%" in the text beside a "91%" bar."""
    from pipeline.app_views import bar_chart
    from pipeline.confidence import percent

    spec = bar_chart({"angry": 0.9087, "sad": 0.0913}).to_dict()
    datasets = [rows for rows in spec["datasets"].values() if rows and "shown" in rows[0]]
    assert [r["shown"] for r in datasets[0]] == [percent(0.9087), percent(0.0913)] == ["90%", "9%"]


def test_models_load_once_in_the_background():
    """The page starts loading while the visitor picks a file; a first analysis waits for the load, not the warm-up."""
    import threading
    import time

    from pipeline.app_models import CascadeOptions, ModelLoader

    loads, warmed, release = [], threading.Event(), threading.Event()

    def load(options):
        time.sleep(0.2)
        loads.append(options)
        return object()

    def warm(cascade):
        release.wait(5)  # a slow warm-up
        warmed.set()

    loader = ModelLoader(load=load, warm=warm)
    options = CascadeOptions(None, "hard", "m", "f")
    loader.start(options)
    loader.start(options)  # a second page view does not load again
    start = time.perf_counter()
    cascade = loader.get(options)
    assert time.perf_counter() - start < 3 and not warmed.is_set()  # did not wait for the warm-up
    assert loader.get(options) is cascade and loads == [options]
    release.set()
    assert warmed.wait(5)


@pytest.mark.parametrize("voices", ["auto", "room"])
def test_long_recording_voices_option_reaches_the_analysis(tiny_cascade, monkeypatch, voices):
    """The page's "who is speaking" choice picks the way voices are found; the answer is complete either way."""
    from pipeline.app_views import analyse_clip
    from pipeline.recording import VOICE_MODES

    seen = []
    real = tiny_cascade.analyse_recording

    def spy(*args, **kwargs):
        seen.append(kwargs.get("diarization"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_cascade, "analyse_recording", spy)
    result = analyse_clip(tiny_cascade, "talk.wav", conversation_wav(), voices=voices)
    assert seen == [VOICE_MODES[voices]]
    rec = result.recording
    assert rec.ok and rec.voices and all(s.voice in {v.label for v in rec.voices} for s in rec.segments)
    starts = [s.start_s for s in rec.segments]
    assert starts == sorted(starts)
