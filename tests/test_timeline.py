"""pipeline.timeline and Cascade.predict_signals, with the tiny known-answer models."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.timeline import TIMELINE_COLUMNS, predict_timeline, window_starts
from pipeline.testing import SR, speech_like


def test_window_starts_cover_the_signal_without_redundant_tails():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(3, 4, 2) == [0]
    assert window_starts(8, 4, 2) == [0, 2, 4]


def test_predict_signals_matches_predict_signal(tiny_cascade):
    y = speech_like(1.5)
    batch = tiny_cascade.predict_signals([(y, SR), (np.zeros(SR, dtype=np.float32), SR)])
    single = tiny_cascade.predict_signal(y, SR)
    assert [p.status for p in batch] == ["ok", "silent"]
    assert batch[0].emotion_probabilities == pytest.approx(single.emotion_probabilities)
    assert batch[0].gender == single.gender == "female"


def test_timeline_keeps_pauses_and_tiles_the_recording(tiny_cascade):
    speech = speech_like(6.0, sr=22050)
    pause = np.zeros(int(5.0 * 22050), dtype=np.float32)
    y = np.concatenate([speech, pause, speech])  # 17 s at 22.05 kHz, far above the 1-hour-free path
    timeline = predict_timeline(tiny_cascade, y, 22050, window_s=4.0, hop_s=2.0, batch_size=3)
    assert timeline.duration_s == pytest.approx(17.0, abs=1e-3)
    starts = [s.start_s for s in timeline.segments]
    assert starts == pytest.approx([0, 2, 4, 6, 8, 10, 12, 14])
    assert timeline.segments[-1].end_s == pytest.approx(17.0, abs=1e-3)
    statuses = [s.prediction.status for s in timeline.segments]
    assert statuses[0] == "ok" and statuses[-1] == "ok"
    assert "silent" in statuses  # the window wholly inside the pause
    frame = timeline.to_frame()
    assert tuple(frame.columns) == TIMELINE_COLUMNS
    assert len(frame) == len(timeline.segments)
    ok = frame[frame.status == "ok"]
    assert set(ok.emotion) == {"angry"} and set(ok.gender) == {"female"}
    assert frame.loc[frame.status != "ok", "emotion_confidence"].isna().all()


def test_timeline_refuses_unusable_signal(tiny_cascade):
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError):
        predict_timeline(tiny_cascade, np.array([np.nan] * 100, dtype=np.float32), SR)
