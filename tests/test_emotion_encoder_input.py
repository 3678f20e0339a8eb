"""Emotion models that read the speech encoder beside the librosa statistics: loading, inputs, cascade, training."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.emotion import ENCODER_COLUMNS, EMOTION_LABELS, ENCODER_SCALER_FILE, EmotionModel, EncoderInput
from pipeline.errors import ModelError, PredictionError
from pipeline.testing import SR, make_emotion_model, make_gender_model, speech_like
from pipeline.whisper_encoder import EncoderStates, N_STATES

N = 483
LAST = EncoderInput(layers=(4,), pooling="mean_std", combine="concat")


@pytest.fixture(scope="module")
def encoder_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc_models")
    return {"male": make_emotion_model(root / "male", name="male", favourite="angry", encoder=LAST),
            "female": make_emotion_model(root / "female", name="female", favourite="sad", encoder=LAST),
            "plain": make_emotion_model(root / "plain", name="male", favourite="happy")}


def test_encoder_input_columns_are_the_runtime_pooling_of_the_chosen_states():
    rng = np.random.default_rng(0)
    states = EncoderStates(rng.standard_normal((N_STATES, 30, 384)).astype(np.float32))
    block = states.pooled(range(N_STATES), "mean_std")
    assert block.shape == (ENCODER_COLUMNS,)
    for layers in ((4,), (0, 2), (0, 1, 2, 3, 4)):
        for pooling in ("mean", "mean_std"):
            spec = EncoderInput(layers=layers, pooling=pooling)
            np.testing.assert_array_equal(block[spec.columns()], states.pooled(layers, pooling))
            assert spec.dim == len(spec.columns())


def test_encoder_input_refuses_unknown_layers_and_modes():
    for bad in ({"layers": (5,)}, {"layers": ()}, {"pooling": "max"}, {"combine": "sum"}):
        with pytest.raises(ModelError):
            EncoderInput(**bad)


def test_config_round_trip_and_reads_encoder(encoder_models):
    model = EmotionModel.load(encoder_models["male"])
    assert model.reads_encoder and model.config.encoder == LAST
    data = json.loads((encoder_models["male"] / "config.json").read_text())
    assert data["encoder"] == {"layers": [4], "pooling": "mean_std", "combine": "concat", "weights_sha256": ""}
    assert not EmotionModel.load(encoder_models["plain"]).reads_encoder


def test_encoder_model_needs_the_encoder_block(encoder_models):
    model = EmotionModel.load(encoder_models["male"])
    wide = np.zeros((3, N + ENCODER_COLUMNS), np.float32)
    probs = model.predict_proba(wide)
    assert probs.shape == (3, 8) and EMOTION_LABELS[int(probs[0].argmax())] == "angry"
    with pytest.raises(PredictionError, match="speech encoder"):
        model.predict_proba(np.zeros((3, N), np.float32))


def test_librosa_model_ignores_the_encoder_block(encoder_models):
    model = EmotionModel.load(encoder_models["plain"])
    rng = np.random.default_rng(1)
    narrow = rng.standard_normal((4, N)).astype(np.float32)
    wide = np.concatenate([narrow, rng.standard_normal((4, ENCODER_COLUMNS)).astype(np.float32)], axis=1)
    np.testing.assert_allclose(model.predict_proba(wide), model.predict_proba(narrow))


def test_missing_encoder_scaler_is_named(encoder_models, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(encoder_models["male"], copy)
    (copy / ENCODER_SCALER_FILE).unlink()
    with pytest.raises(ModelError, match=ENCODER_SCALER_FILE):
        EmotionModel.load(copy)


def test_cascade_runs_the_encoder_only_when_a_model_reads_it(encoder_models, tmp_path):
    from pipeline.cascade import Cascade

    gender = make_gender_model(tmp_path / "gender", female_logit=-4.0)
    y = speech_like(2.0, seed=3)
    with_encoder = Cascade.load(gender, male_dir=encoder_models["male"], female_dir=encoder_models["female"])
    assert with_encoder.reads_encoder
    item = with_encoder.featurise_signal(y, SR)
    assert item.features.shape == (N + ENCODER_COLUMNS,)
    result = with_encoder.predict_signal(y, SR)
    assert result.status == "ok" and result.gender == "male" and result.emotion == "angry"
    plain = Cascade.load(gender, male_dir=encoder_models["plain"], female_dir=encoder_models["female"])
    assert plain.reads_encoder  # one of the two reads it: every row carries the block
    only_plain = Cascade.load(gender, male_dir=encoder_models["plain"], female_dir=encoder_models["plain"])
    assert not only_plain.reads_encoder and only_plain.featurise_signal(y, SR).features.shape == (N,)


def test_bad_audio_still_gets_a_row_with_the_encoder(encoder_models, tmp_path):
    from pipeline.cascade import Cascade

    cascade = Cascade.load(make_gender_model(tmp_path / "g", female_logit=4.0), male_dir=encoder_models["male"],
                           female_dir=encoder_models["female"])
    results = cascade.predict_signals([(np.zeros(SR, np.float32), SR), (speech_like(1.5, seed=1), SR),
                                       (np.full(100, np.nan, np.float32), SR)])
    assert [r.status for r in results][1] == "ok" and results[1].emotion == "sad"
    assert results[0].status != "ok" and results[2].status != "ok"


@pytest.mark.parametrize("combine, layers", [("concat", (4,)), ("wsum", (0, 1, 2, 3, 4)), ("encoder_only", (4,))])
def test_train_family_with_an_encoder_input(monkeypatch, combine, layers, tmp_path):
    """Two-branch (and encoder-only) ensembles learn from the encoder block, save, load and answer alike."""
    import training.emotion_train as te
    from pipeline.emotion import configure_tensorflow

    configure_tensorflow(1)

    def rows(config, genders, splits, *, jobs=None, seed=0):
        from pathlib import Path

        from training.corpus import Utterance

        utts = [Utterance(Path(f"{s}/{g}{k}/{i}.wav"), "ravdess", f"{s}_{g}{k}", g,
                          EMOTION_LABELS[i % 8], "", "en", s, 2.0)
                for s in splits for g in genders for k in range(2) for i in range(48)]
        y = np.array([EMOTION_LABELS.index(u.emotion) for u in utts])
        X = np.random.default_rng(seed).normal(0, 1, (len(utts), N + ENCODER_COLUMNS)).astype(np.float32)
        for k in range(8):  # the emotion lives in the last state's means only (96 columns per class)
            X[y == k, N + 3072 + 96 * k: N + 3072 + 96 * (k + 1)] += 1.0
        return te.Split(X=X, y=y, utterances=utts), []

    monkeypatch.setattr(te, "training_rows", rows)
    config = te.TrainConfig(n_seeds=2, epochs=20, finetune_epochs=2, batch_size=32, augmentations=(),
                            encoder_layers=layers, encoder_combine=combine)
    models, _ = te.train_family(config, verbose=False)
    fresh = rows(config, ("male",), ("train",), seed=7)[0]  # new noise: only the encoder signal carries over
    model = models["male"]
    assert model.reads_encoder and model.config.encoder.layers == layers
    assert (model.predict_proba(fresh.X).argmax(1) == fresh.y).mean() > 0.6  # chance 0.125
    model.save(tmp_path / "m")
    again = EmotionModel.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(fresh.X[:5]), model.predict_proba(fresh.X[:5]), atol=1e-6)


def test_emotion_robustness_table_counts_right_answers_per_condition(encoder_models):
    """training.emotion_conditions.robustness_table on hand-made rows: known accuracies and changes."""
    from pathlib import Path

    from training.corpus import Utterance
    from training.emotion_conditions import ConditionRows, robustness_table

    models = {"male": EmotionModel.load(encoder_models["male"]), "female": EmotionModel.load(encoder_models["female"])}
    rows = tuple(Utterance(Path(f"c/{i}.wav"), corpus, f"s{i}", gender, emotion, "", "en", "test", 2.0)
                 for i, (corpus, gender, emotion) in enumerate([("ravdess", "male", "angry"), ("ravdess", "female", "sad"),
                                                                ("nemo", "male", "happy"), ("nemo", "female", "sad")]))
    X = np.zeros((4, N + ENCODER_COLUMNS), np.float32)  # the fake models answer angry (male) and sad (female)
    ok_all = np.ones(4, bool)
    data = ConditionRows(rows, {"clean": X, "pink_10db": X}, {"clean": ok_all, "pink_10db": np.array([1, 1, 1, 0], bool)})
    table = robustness_table(models, data)
    assert table["n"] == 3  # the clip pink noise could not score is left out of every condition
    assert table["accuracy"] == {"clean": pytest.approx(2 / 3), "pink_10db": pytest.approx(2 / 3)}
    assert table["per_corpus"]["clean"] == {"nemo": 0.0, "ravdess": 1.0}
    assert table["change_pts"]["pink_10db"] == pytest.approx(0.0)


def test_recording_segments_get_their_emotion_from_encoder_models(encoder_models, tmp_path):
    """The conversation view: every speech segment of a recording is scored with the encoder block."""
    import soundfile as sf

    from pipeline.cascade import Cascade
    from pipeline.paths import PROJECT_ROOT
    from pipeline.segments_csv import segment_rows
    from pipeline.testing import silence

    cascade = Cascade.load(make_gender_model(tmp_path / "g", female_logit=-4.0), male_dir=encoder_models["male"],
                           female_dir=encoder_models["female"])
    clips = [sf.read(PROJECT_ROOT / "examples" / f"{name}.flac", dtype="float32")[0]
             for name in ("man_calm", "woman_angry", "man_sad")]
    y = np.concatenate([part for clip in clips for part in (clip, silence(0.8))])
    rec = cascade.analyse_recording(y, SR)
    assert rec.ok and rec.segments
    for s in rec.segments:  # male by the tiny gender model, whose encoder-reading emotion model says angry
        assert s.prediction.ok and s.prediction.gender == "male" and s.prediction.emotion == "angry"
    assert len(segment_rows(rec)) == len(rec.segments)
