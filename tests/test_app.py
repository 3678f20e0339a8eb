"""The Streamlit app, driven headlessly with streamlit.testing.v1.AppTest.

AppTest in streamlit 1.67 drives ``st.file_uploader`` directly
(``FileUploader.set_value([(name, bytes, mime), ...])``), so these tests upload
through the real widget, press *Analyse* and read what the page shows.

Known-answer tests use the tiny models of ``conftest.tiny_models``, set the way an
operator would (``SER_GENDER_MODEL``, ``SER_MALE_MODEL_DIR``, ``SER_FEMALE_MODEL_DIR``):
*female* (p=0.982) and *angry* (p=0.886) by default, or the 50/50 gender model for the
"uncertain" marks. One test runs the shipped models on a real RAVDESS test-split clip.
The first tests check, without Streamlit, that the figures the page quotes match the reports.
"""
from __future__ import annotations

import csv
import io
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.batch import CSV_COLUMNS
from pipeline.testing import SR, speech_like, white_noise

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 300  # seconds per script run: the first run loads TensorFlow and torch


def wav_bytes(y: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format=fmt)
    return buffer.getvalue()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def page_text(at) -> str:
    return "\n".join(texts(getattr(at, kind)) for kind in ("markdown", "caption", "warning", "error", "info"))


# ----------------------------------------------------------------------------- without Streamlit


def test_uncertain_thresholds_and_quoted_figures_match_the_reports():
    """pipeline.confidence's bins and figures are recomputed from reports/ and the holdout studies."""
    import pandas as pd

    from pipeline import confidence as c
    from pipeline.emotion import EMOTION_LABELS

    from training.recipes import load_recipe

    frame = pd.read_csv(ROOT / "reports" / "test_predictions.csv")
    trained_on = json.loads((ROOT / "gender_model" / "metadata.json").read_text())["training"]["corpora"]
    doubtful = set(load_recipe("gender").exclude_speakers)  # labels in doubt: left out of the bins
    seen = frame[(frame.status == "ok") & frame.corpus.isin(trained_on) & ~frame.speaker.isin(doubtful)]
    never = frame[~frame.corpus.isin(trained_on)]
    assert set(never.corpus) <= {"nemo"}  # an emotion training corpus, not a gender one
    assert len(frame) - len(never) - len(seen) == 40  # the two doubtful test speakers
    p_female = seen.p_female.to_numpy()
    gender_conf = np.maximum(p_female, 1 - p_female)
    assert c.reliability_bins(gender_conf, seen.pred_gender == seen.gender, c.GENDER_EDGES) == list(c.GENDER_BINS)
    # emotion: every emotional test clip (nEMO is an emotion training corpus, though not a gender one)
    emo = frame[(frame.status == "ok") & frame.emotion.isin(EMOTION_LABELS)]
    emo_conf = emo[[f"cascade_prob_{e}" for e in EMOTION_LABELS]].to_numpy().max(axis=1)
    assert c.reliability_bins(emo_conf, emo.cascade_pred == emo.emotion, c.EMOTION_EDGES) == list(c.EMOTION_BINS)
    # the thresholds: below them accuracy drops clearly (gender under 90%, emotion < 50%)
    below = gender_conf < c.GENDER_UNCERTAIN_BELOW
    assert (seen.pred_gender == seen.gender)[below].mean() < 0.90 < 0.98 < (seen.pred_gender == seen.gender)[~below].mean()
    below = emo_conf < c.EMOTION_UNCERTAIN_BELOW
    assert (emo.cascade_pred == emo.emotion)[below].mean() < 0.5 < (emo.cascade_pred == emo.emotion)[~below].mean()

    metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
    r = c.RELIABILITY
    assert r["gender_new_speakers"] == round(metrics["gender"]["seen_corpora"]["accuracy"], 3)
    assert r["emotion_new_speakers"] == round(metrics["emotion"]["cascade"]["overall"]["accuracy"], 3)
    assert r["emotion_ravdess"] == round(metrics["emotion"]["cascade"]["per_corpus"]["ravdess"]["accuracy"], 3)
    rule = json.loads((ROOT / "studies/gender_fusion/rule_report.json").read_text())
    shipped = rule["decision"]["shipped"]  # the gender stage in gender_model/ (fusion.json)
    held_out = [f["candidates"][shipped]["accuracy"]["estimate"] for f in rule["folds"].values()]
    assert len(held_out) == 6 and r["gender_unseen_range"] == (round(min(held_out), 3), round(max(held_out), 3))
    degraded = [c["accuracy"] for name, c in metrics["gender_robustness"]["conditions"].items() if name != "clean"]
    assert len(degraded) == 6 and r["gender_degraded_range"] == (round(min(degraded), 3), round(max(degraded), 3))
    study = json.loads((ROOT / "studies/emotion_encoder/report.json").read_text())
    folds = study["candidates"][study["decision"]["winner"]]["folds"]
    never_seen = [f["accuracy"] for name, f in folds.items() if name != "val"]
    assert len(never_seen) == 5 and r["emotion_unseen_range"] == (round(min(never_seen), 3), round(max(never_seen), 3))


def test_judgements():
    from pipeline.confidence import judge_emotion, judge_gender

    assert judge_gender("male", 0.56).uncertain and "coin toss" in judge_gender("male", 0.56).reason
    assert "79%" in judge_gender("male", 0.7996).reason  # rounded down: never "80%, below 80%"
    assert not judge_gender("female", 0.97).uncertain and judge_gender("female", 0.97).measured == 1.0
    assert judge_emotion("sad", 0.37).uncertain and not judge_emotion("angry", 0.98).uncertain
    assert judge_emotion("angry", 0.98, gender_uncertain=True).uncertain


def test_operator_settings_are_safe_by_default():
    from pipeline.app_settings import SHIPPED_LABEL, read_settings
    from pipeline.gender import PUBLIC_HUB_ID

    default = read_settings({}, {})
    assert not default.allow_model_choice and default.model_options() == [] and default.gender_model is None
    assert default.resolve("/etc") is None and default.resolve(PUBLIC_HUB_ID) is None
    allowed = read_settings({"SER_ALLOW_MODEL_CHOICE": "1", "SER_MODEL_ALLOWLIST": "org/a, org/b"}, {})
    assert allowed.model_options() == [SHIPPED_LABEL, "org/a", "org/b"]
    assert allowed.resolve("org/b") == "org/b" and allowed.resolve("evil/repo") is None
    from_secrets = read_settings({}, {"allow_model_choice": True, "gender_model": "/srv/g"})
    assert from_secrets.model_options() == ["/srv/g", PUBLIC_HUB_ID]  # allow-list defaults to the public id
    assert read_settings({"SER_ALLOW_MODEL_CHOICE": "0"}, {"allow_model_choice": True}).model_options() == []


def test_examples_limits_and_config():
    from pipeline.app_views import EXAMPLES, EXAMPLES_DIR, HOUR_OF_WAV_MB, MAX_UPLOAD_MB, refusal

    readme = (EXAMPLES_DIR / "README.md").read_text()
    files = [EXAMPLES_DIR / f for f, _ in EXAMPLES]
    assert sum(f.stat().st_size for f in files) < 300_000
    for f in files:
        info = sf.info(f)
        assert info.samplerate == 16000 and info.channels == 1 and info.duration <= 3.05
        assert f.name in readme
    assert "CC BY-NC-SA 4.0" in readme and "Livingstone" in readme
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB > HOUR_OF_WAV_MB
    assert refusal("memo.docx", 10).status == "unsupported" and refusal("a.wav", 10) is None


def test_analyse_clips_without_streamlit(tiny_cascade):
    """The analysis helper takes (name, bytes) pairs and returns CSV rows of the batch scorer."""
    from app import analyse_clips
    from pipeline.batch import prediction_row

    data = wav_bytes(speech_like(2.0))
    seen = []
    [good, bad, refused] = analyse_clips(tiny_cascade, [("x.wav", data), ("y.wav", b"nope"), ("z.txt", b"hi")],
                                         progress=lambda fraction, text: seen.append(fraction))
    assert good.row == prediction_row(tiny_cascade.predict_file(data, name="x.wav"), name="x.wav")
    assert good.spectrogram.startswith(b"\x89PNG")
    assert bad.row["status"] == "unreadable" and bad.waveform is None
    assert refused.row["status"] == "unsupported"
    assert seen == sorted(seen) and seen[-1] == 1.0


# ----------------------------------------------------------------------------- the page (AppTest)


@pytest.fixture
def tiny_app(tiny_models, monkeypatch):
    """Factory: the app started with tiny models (``gender`` names a tiny gender model) and extra env."""
    from streamlit.testing.v1 import AppTest

    def start(gender: str = "female_gender", **env: str):
        monkeypatch.setenv("SER_GENDER_MODEL", str(tiny_models[gender]))
        monkeypatch.setenv("SER_MALE_MODEL_DIR", str(tiny_models["male"]))
        monkeypatch.setenv("SER_FEMALE_MODEL_DIR", str(tiny_models["female"]))
        for key in ("SER_ALLOW_MODEL_CHOICE", "SER_MODEL_ALLOWLIST"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        assert not at.exception, at.exception
        return at

    return start


def analyse(at, files: list[tuple[str, bytes, str]]):
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception, at.exception
    at.button(key="analyse").click().run()
    assert not at.exception, at.exception
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def result_expanders(at) -> list:
    """The results' expanders (not the options box)."""
    return [e for e in at.expander if not e.label.startswith("Options")]


def test_page_without_input(tiny_app, tiny_models):
    at = tiny_app()
    assert at.title[0].value == "Speech emotion recognition"
    uploader = at.file_uploader(key="uploads")
    assert uploader.accept_multiple_files
    assert "400 MB" in uploader.label and "WAV" in uploader.label and "FLAC" in uploader.label
    assert at.button(key="analyse").disabled
    assert len(at.get("audio_input")) == 1 and "3-10 seconds" in at.get("audio_input")[0].label
    # the options sit on the page (a phone hides the sidebar), each with a one-line help; no noise reduction;
    # no model choice unless the operator allows it
    assert [r.key for r in at.radio] == ["routing", "voices"] and not at.selectbox and not at.toggle
    assert not at.sidebar.radio and not at.sidebar.toggle
    assert at.expander[0].label.startswith("Options")
    assert at.radio(key="routing").options == ["Model of the detected gender", "Both models, weighed by gender"]
    assert at.radio(key="voices").options == ["One speaker or recorded apart", "Several people in one room"]
    assert at.radio(key="voices").value == "auto"
    from app import VOICES_LABELS
    from pipeline.recording import VOICE_MODES

    assert list(VOICES_LABELS) == list(VOICE_MODES)  # every way of finding voices is offered, named
    assert all(w.help for w in at.radio)
    assert {b.label for b in at.button} >= {"Woman, angry", "Man, sad"}
    assert "Add a recording above" in texts(at.info)
    assert "one person speaking" not in texts(at.markdown) and "Shipped" not in page_text(at)
    # "How it works": for visitors, the figures read from the reports; no commands, settings or card internals
    at.switch_page("pages/how_it_works.py").run()
    assert not at.exception, at.exception
    text = texts(at.markdown)
    assert "What the models can do" in [h.value for h in at.header] and "What they cannot do" in text + " ".join(
        h.value for h in at.header)
    assert "32%-46%" in text  # emotion on corpora never seen
    metrics_json = json.loads((ROOT / "reports" / "metrics.json").read_text())
    ravdess = metrics_json["emotion"]["cascade"]["per_corpus"]["ravdess"]["accuracy"]
    from pipeline.confidence import percent

    assert percent(ravdess) in texts(at.table)
    for banned in ("python -m", "epochs", "learning rate", "hyper", "4-second", "not separated", "#", "issue"):
        assert banned not in page_text(at), banned
    assert len(at.table) >= 3


def test_model_choice_only_from_the_operators_list(tiny_app, tiny_models):
    at = tiny_app("even_gender", SER_ALLOW_MODEL_CHOICE="1", SER_MODEL_ALLOWLIST=str(tiny_models["female_gender"]))
    choice = at.selectbox(key="gender_choice")
    assert choice.options == [str(tiny_models["even_gender"]), str(tiny_models["female_gender"])]
    choice.set_value(str(tiny_models["female_gender"])).run()
    at = analyse(at, [("speech.wav", wav_bytes(speech_like(2.0)), "audio/wav")])
    assert metrics(at)["Gender"] == "Female"


def test_good_and_broken_upload_known_answer(tiny_app):
    at = analyse(tiny_app(), [
        ("speech.wav", wav_bytes(speech_like(2.0)), "audio/wav"),
        ("broken.wav", b"RIFF\x00\x00 this is not audio at all", "audio/wav"),
        ("hush.flac", wav_bytes(np.zeros(SR, dtype=np.float32), fmt="FLAC"), "audio/flac"),
        ("notes.docx", b"PK\x03\x04 a document", "application/octet-stream"),
    ])
    shown = metrics(at)
    assert shown["Gender"] == "Female" and shown["Emotion"] == "Angry"
    assert [m.delta for m in at.metric if m.label == "Speech found"] == ["answered by the female-voice emotion model"]
    # each refused file is named in the page text, with the reason in plain words
    errors, warnings = texts(at.error), texts(at.warning)
    assert "broken.wav was not analysed: not a readable recording" in errors.replace("*", "")
    assert "hush.flac was not analysed: silent or almost silent" in warnings.replace("*", "")
    assert "notes.docx was not analysed: not a format the app reads" in warnings.replace("*", "")
    assert "Details: the app reads WAV" in warnings
    assert "Traceback" not in errors + warnings
    assert "4 recording(s): 1 analysed, 3 not analysed" in texts(at.markdown)
    assert "How reliable is this?" in texts(at.markdown)
    # compact summary table first, in upload order, status in words
    summary = at.table[0].value
    assert list(summary.index) == ["speech.wav", "broken.wav", "hush.flac", "notes.docx"]
    assert list(summary.columns) == ["answer", "model's probability", "status"]
    assert summary.loc["speech.wav", "status"] == "analysed"
    assert summary.loc["hush.flac", "status"].startswith("not analysed: silent")
    assert summary.loc["speech.wav", "answer"] == "female, angry"
    assert summary.loc["speech.wav", "model's probability"] == "gender 98%, emotion 88%"
    # an uploaded silent file is not told to check the microphone
    assert "microphone" not in warnings
    # one analysed clip: its details in an expander; bar + waveform charts, labelled spectrogram, playback
    assert any(e.label.startswith("speech.wav: female, angry") for e in at.expander)
    assert len(at.get("vega_lite_chart")) >= 2 and len(at.get("imgs")) + len(at.get("image")) >= 1
    assert len(at.get("audio")) == 1
    assert len(at.get("download_button")) == 1


def test_uncertain_answers_are_marked(tiny_app):
    at = analyse(tiny_app("even_gender"), [("coin.wav", wav_bytes(speech_like(2.0)), "audio/wav")])
    shown = metrics(at)
    assert "Gender" not in shown and "Emotion" not in shown  # not in the large type of a sure answer
    text = texts(at.markdown)
    assert text.count(":orange-badge[:material/help: Uncertain]") == 2
    assert "a coin toss" in texts(at.caption) and "leans" in texts(at.markdown)
    assert "the gender is uncertain" in texts(at.caption)


def test_option_change_keeps_results_and_offers_to_reanalyse(tiny_app):
    from app import RESULTS_KEY

    at = analyse(tiny_app(), [("a.wav", wav_bytes(speech_like(1.5)), "audio/wav"),
                              ("b.wav", wav_bytes(speech_like(2.5, seed=3)), "audio/wav")])
    stored = dict(at.session_state[RESULTS_KEY])
    assert len(stored) == 2 and len(result_expanders(at)) == 2
    at.get("download_button")[0].click().run()  # a download reruns the script
    again = at.session_state[RESULTS_KEY]
    assert set(again) == set(stored) and all(again[k] is stored[k] for k in stored)  # not recomputed
    at.radio(key="routing").set_value("soft").run()
    assert "You changed an option" in texts(at.info)
    assert metrics(at)["Emotion"] == "Angry"  # the old results stay visible
    at.button(key="reanalyse").click().run()
    assert not at.exception, at.exception
    assert "answered by both emotion models" in [m.delta for m in at.metric]
    assert "You changed an option" not in texts(at.info)
    at.radio(key="voices").set_value("room").run()  # how voices are found is an option like the others
    assert "You changed an option" in texts(at.info)
    at.button(key="reanalyse").click().run()
    assert not at.exception, at.exception and "You changed an option" not in texts(at.info)
    # Clear empties the page
    at.button(key="clear").click().run()
    assert not at.session_state[RESULTS_KEY] and "Add a recording above" in texts(at.info)


def test_example_clip_in_one_click(tiny_app):
    at = tiny_app()
    at.button(key="example_woman_angry.flac").click().run()
    assert not at.exception, at.exception
    assert "example: woman_angry.flac" in [s.value for s in at.subheader]
    assert metrics(at)["Emotion"] == "Angry"


def conversation_wav() -> bytes:
    """About 39 s of a man and a woman (examples/) taking turns, 0.8 s pauses: two voices."""
    man, _ = sf.read(ROOT / "examples" / "man_calm.flac", dtype="float32")
    woman, _ = sf.read(ROOT / "examples" / "woman_angry.flac", dtype="float32")
    gap = np.zeros(int(0.8 * SR), dtype=np.float32)
    return wav_bytes(np.concatenate([man, gap, woman, gap] * 6))


def test_long_recordings_get_voices_segments_and_the_segment_csv(tiny_app):
    from app import RESULTS_KEY
    from pipeline.app_exports import RESULTS_COLUMNS
    from pipeline.app_voices import EMOTION_TIME_COLUMN, segment_csv
    from pipeline.segments_csv import SEGMENT_COLUMNS

    hum = white_noise(35.0, peak=0.3)  # sound, but no speech
    at = analyse(tiny_app(), [("talk.wav", conversation_wav(), "audio/wav"), ("hum.wav", wav_bytes(hum), "audio/wav")])
    summary = at.table[0].value
    result = next(r for r in at.session_state[RESULTS_KEY].values() if r.name == "talk.wav")
    rec = result.recording
    k = len(rec.voices)
    letters = [v.label for v in rec.voices]
    assert k >= 2  # a man and a woman (the grouping may split one of them)
    # several voices: no single answer for the recording, a row per voice instead
    assert summary.loc["talk.wav", "status"] == f"analysed; {k} voices"
    assert summary.loc["talk.wav", "answer"] == f"{k} voices: see each voice below"
    assert list(summary.index)[:k + 1] == ["talk.wav", *[f"talk.wav, voice {v}" for v in letters]]
    assert summary.loc["talk.wav, voice A", "answer"] == "female, mostly angry (100% of its speaking time)"
    assert summary.loc["talk.wav, voice A", "model's probability"] == "gender 98%"  # a share of time is not one
    assert summary.loc["hum.wav", "status"] == "not analysed: no speech found"
    assert "hum.wav** was not analysed: no speech found" in texts(at.warning)
    assert [e.label for e in result_expanders(at)] == [f"talk.wav: {k} voices"]
    # a row per voice: gender (tiny model: always female), speech, emotions as shares of time, turns
    voices = at.table[1].value
    assert list(voices.index) == letters
    assert list(voices.columns) == ["gender", "speech", EMOTION_TIME_COLUMN, "turns", "first heard"]
    assert all(g.startswith("female") for g in voices["gender"]) and set(voices[EMOTION_TIME_COLUMN]) == {"angry 100%"}
    assert "share of time" in texts(at.caption)
    # turns as a transcript counts them (a voice's consecutive segments are one turn): six per speaker at most
    from pipeline.app_voices import count_turns

    turns = count_turns(rec)
    assert list(voices["turns"]) == [turns[v] for v in letters] and max(turns.values()) <= 6
    # one speech figure: the voices' seconds add up to the speech found, which the page states
    assert f"{rec.speech_s:.0f} s of it is speech" in texts(at.markdown)
    assert sum(v.speech_s for v in rec.voices) == pytest.approx(rec.speech_s)
    # the segment table, time-ordered, clickable (a clicked row or cell plays from its start)
    assert not at.error, texts(at.error)
    [segments] = [d.value for d in at.dataframe if "voice" in d.value.columns]
    assert len(segments) >= 10 and list(segments.columns) == ["from", "to", "voice", "emotion", "probability", "status"]
    assert set(segments["voice"]) == set(letters) and set(segments["emotion"]) == {"angry"}
    assert set(segments["status"]) == {"analysed"}
    # no whole-recording answer presented as a fact for two voices
    assert not [m for m in at.metric if m.label in ("Gender", "Emotion")]
    assert "No single gender or emotion for the whole recording" in texts(at.info)
    assert [b.label for b in at.get("download_button")] == ["Download all results (CSV)", "Download the voices (CSV)",
                                                            "Download the segments (CSV)"]
    rows = list(csv.DictReader(io.StringIO(segment_csv(rec, "talk.wav").decode("utf-8"))))
    assert tuple(rows[0]) == SEGMENT_COLUMNS and len(rows) == len(segments)
    # the results CSV: the file's row, then a row per voice; an uncertain flag with the reason
    from pipeline.app_exports import csv_bytes, results_rows, voices_rows

    results = list(at.session_state[RESULTS_KEY].values())
    table = list(csv.DictReader(io.StringIO(csv_bytes(results_rows(results), RESULTS_COLUMNS).decode())))
    assert [(r["file"], r["voice"]) for r in table] == [("talk.wav", ""), *[("talk.wav", v) for v in letters],
                                                        ("hum.wav", "")]
    assert table[0]["uncertain"] == "yes" and f"{k} voices" in table[0]["uncertain_reason"]
    assert table[1]["gender"] == "female" and table[1]["emotion"] == "angry" and table[1]["emotion_share_of_time"]
    assert table[-1]["status"] == "no_speech" and table[-1]["uncertain"] == ""
    voice_table = voices_rows(results)
    assert [v["voice"] for v in voice_table] == letters and voice_table[0]["time_share_angry"] == "1.0000"


def test_uploads_and_results_survive_a_visit_to_how_it_works(tiny_app):
    from app import RESULTS_KEY

    at = analyse(tiny_app(), [("a.wav", wav_bytes(speech_like(1.5)), "audio/wav")])
    assert metrics(at)["Emotion"] == "Angry"
    at.switch_page("pages/how_it_works.py").run()
    assert not at.exception, at.exception
    at.switch_page("app.py").run()
    assert not at.exception, at.exception
    assert metrics(at)["Emotion"] == "Angry" and len(at.session_state[RESULTS_KEY]) == 1
    assert "On the page: 1 recording(s): a.wav" in texts(at.caption)
    assert at.button(key="analyse").disabled  # nothing waits: no red, enabled Analyse after a result


def test_too_large_file_is_refused_with_a_message(tiny_app, monkeypatch):
    import pipeline.app_views

    monkeypatch.setattr(pipeline.app_views, "MAX_UPLOAD_BYTES", 1000)
    at = analyse(tiny_app(), [("huge.wav", wav_bytes(speech_like(1.0)), "audio/wav")])
    message = texts(at.warning)
    assert "huge.wav" in message and "file too large" in message and "400 MB" in message


def test_microphone_recording_is_analysed(tiny_app):
    at = tiny_app()
    at.audio_input(key="recording").set_value(("clip.wav", wav_bytes(speech_like(1.2)), "audio/wav")).run()
    assert not at.exception, at.exception
    at.button(key="analyse").click().run()
    assert not at.exception, at.exception
    assert "recording.wav" in [s.value for s in at.subheader]
    assert metrics(at)["Emotion"] == "Angry"
    assert "3-10 seconds of speech works best" in texts(at.caption)


def _shipped_models_ready() -> bool:
    return all((ROOT / d / f).is_file() for d in ("male_models", "female_models")
               for f in ("model.keras", "scaler.joblib", "config.json"))


def test_shipped_models_on_a_real_clip(shared_data, monkeypatch):
    if not _shipped_models_ready():
        pytest.skip("shipped emotion models not found in male_models/ and female_models/ (run make train)")
    from streamlit.testing.v1 import AppTest

    for key in ("SER_GENDER_MODEL", "SER_MALE_MODEL_DIR", "SER_FEMALE_MODEL_DIR", "SER_ALLOW_MODEL_CHOICE"):
        monkeypatch.delenv(key, raising=False)
    with open(shared_data / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["corpus"] == "ravdess" and r["split"] == "test"]
    if not rows:
        pytest.skip("no RAVDESS test-split clip in the manifest")
    clip = rows[0]
    path = shared_data / clip["path"]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at = analyse(at, [(path.name, path.read_bytes(), "audio/flac"),
                      ("broken.flac", b"fLaC garbage", "audio/flac")])
    text = texts(at.metric) + texts(at.markdown)
    assert clip["gender"] in text.lower()
    assert "broken.flac" in texts(at.error)
    assert list(at.table[0].value["status"].str.split(":").str[0]) == ["analysed", "not analysed"]
    assert tuple(CSV_COLUMNS)  # the CSV download keeps the batch columns
