"""Seed ensembles of gender models: loading, averaging, building, refusing bad folders."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("yaml", reason="needs the full profile: the gender trainer's recipes")

from pipeline.errors import ModelError
from pipeline.gender import ENSEMBLE_FILE, GenderClassifier, ensemble_members
from training.gender_ensemble import build_ensemble, main
from pipeline.testing import make_gender_model, speech_like


def _metadata(seed: int, *, C: int = 16) -> dict:
    """The parts of a train_gender metadata.json that an ensemble reads."""
    return {
        "labels": ["male", "female"], "sample_rate": 16000, "frontend": {"n_mels": 80},
        "architecture": {"C": C, "mfa_channels": 24, "attention_channels": 8, "embedding_dim": 8},
        "audio_config": {"target_rms_dbfs": -26.0},
        "training": {"seed": seed, "fit_splits": ["train", "val"], "epochs": 80, "keep": "last",
                     "train_rows": {"ravdess/female": 10, "ravdess/male": 10}, "noise_kinds": ["white"],
                     "augmentation": "x", "optimiser": "y", "corpora": ["ravdess"], "crop_s": [1.5, 3.0],
                     "sampling": "z", "samples_per_epoch": 3200, "batch_size": 32, "threads": 1,
                     "history": [{"epoch": 1}], "wall_seconds": 60.0, "best_epoch": 80},
        "test_metrics": {"overall": {"n": 4, "correct": 4 - seed, "accuracy": (4 - seed) / 4}},
        "torch_version": "t", "torchaudio_version": "ta", "n_parameters": 1000,
    }


def _member(folder: Path, *, female_logit: float, seed: int) -> Path:
    make_gender_model(folder, female_logit=female_logit)
    (folder / "metadata.json").write_text(json.dumps(_metadata(seed)))
    return folder


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    return [_member(root / "a", female_logit=4.0, seed=0), _member(root / "b", female_logit=-2.0, seed=1)]


@pytest.fixture(scope="module")
def ensemble_dir(members, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "gender_model"
    build_ensemble(members, out, evaluate_test=False)
    return out


def test_ensemble_averages_member_probabilities(ensemble_dir, members):
    # members answer softmax([0, 4]) and softmax([0, -2]) whatever the input: the ensemble is their mean,
    # (0.98201 + 0.11920) / 2 = 0.55061 female (averaging logits instead would give 0.731)
    clf = GenderClassifier.load(ensemble_dir)
    assert len(clf.models) == 2 and all(not m.training for m in clf.models)
    p = clf.predict_proba(speech_like(1.0))
    expected = (1 / (1 + math.exp(-4)) + 1 / (1 + math.exp(2))) / 2
    assert p[1] == pytest.approx(expected, abs=1e-5)
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    batch = clf.predict_proba_batch([speech_like(1.0), speech_like(0.7, f0=220)])
    np.testing.assert_allclose(batch[:, 1], expected, atol=1e-5)
    # each member folder still loads on its own, in the hub layout
    single = GenderClassifier.load(ensemble_dir / "seed0")
    assert len(single.models) == 1 and single.predict_proba(speech_like(1.0))[1] == pytest.approx(0.98201, abs=1e-4)


def test_ensemble_folder_contents(ensemble_dir):
    spec = json.loads((ensemble_dir / ENSEMBLE_FILE).read_text())
    assert spec["members"] == ["seed0", "seed1"]
    for name in spec["members"]:
        assert {p.name for p in (ensemble_dir / name).iterdir()} == {"config.json", "model.safetensors", "metadata.json"}
    meta = json.loads((ensemble_dir / "metadata.json").read_text())
    assert meta["ensemble"]["members"] == ["seed0", "seed1"]
    assert meta["training"]["seeds"] == [0, 1] and "history" not in meta["training"]
    assert meta["members"]["seed1"]["test_accuracy"] == 0.75
    assert meta["n_parameters"] == 2000
    card = (ensemble_dir / "README.md").read_text()
    assert "seed ensemble of 2" in card and "100.0% / 75.0%" in card
    assert "training.gender_ensemble --members /tmp/gender_seed0 /tmp/gender_seed1 --out gender_model" in card
    assert not list(ensemble_dir.parent.glob(".gender_model-*"))  # no staging folder left behind


def test_cascade_routes_with_an_ensemble(ensemble_dir, tiny_models):
    from pipeline.cascade import Cascade

    cascade = Cascade.load(ensemble_dir, male_dir=tiny_models["male"], female_dir=tiny_models["female"])
    result = cascade.predict_signal(speech_like(2.0), 16000)
    assert result.status == "ok" and result.gender == "female"
    assert result.gender_probabilities["female"] == pytest.approx(0.5506, abs=1e-3)
    assert result.emotion == "angry"


def test_build_can_replace_a_member_folder(members, tmp_path):
    a = shutil.copytree(members[0], tmp_path / "gender_model")
    build_ensemble([a, members[1]], a, evaluate_test=False)
    assert (a / ENSEMBLE_FILE).is_file() and (a / "seed0" / "model.safetensors").is_file()
    assert not (a / "model.safetensors").exists()


def test_members_must_share_the_recipe(members, tmp_path):
    odd = _member(tmp_path / "odd", female_logit=1.0, seed=2)
    meta = _metadata(2)
    meta["training"]["epochs"] = 40
    (odd / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="training.epochs"):
        build_ensemble([members[0], odd], tmp_path / "out", evaluate_test=False)
    assert not (tmp_path / "out").exists()
    # runs recorded before `noise_kinds` and `keep` existed used white noise and kept their last epoch
    old = _metadata(2)
    del old["training"]["noise_kinds"], old["training"]["keep"]
    (odd / "metadata.json").write_text(json.dumps(old))
    assert build_ensemble([members[0], odd], tmp_path / "out", evaluate_test=False)["training"]["seeds"] == [0, 2]
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(ModelError, match="at least two"):
        build_ensemble([members[0]], tmp_path / "out", evaluate_test=False)
    (odd / "metadata.json").unlink()
    with pytest.raises(ModelError, match="metadata.json"):
        build_ensemble([members[0], odd], tmp_path / "out", evaluate_test=False)
    assert main(["--members", str(members[0]), str(odd), "--out", str(tmp_path / "out"), "--no-test"]) == 2
    assert not list(tmp_path.glob(".out-*"))


@pytest.mark.parametrize("spec, message", [
    ("{not json", "not valid JSON"),
    ('{"members": []}', "must list"),
    ('{"members": ["../a"]}', "not inside"),
    ('{"members": ["missing"]}', "missing"),
    ('{"members": ["seed0", "seed1"], "combine": "max"}', "combine"),
])
def test_bad_ensemble_json_is_model_error(spec, message, ensemble_dir, tmp_path):
    broken = shutil.copytree(ensemble_dir, tmp_path / "broken")
    (broken / ENSEMBLE_FILE).write_text(spec)
    with pytest.raises(ModelError, match=message):
        ensemble_members(broken)
    with pytest.raises(ModelError, match=message):
        GenderClassifier.load(broken)


def test_damaged_member_is_model_error(ensemble_dir, tmp_path):
    broken = shutil.copytree(ensemble_dir, tmp_path / "broken")
    (broken / "seed1" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing model.safetensors"):
        GenderClassifier.load(broken)


def test_members_that_chose_their_own_epoch(tmp_path):
    # train-only members that each kept their best val epoch: the ensemble records only what they share
    folders = []
    for seed, best in ((0, 61), (1, 74)):
        folder = make_gender_model(tmp_path / f"m{seed}", female_logit=1.0)
        meta = _metadata(seed)
        meta["training"].update(fit_splits=["train"], keep="best", best_epoch=best,
                                bn_recalibration={"used": seed == 1, "val_accuracy": 0.9 + seed / 100})
        meta["val_accuracy"] = 0.95
        (folder / "metadata.json").write_text(json.dumps(meta))
        folders.append(folder)
    meta = build_ensemble(folders, tmp_path / "ens", evaluate_test=False)
    assert "best_epoch" not in meta["training"] and "bn_recalibration" not in meta["training"]
    assert meta["training"]["epochs"] == 80 and meta["training"]["keep"] == "best"
    card = (tmp_path / "ens" / "README.md").read_text()
    assert "each member kept its best epoch of 80" in card and "BatchNorm running statistics" not in card


def test_ensemble_keeps_each_members_recipe(members, tmp_path):
    """A member's recipe.yaml (what training.gender_train saves) is copied into its folder; older members lack it."""
    from training.config import save_recipe
    from training.recipes import load_recipe
    from training.gender_recipe import GenderRecipe

    with_recipe = tmp_path / "c"
    shutil.copytree(members[1], with_recipe)
    save_recipe(GenderRecipe(seed=1, epochs=3), with_recipe)
    build_ensemble([members[0], with_recipe], tmp_path / "ens", evaluate_test=False)
    assert not (tmp_path / "ens" / "seed0" / "recipe.yaml").exists()
    assert load_recipe("gender", path=tmp_path / "ens" / "seed1" / "recipe.yaml") == GenderRecipe(seed=1, epochs=3)
