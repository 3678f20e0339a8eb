"""The Streamlit app, driven headlessly with streamlit.testing.v1.AppTest.

AppTest in streamlit 1.67 drives ``st.file_uploader`` directly
(``FileUploader.set_value([(name, bytes, mime), ...])``), so these tests upload
through the real widget, press *Analyse* and read what the page shows.

Known-answer tests use the tiny models of ``conftest.tiny_models`` (gender from the
sidebar's "local folder" option, emotion folders from ``SER_MALE_MODEL_DIR`` /
``SER_FEMALE_MODEL_DIR``): always *female* and *angry*. One test runs the shipped
models on a real RAVDESS test-split clip.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.batch import CSV_COLUMNS
from pipeline.testing import SR, speech_like

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 300  # seconds per script run: the first run loads TensorFlow and torch


def wav_bytes(y: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format=fmt)
    return buffer.getvalue()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def new_app():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def tiny_app(tiny_models, monkeypatch):
    """The app with the tiny models: gender via the sidebar's folder option, emotion via env."""
    monkeypatch.setenv("SER_MALE_MODEL_DIR", str(tiny_models["male"]))
    monkeypatch.setenv("SER_FEMALE_MODEL_DIR", str(tiny_models["female"]))
    at = new_app()
    at.radio(key="gender_choice").set_value("Public hub / local folder").run()
    at.text_input(key="gender_hub_id").set_value(str(tiny_models["female_gender"])).run()
    assert not at.exception, at.exception
    return at


def analyse(at, files: list[tuple[str, bytes, str]]):
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception, at.exception
    at.button(key="analyse").click().run()
    assert not at.exception, at.exception
    return at


def results_table(at):
    """The results table (the dataframe with the batch CSV's ``file`` column)."""
    [table] = [d.value for d in at.dataframe if "file" in d.value.columns]
    return table


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_without_input(tiny_models):
    at = new_app()
    assert at.title[0].value == "Speech emotion recognition"
    uploader = at.file_uploader(key="uploads")
    assert uploader.accept_multiple_files
    assert set(uploader.allowed_type) >= {".wav", ".flac", ".ogg", ".opus", ".mp3"}
    assert "50 MB" in uploader.label
    assert at.button(key="analyse").disabled
    assert len(at.get("audio_input")) == 1
    assert [r.key for r in at.sidebar.radio] == ["gender_choice", "routing"]
    assert at.radio(key="routing").options == ["hard", "soft"]
    # the model cards are read from disk into the "About the models" expander
    about = at.sidebar.expander[0]
    assert about.label == "About the models"
    card = (Path(APP).parent / "gender_model" / "README.md").read_text(encoding="utf-8")
    first_line = next(line for line in card.splitlines() if line.strip()).lstrip("# ").strip()
    assert first_line in texts(about.markdown)
    # the hub option defaults to the public id
    at.radio(key="gender_choice").set_value("Public hub / local folder").run()
    from pipeline.gender import PUBLIC_HUB_ID

    assert at.text_input(key="gender_hub_id").value == PUBLIC_HUB_ID


def test_good_and_broken_upload_known_answer(tiny_app):
    at = analyse(tiny_app, [
        ("speech.wav", wav_bytes(speech_like(2.0)), "audio/wav"),
        ("broken.wav", b"RIFF\x00\x00 this is not audio at all", "audio/wav"),
        ("hush.flac", wav_bytes(np.zeros(SR, dtype=np.float32), fmt="FLAC"), "audio/flac"),
    ])
    shown = metrics(at)
    assert shown["Gender"] == "Female" and shown["Emotion"] == "Angry"
    assert shown["Emotion model"] == "female"
    # the broken file gets a clear message with its status, the silent one a warning
    errors, warnings = texts(at.error), texts(at.warning)
    assert "broken.wav" in errors and "unreadable" in errors and "Failed to load audio" in errors
    assert "hush.flac" in warnings and "silent" in warnings
    assert "Traceback" not in errors + warnings
    # bar chart + waveform chart, spectrogram image, playback for every clip
    assert len(at.get("vega_lite_chart")) >= 2
    assert len(at.get("image")) == 1
    assert len(at.get("audio")) == 3
    # results table: exactly the batch CSV columns, one row per file, in upload order
    table = results_table(at)
    assert tuple(table.columns) == CSV_COLUMNS
    assert list(table["file"]) == ["speech.wav", "broken.wav", "hush.flac"]
    assert list(table["status"]) == ["ok", "unreadable", "silent"]
    assert table.loc[0, "emotion"] == "angry"
    download = at.get("download_button")
    assert len(download) == 1


def test_reruns_and_download_reuse_stored_results(tiny_app):
    from app import RESULTS_KEY

    at = analyse(tiny_app, [("a.wav", wav_bytes(speech_like(1.5)), "audio/wav"),
                            ("b.wav", wav_bytes(speech_like(2.5, seed=3)), "audio/wav")])
    stored = dict(at.session_state[RESULTS_KEY])
    assert len(stored) == 2
    at.get("download_button")[0].click().run()  # a download reruns the script
    assert not at.exception
    again = at.session_state[RESULTS_KEY]
    assert set(again) == set(stored) and all(again[k] is stored[k] for k in stored)  # not recomputed
    assert metrics(at)["Emotion"] == "Angry"
    # a different routing is a different result: shown as pending until Analyse
    at.radio(key="routing").set_value("soft").run()
    assert "not analysed yet" in texts(at.caption)
    at.button(key="analyse").click().run()
    assert "blended" in [m.value for m in at.metric]


def test_long_clip_gets_a_timeline(tiny_app):
    y = np.concatenate([speech_like(30.0), np.zeros(6 * SR, dtype=np.float32), speech_like(26.0, seed=2)])
    at = analyse(tiny_app, [("long.wav", wav_bytes(y), "audio/wav")])
    assert metrics(at)["Emotion"] == "Angry"
    [timeline] = [d.value for d in at.dataframe if "start_s" in d.value.columns]
    assert {"start_s", "end_s", "status", "gender", "emotion", "prob_angry"} <= set(timeline.columns)
    assert timeline["start_s"].iloc[-1] > 55 and "silent" in set(timeline["status"])
    assert set(timeline.loc[timeline.status == "ok", "emotion"]) == {"angry"}


def test_too_large_file_is_refused_with_a_message(tiny_app):
    from app import MAX_UPLOAD_BYTES

    big = b"RIFF" + b"\0" * MAX_UPLOAD_BYTES
    at = analyse(tiny_app, [("huge.wav", big, "audio/wav"), ("ok.wav", wav_bytes(speech_like(1.0)), "audio/wav")])
    message = texts(at.warning)
    assert "huge.wav" in message and "too_large" in message and "50 MB" in message
    assert metrics(at)["Gender"] == "Female"


def test_analyse_clips_without_streamlit(tiny_cascade):
    """The analysis helper takes (name, bytes) pairs and returns CSV rows of the batch scorer."""
    from app import analyse_clips
    from pipeline.batch import prediction_row

    data = wav_bytes(speech_like(2.0))
    [good, bad] = analyse_clips(tiny_cascade, [("x.wav", data), ("y.wav", b"nope")])
    assert good.row == prediction_row(tiny_cascade.predict_file(data, name="x.wav"), name="x.wav")
    assert good.spectrogram.dtype == np.uint8 and good.spectrogram.ndim == 3
    assert bad.row["status"] == "unreadable" and bad.waveform is None


def _shipped_models_ready() -> bool:
    root = Path(APP).parent
    return all((root / d / f).is_file() for d in ("male_models", "female_models")
               for f in ("model.keras", "scaler.joblib", "config.json"))


def test_shipped_models_on_a_real_clip(shared_data, monkeypatch):
    if not _shipped_models_ready():
        pytest.skip("shipped emotion models not found in male_models/ and female_models/ (run make train)")
    monkeypatch.delenv("SER_MALE_MODEL_DIR", raising=False)
    monkeypatch.delenv("SER_FEMALE_MODEL_DIR", raising=False)
    with open(shared_data / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["corpus"] == "ravdess" and r["split"] == "test"]
    if not rows:
        pytest.skip("no RAVDESS test-split clip in the manifest")
    clip = rows[0]
    path = shared_data / clip["path"]
    at = new_app()
    at = analyse(at, [(path.name, path.read_bytes(), "audio/flac"),
                      ("broken.flac", b"fLaC garbage", "audio/flac")])
    shown = metrics(at)
    assert shown["Gender"] == clip["gender"].capitalize()
    assert shown["Emotion"].lower() in {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}
    assert shown["Emotion model"] == clip["gender"]
    assert len(at.get("vega_lite_chart")) >= 2
    assert "broken.flac" in texts(at.error)
    assert list(results_table(at)["status"]) == ["ok", "unreadable"]


def test_microphone_recording_is_analysed(tiny_app):
    at = tiny_app
    at.audio_input(key="recording").set_value(("clip.wav", wav_bytes(speech_like(1.5)), "audio/wav")).run()
    assert not at.exception, at.exception
    at.button(key="analyse").click().run()
    assert not at.exception, at.exception
    assert "recording.wav" in [s.value for s in at.subheader]
    assert metrics(at)["Emotion"] == "Angry"
