"""Late fusion of the ECAPA and the GE2E head: file format, formula, fitting (known answers)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.gender_fusion import (
    FUSION_FILE,
    GE2EHead,
    GenderFusion,
    log_odds_female,
    probabilities_from_log_odds,
)
from training.gender_fusion import fit_fusion, fit_ge2e_head, fit_temperature, log_loss


def _head(scale: float = 1.0, intercept: float = 0.0) -> GE2EHead:
    coef = np.zeros(256)
    coef[0] = scale
    return GE2EHead(coef, intercept)


def test_log_odds_round_trip():
    p = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    z = log_odds_female(p)
    assert z == pytest.approx([np.log(1 / 9), 0.0, np.log(4)])
    assert probabilities_from_log_odds(z) == pytest.approx(p, abs=1e-6)


def test_log_odds_of_certain_answers_are_finite():
    z = log_odds_female(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert np.all(np.isfinite(z)) and z[0] < -10 and z[1] > 10


def test_fused_log_odds_is_the_documented_formula():
    fusion = GenderFusion(_head(2.0, -1.0), ecapa_temperature=2.0, ge2e_temperature=0.5, ecapa_weight=0.25)
    emb = np.zeros((2, 256))
    emb[:, 0] = [1.0, 0.0]
    z_e = np.array([4.0, -2.0])
    expected = 0.25 * z_e / 2.0 + 0.75 * (np.array([2.0 - 1.0, -1.0])) / 0.5
    assert fusion.fused_log_odds(z_e, emb) == pytest.approx(expected)


def test_weight_one_is_the_calibrated_ecapa_and_needs_no_embeddings():
    fusion = GenderFusion(_head(), ecapa_temperature=2.0, ecapa_weight=1.0)
    assert not fusion.needs_embeddings
    p = fusion.probabilities(np.array([[0.2, 0.8]]), None)
    assert p[0, 1] == pytest.approx(1 / (1 + np.exp(-np.log(4) / 2)), abs=1e-6)


def test_weight_below_one_refuses_missing_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        GenderFusion(_head(), ecapa_weight=0.5).fused_log_odds(np.zeros(1), None)


def test_save_and_load_round_trip(tmp_path):
    fusion = GenderFusion(_head(3.0, 0.5), 1.5, 0.8, 0.75, {"fitted_on": "val"})
    fusion.save(tmp_path)
    loaded = GenderFusion.load(tmp_path)
    assert loaded is not None
    assert loaded.head.coef == pytest.approx(fusion.head.coef)
    assert (loaded.ecapa_temperature, loaded.ge2e_temperature, loaded.ecapa_weight) == (1.5, 0.8, 0.75)
    assert loaded.provenance == {"fitted_on": "val"}
    assert GenderFusion.load(tmp_path / "nothing_here") is None


@pytest.mark.parametrize("spec, message", [
    ({"format": "other/9"}, "unknown fusion format"),
    ({"format": "ecapa+ge2e-lr/1", "ecapa_temperature": 1, "ge2e_temperature": 1, "ecapa_weight": 0.5,
      "ge2e_head": {"coef": [0.0] * 3, "intercept": 0}}, "256"),
    ({"format": "ecapa+ge2e-lr/1", "ecapa_temperature": -1, "ge2e_temperature": 1, "ecapa_weight": 0.5,
      "ge2e_head": {"coef": [0.0] * 256, "intercept": 0}}, "positive"),
    ({"format": "ecapa+ge2e-lr/1", "ecapa_temperature": 1, "ge2e_temperature": 1, "ecapa_weight": 2,
      "ge2e_head": {"coef": [0.0] * 256, "intercept": 0}}, r"\[0, 1\]"),
    ({"format": "ecapa+ge2e-lr/1"}, "malformed"),
])
def test_bad_fusion_files_raise_model_error_naming_the_file(tmp_path, spec, message):
    (tmp_path / FUSION_FILE).write_text(json.dumps(spec))
    with pytest.raises(ModelError, match=message) as info:
        GenderFusion.load(tmp_path)
    assert info.value.path == str(tmp_path / FUSION_FILE)


def test_log_loss_known_values():
    assert log_loss(np.array([0.0]), np.array([1])) == pytest.approx(np.log(2))
    assert log_loss(np.array([np.log(3)]), np.array([0])) == pytest.approx(np.log(4))


def test_fit_temperature_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    true_z = rng.normal(0, 2, 20000)
    y = (rng.random(true_z.size) < 1 / (1 + np.exp(-true_z))).astype(int)
    assert fit_temperature(3.0 * true_z, y) == pytest.approx(3.0, rel=0.05)


def test_fit_fusion_prefers_the_informative_model():
    rng = np.random.default_rng(1)
    n = 4000
    y = rng.integers(0, 2, n)
    informative = np.where(y == 1, 2.0, -2.0) + rng.normal(0, 1, n)
    emb = np.zeros((n, 256))
    emb[:, 0] = rng.normal(0, 1, n)  # the GE2E head sees noise only
    fitted = fit_fusion(informative, _head(), emb, y)
    assert fitted.fusion.ecapa_weight == 1.0
    assert set(fitted.val_log_loss) == {0.0, 0.25, 0.5, 0.75, 1.0}
    emb[:, 0] = informative
    fitted = fit_fusion(rng.normal(0, 1, n), _head(), emb, y)  # now only the head knows
    assert fitted.fusion.ecapa_weight == 0.0


def test_fit_ge2e_head_separates_a_separable_direction():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 100)
    X = rng.normal(0, 0.05, (200, 256))
    X[:, 5] += np.where(y == 1, 1.0, -1.0)
    head, c = fit_ge2e_head(X, y, np.arange(200) // 10)
    assert np.mean((head.log_odds(X) > 0) == y) == 1.0
    assert c in (0.01, 0.1, 1.0, 10.0, 100.0)


# --------------------------------------------------------------------------- in the gender classifier

def _fused_folder(tmp_path, *, female_logit: float, intercept: float, weight: float = 0.5):
    from pipeline.testing import make_gender_model

    folder = make_gender_model(tmp_path / "fused", female_logit=female_logit)
    GenderFusion(_head(0.0, intercept), ecapa_temperature=1.0, ge2e_temperature=1.0, ecapa_weight=weight).save(folder)
    return folder


def test_classifier_applies_the_fusion_of_its_folder(tmp_path):
    from pipeline.gender import GenderClassifier
    from pipeline.testing import speech_like

    # ECAPA says female with log-odds 2; the head says male with log-odds -4; w = 0.5 -> z = -1
    classifier = GenderClassifier.load(_fused_folder(tmp_path, female_logit=2.0, intercept=-4.0))
    assert classifier.fusion is not None
    p = classifier.predict_proba_batch([speech_like(1.0), speech_like(2.0, seed=1)])
    assert p[:, 1] == pytest.approx([1 / (1 + np.e)] * 2, abs=1e-5)
    assert classifier.predict_proba(speech_like(1.0)) == pytest.approx(p[0], abs=1e-6)
    assert classifier.predict(speech_like(1.0)) == "male"


def test_classifier_reuses_given_embeddings_without_loading_the_encoder(tmp_path):
    from pipeline.gender import GenderClassifier
    from pipeline.testing import speech_like

    classifier = GenderClassifier.load(_fused_folder(tmp_path, female_logit=2.0, intercept=-4.0))
    p = classifier.predict_proba_batch([speech_like(1.0)], embeddings=np.zeros((1, 256)))
    assert p[0, 1] == pytest.approx(1 / (1 + np.e), abs=1e-5)
    assert classifier._encoder is None


def test_classifier_without_fusion_file_is_the_ecapa_alone(tmp_path):
    from pipeline.gender import GenderClassifier
    from pipeline.testing import make_gender_model, speech_like

    classifier = GenderClassifier.load(make_gender_model(tmp_path / "plain", female_logit=2.0))
    assert classifier.fusion is None
    assert classifier.predict_proba(speech_like(1.0))[1] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-5)


def test_a_broken_fusion_file_stops_loading_with_a_model_error(tmp_path):
    from pipeline.gender import GenderClassifier

    folder = _fused_folder(tmp_path, female_logit=2.0, intercept=0.0)
    (folder / FUSION_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        GenderClassifier.load(folder)
