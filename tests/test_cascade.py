"""The cascade's routing and result contract, with tiny models of known behaviour."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.cascade import Cascade, Prediction
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.errors import ModelError

from pipeline.testing import SR, speech_like


def test_hard_routing_uses_predicted_gender(tiny_models):
    cascade = Cascade.load(tiny_models["female_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"])
    result = cascade.predict_signal(speech_like(), SR)
    assert result.status == "ok" and result.error == ""
    assert result.gender == "female" and result.emotion_model == "female"
    assert result.emotion == "angry"
    assert result.gender_probabilities["female"] == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-5)
    assert sum(result.gender_probabilities.values()) == pytest.approx(1.0)
    assert sum(result.emotion_probabilities.values()) == pytest.approx(1.0)
    assert list(result.emotion_probabilities) == list(EMOTION_LABELS)
    assert result.gender_confidence == result.gender_probabilities["female"]

    male = Cascade.load(tiny_models["male_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"])
    result = male.predict_signal(speech_like(), SR)
    assert (result.gender, result.emotion_model, result.emotion) == ("male", "male", "sad")


def test_soft_routing_blends_by_gender_probability(tiny_models):
    cascade = Cascade.load(tiny_models["even_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"],
                           routing="soft")
    result = cascade.predict_signal(speech_like(), SR)
    assert result.emotion_model == "blended"
    male = EmotionModel.load(tiny_models["male"]).predict_proba(np.zeros((1, cascade.emotion_models["male"].config.n_features)))
    # Both tiny models ignore their input: the blend is the average of their two outputs.
    p_sad, p_angry = result.emotion_probabilities["sad"], result.emotion_probabilities["angry"]
    assert p_sad == pytest.approx(p_angry, rel=1e-4)
    assert p_sad == pytest.approx(0.5 * male[0, EMOTION_LABELS.index("sad")] + 0.5 * male[0, 0], rel=1e-3)


def test_invalid_routing_is_refused(tiny_models):
    with pytest.raises(ValueError, match="routing"):
        Cascade.load(tiny_models["female_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"],
                     routing="sometimes")


def test_file_bytes_and_signal_agree(tiny_cascade, wav_file):
    path = wav_file("a.wav")
    y, sr = sf.read(path, dtype="float32")
    by_signal = tiny_cascade.predict_signal(y, sr)
    by_path = tiny_cascade.predict_file(path)
    by_bytes = tiny_cascade.predict_file(path.read_bytes(), name="a.wav")
    by_stream = tiny_cascade.predict_file(io.BytesIO(path.read_bytes()), name="a.wav")
    for other in (by_path, by_bytes, by_stream):
        assert other.emotion_probabilities == pytest.approx(by_signal.emotion_probabilities)
        assert other.gender_probabilities == pytest.approx(by_signal.gender_probabilities)
    assert by_path.file == str(path) and by_bytes.file == "a.wav"


def test_batch_keeps_order_and_isolates_failures(tiny_cascade, wav_file, tmp_path):
    good1 = wav_file("good1.wav")
    good2 = wav_file("good2.wav", duration_s=3.0, sr=44100)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    silent = wav_file("silent.wav", y=np.zeros(SR * 2, dtype=np.float32))
    results = tiny_cascade.predict_files([good1, text, good2, silent, tmp_path / "missing.wav"])
    assert [r.status for r in results] == ["ok", "unreadable", "ok", "silent", "not_found"]
    assert all(isinstance(r, Prediction) for r in results)
    assert all(r.error for r in results if not r.ok)
    assert results[2].duration_s == pytest.approx(3.0, abs=1e-3)
    assert results[3].duration_s == pytest.approx(2.0, abs=1e-3)
    assert results[1].file == str(text)


def test_bad_signals_get_a_status_not_an_exception(tiny_cascade):
    assert tiny_cascade.predict_signal(np.zeros(0, dtype=np.float32), SR).status == "empty"
    assert tiny_cascade.predict_signal(np.full(SR, np.nan, dtype=np.float32), SR).status == "non_finite"
    assert tiny_cascade.predict_signal(speech_like(0.05), SR).status == "too_short"
    assert tiny_cascade.predict_signal(speech_like(), 0).status == "unreadable"
    stereo = np.stack([speech_like(), speech_like()], axis=1)
    assert tiny_cascade.predict_signal(stereo, SR).status == "ok"


def test_model_failure_is_reported_per_batch_not_raised(tiny_cascade, monkeypatch):
    def boom(signals):
        raise RuntimeError("simulated model crash")

    monkeypatch.setattr(tiny_cascade.gender, "predict_proba_batch", boom)
    result = tiny_cascade.predict_signal(speech_like(), SR)
    assert result.status == "internal_error" and "simulated model crash" in result.error


@pytest.mark.parametrize("missing", ["model.keras", "scaler.joblib", "config.json"])
def test_emotion_folder_missing_file_names_it(tiny_models, tmp_path, missing, monkeypatch):
    import shutil

    monkeypatch.setenv("SER_BACKEND", "native")  # the Keras files themselves (the ONNX path needs no model.keras)

    folder = tmp_path / "emotion"
    shutil.copytree(tiny_models["male"], folder)
    (folder / missing).unlink()
    with pytest.raises(ModelError, match=missing.replace(".", r"\.")):
        EmotionModel.load(folder)


def test_truncated_keras_file_is_a_model_error(tiny_models, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("SER_BACKEND", "native")

    folder = tmp_path / "emotion"
    shutil.copytree(tiny_models["female"], folder)
    data = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="model.keras"):
        EmotionModel.load(folder)
