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


def test_second_opinion_can_be_left_out_at_load(tmp_path):
    from pipeline.gender import GenderClassifier
    from pipeline.testing import speech_like

    folder = _fused_folder(tmp_path, female_logit=2.0, intercept=-4.0)
    alone = GenderClassifier.load(folder, second_opinion=False)
    assert alone.fusion is None
    assert alone.predict_proba(speech_like(1.0))[1] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-5)


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


# --------------------------------------------------------------------------- degraded copies and the recipe's second opinion

def test_degraded_copy_is_seeded_same_length_and_changed():
    from pipeline.testing import speech_like
    from training.ge2e_copies import clip_seed, degrade

    y = speech_like(2.0)
    babble = [np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32)]
    a = degrade(y, clip_seed("ravdess/a.flac#0"), babble)
    b = degrade(y, clip_seed("ravdess/a.flac#0"), babble)
    c = degrade(y, clip_seed("ravdess/a.flac#1"), babble)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]            # the same key gives the same copy
    assert a[0].shape == y.shape and a[0].dtype == np.float32
    assert not np.allclose(a[0], y) and not np.array_equal(a[0], c[0])
    assert a[2] in ("clean", "white", "pink", "babble")
    assert clip_seed("x") == clip_seed("x") != clip_seed("y")


def test_degraded_copies_draw_noise_kinds_and_snr_in_range():
    from pipeline.testing import speech_like
    from training.ge2e_copies import NOISE_PROB, SNR_RANGE_DB, clip_seed, degrade

    y = speech_like(1.0)
    babble = [np.random.default_rng(1).standard_normal(16000 * 2).astype(np.float32)]
    draws = [degrade(y, clip_seed(f"clip#{k}"), babble)[2:] for k in range(120)]
    noisy = [(kind, snr) for kind, snr in draws if kind != "clean"]
    assert {kind for kind, _ in noisy} == {"white", "pink", "babble"}
    assert all(SNR_RANGE_DB[0] <= snr <= SNR_RANGE_DB[1] for _, snr in noisy)
    assert abs(len(noisy) / len(draws) - NOISE_PROB) < 0.15


def test_second_opinion_fits_on_clips_and_copies_and_writes_the_recipe_fusion(tmp_path, monkeypatch):
    """fit_second_opinion: rows + their copies go into the head; w and T come from the recipe, not from a fit."""
    from types import SimpleNamespace

    import training.ge2e_copies as copies
    from pipeline.testing import make_gender_model
    from training.gender_second_opinion import fit_second_opinion
    from training.recipes import load_recipe

    rng = np.random.default_rng(0)
    rows = [SimpleNamespace(relpath=f"c/{i}.wav", gender="female" if i % 2 else "male", speaker=f"s{i % 10}")
            for i in range(60)]

    def vector(female: bool) -> np.ndarray:
        v = rng.normal(0, 0.05, 256)
        v[3] += 1.0 if female else -1.0
        return v.astype(np.float32)

    monkeypatch.setattr(copies, "embed_corpus", lambda rs, cache: {"vectors": {u.relpath: vector(u.gender == "female") for u in rs}})
    keys = [(f"{u.relpath}#{k}", u.gender == "female") for u in rows for k in range(2)]
    monkeypatch.setattr(copies, "embed_fitting_copies", lambda rs, cache, copies: {
        "keys": np.array([k for k, _ in keys]), "embeddings": np.stack([vector(female) for _, female in keys]),
        "noise": np.array(["white"] * len(keys))})
    recipe = load_recipe("gender", {"second_opinion": "ge2e", "ge2e_copies": 2, "fusion_ecapa_weight": 0.25,
                                    "fusion_ecapa_temperature": 1.5, "fusion_ge2e_temperature": 0.5})
    folder = make_gender_model(tmp_path / "g", female_logit=0.0)
    fusion = fit_second_opinion(folder, recipe, rows, cache=tmp_path)
    saved = GenderFusion.load(folder)
    assert saved is not None and saved.ecapa_weight == 0.25 and saved.ecapa_temperature == 1.5
    assert saved.ge2e_temperature == 0.5 and fusion.provenance["rows_with_copies"] == 180
    assert saved.head.coef[3] > 0  # female direction learnt


def test_the_rule_of_the_gender_candidates_known_answers():
    """studies/gender_fusion/rule.decide: +1.0 point of the twelve-part score and at most -1.0 clean to replace E0."""
    from studies.gender_fusion.rule import decide, median_fusion
    from studies.gender_fusion.study import CORPORA
    from training.gender_conditions import CONDITIONS

    def candidate(fold: float, degraded: float, clean: float) -> dict:
        return {"folds": dict.fromkeys(CORPORA, fold), "test": {"clean": clean, **dict.fromkeys(CONDITIONS[1:], degraded)}}

    table = {"E0": candidate(0.90, 0.88, 0.96),
             "A": candidate(0.91, 0.89, 0.96),        # +1.0 exactly: passes
             "B": candidate(0.95, 0.95, 0.949),       # far better, 1.1 points less clean: fails
             "C": candidate(0.93, 0.92, 0.955),       # best score among those that pass: ships
             "D": {"folds": {"ravdess": 0.99}, "test": {"clean": 0.99}}}  # incomplete: not judged
    d = decide(table)
    assert d["candidates"]["A"]["passes"] and not d["candidates"]["B"]["passes"]
    assert d["candidates"]["A"]["score_gain_pts"] == pytest.approx(1.0)
    assert not d["candidates"]["D"]["complete"] and "passes" not in d["candidates"]["D"]
    assert d["winner"] == "C"
    assert decide({"E0": table["E0"], "B": table["B"]})["winner"] == "E0"
    folds = {c: {"ecapa_temperature": t, "ge2e_temperature": 1.0, "ecapa_weight": w}
             for c, t, w in zip(CORPORA, (0.5, 0.7, 0.6, 0.9, 0.8, 0.65), (0.25, 0.5, 0.5, 0.75, 0.5, 0.25))}
    assert median_fusion(folds) == {"ecapa_temperature": 0.675, "ge2e_temperature": 1.0, "ecapa_weight": 0.5}


# --------------------------------------------------------------------------- the three-opinion study (amendment 7)

def test_simplex_grid_and_three_way_fit_find_the_one_informative_opinion():
    from studies.gender_fusion.whisper import fit_multi, fuse, simplex

    assert simplex(2) == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]  # the two-way rule's grid
    assert len(simplex(3)) == 15 and all(abs(sum(w) - 1) < 1e-9 for w in simplex(3))
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    informative = np.where(y == 1, 2.0, -2.0) + rng.normal(0, 1, y.size)
    zs = [rng.normal(0, 1, y.size), 2.0 * informative, rng.normal(0, 1, y.size)]
    temps, weights = fit_multi(zs, y)
    assert weights == (0.0, 1.0, 0.0)
    assert temps[1] == pytest.approx(2.0 * fit_temperature(informative, y), rel=1e-3)
    assert np.allclose(fuse(zs, temps, weights), zs[1] / temps[1])


def test_whisper_head_standardises_and_separates():
    from studies.gender_fusion.whisper import fit_head

    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 150)
    X = rng.normal(0, 1, (300, 40)) * 50 + 10  # large offsets and scales: standardised first
    X[:, 7] += np.where(y == 1, 200.0, -200.0)
    head = fit_head(X, y, np.arange(300) // 10)
    assert np.mean((head.log_odds(X) > 0) == y) == 1.0 and head.C in (0.001, 0.01, 0.1)
