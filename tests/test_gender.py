"""Tests of the ECAPA gender model, its front end and the GenderClassifier wrapper."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the full profile: the gender network and its trainer")
import torch

from pipeline.ecapa import ECAPAGender, LogMelFrontEnd
from pipeline.errors import ModelError, PredictionError
from pipeline.gender import GENDER_LABELS, GenderClassifier
from pipeline.paths import PROJECT_ROOT
from pipeline.testing import TINY_GENDER_WIDTHS as TINY_WIDTHS, speech_like
from training.testing import write_gender_corpus
from training.testing import SYNTHETIC_GENDER_RECIPE

DATA = Path(__file__).parent / "data"
SR = 16000
TINY = {"C": 32, "mfa_channels": 48, "attention_channels": 16, "embedding_dim": 16}


def synthetic_signal(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """Deterministic chirp (100 Hz -> 4 kHz) plus a 220 Hz tone with harmonics, float32."""
    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = 100.0, 4000.0
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    tone = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in (1, 2, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.05 * (chirp + tone * envelope)).astype(np.float32)


def expected_public_keys() -> set[str]:
    """State-dict names of JaesungHuh/voice-gender-classifier, written out from its layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "conv1.bias", *(f"bn1.{s}" for s in bn)}
    for layer in ("layer1", "layer2", "layer3"):
        for conv in ("conv1", "conv3", "se.se.1", "se.se.3"):
            keys |= {f"{layer}.{conv}.weight", f"{layer}.{conv}.bias"}
        for norm in ("bn1", "bn3", *(f"bns.{i}" for i in range(7))):
            keys |= {f"{layer}.{norm}.{s}" for s in bn}
        keys |= {f"{layer}.convs.{i}.{p}" for i in range(7) for p in ("weight", "bias")}
    for lin in ("layer4", "attention.0", "attention.4", "fc6", "fc7"):
        keys |= {f"{lin}.weight", f"{lin}.bias"}
    for norm in ("attention.2", "bn5", "bn6"):
        keys |= {f"{norm}.{s}" for s in bn}
    return keys


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial running statistics (eval outputs then depend on them)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = ECAPAGender(**TINY)
    _randomise_batchnorm(model)
    folder = tmp_path_factory.mktemp("tiny_gender")
    model.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- layout


def test_public_layout_round_trip(tmp_path):
    torch.manual_seed(1)
    model = ECAPAGender(C=1024).eval()
    _randomise_batchnorm(model, seed=1)
    keys = set(model.state_dict())
    assert keys == expected_public_keys()
    assert len(keys) == 233
    for name in ("layer1.convs.6.weight", "attention.0.weight", "bn5.running_mean", "fc7.bias"):
        assert name in keys
    assert not any(k.startswith("frontend") for k in keys)
    assert model.state_dict()["fc7.weight"].shape == (2, 192)
    assert model.state_dict()["attention.0.weight"].shape == (256, 4608, 1)

    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    clf = GenderClassifier.load(tmp_path)
    assert set(clf.model.state_dict()) == keys
    x = torch.from_numpy(synthetic_signal(0.8))[None]
    with torch.inference_mode():
        expected = torch.softmax(model(x), dim=1)[0].numpy()
    np.testing.assert_allclose(clf.predict_proba(x[0].numpy()), expected, rtol=1e-5, atol=1e-6)
    assert clf.source == str(tmp_path)
    assert clf.info == {}


def test_config_mismatch_is_model_error(tmp_path, tiny_dir):
    import json
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_dir / name, tmp_path / name)
    config = json.loads((tmp_path / "config.json").read_text())
    config["C"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not match"):
        GenderClassifier.load(tmp_path)


# --------------------------------------------------------------------------- front end


def reference_log_mel(y: np.ndarray) -> np.ndarray:
    """Independent numpy/librosa implementation of the public front end, ``[80, frames]``."""
    import librosa

    y = y.astype(np.float64)
    padded = np.concatenate([y[1:2], y])  # reflect pad by one sample on the left
    emphasised = padded[1:] - 0.97 * padded[:-1]
    n_fft, hop, win = 512, 160, 400
    n = np.arange(win)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / win)  # periodic Hamming
    left = (n_fft - win) // 2
    window = np.pad(window, (left, n_fft - win - left))
    x = np.pad(emphasised, n_fft // 2, mode="reflect")
    n_frames = 1 + len(emphasised) // hop
    frames = np.stack([x[t * hop : t * hop + n_fft] * window for t in range(n_frames)], axis=1)
    power = np.abs(np.fft.rfft(frames, axis=0)) ** 2  # [257, frames]
    fbank = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=80, fmin=20, fmax=7600, htk=True, norm=None)
    logmel = np.log(fbank @ power + 1e-6)
    return logmel - logmel.mean(axis=1, keepdims=True)


def test_front_end_matches_numpy_reference():
    y = synthetic_signal(1.0)
    got = LogMelFrontEnd()(torch.from_numpy(y)[None])[0].numpy()
    want = reference_log_mel(y)
    assert got.shape == want.shape == (80, 101)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=0)


def test_front_end_matches_torchaudio_melspectrogram():
    import torchaudio

    x = torch.from_numpy(synthetic_signal(0.7))[None]
    emph = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x.unsqueeze(1), (1, 0), "reflect"), torch.tensor([[[-0.97, 1.0]]])
    ).squeeze(1)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, f_min=20, f_max=7600,
        window_fn=torch.hamming_window, n_mels=80,
    )
    want = torch.log(mel(emph) + 1e-6)
    want = want - want.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(LogMelFrontEnd()(x), want, atol=1e-4, rtol=0)


def test_front_end_golden_file():
    golden = np.load(DATA / "logmel_golden.npy")
    got = LogMelFrontEnd()(torch.from_numpy(synthetic_signal(0.5))[None])[0].numpy()
    assert got.shape == golden.shape == (80, 51)
    np.testing.assert_allclose(got, golden, atol=1e-3, rtol=0)


def test_front_end_has_no_state():
    fe = LogMelFrontEnd()
    assert list(fe.parameters()) == []
    assert fe.state_dict() == {}


# --------------------------------------------------------------------------- classifier


def test_predict_proba_tiny(tiny_dir):
    clf = GenderClassifier.load(tiny_dir)
    assert not clf.model.training
    p = clf.predict_proba(synthetic_signal(1.0))
    assert p.shape == (2,)
    assert np.all(p >= 0) and abs(float(p.sum()) - 1.0) < 1e-5
    assert clf.predict(synthetic_signal(1.0)) in GENDER_LABELS


def test_batch_equals_single(tiny_dir):
    clf = GenderClassifier.load(tiny_dir)
    base = synthetic_signal(1.2)
    signals = [base, base[:9000] * 0.5, base[::-1].copy(), base[3000:12000], synthetic_signal(0.6)]
    batch = clf.predict_proba_batch(signals)
    assert batch.shape == (5, 2)
    single = np.stack([clf.predict_proba(s) for s in signals])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)
    assert clf.predict_proba_batch([]).shape == (0, 2)


def test_bad_signal_is_prediction_error(tiny_dir):
    clf = GenderClassifier.load(tiny_dir)
    with pytest.raises(PredictionError):
        clf.predict_proba(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(PredictionError):
        clf.predict_proba(np.zeros((2, 16000), dtype=np.float32))


def test_missing_weights_is_model_error(tmp_path, tiny_dir):
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="model.safetensors"):
        GenderClassifier.load(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json"):
        GenderClassifier.load(tmp_path)


def test_missing_folder_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        GenderClassifier.load(tmp_path / "no_such_model")


def test_unreachable_hub_is_model_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    with pytest.raises(ModelError, match="(?i)internet"):
        GenderClassifier.load("JaesungHuh/voice-gender-classifier")


def test_cuda_request_without_cuda(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ModelError, match="CUDA"):
        GenderClassifier.load(tiny_dir, device="cuda")


# --------------------------------------------------------------------------- shipped model


def test_shipped_model_on_real_test_clips():
    from pipeline.audio import load_audio
    from training.corpus import data_dir, read_manifest

    if not (data_dir() / "manifest.csv").is_file():
        pytest.skip(f"shared data not found at {data_dir()}")
    rows = [u for u in read_manifest() if u.split == "test" and u.gender in GENDER_LABELS]
    picked = []
    for corpus, gender in [
        ("ravdess", "male"), ("ravdess", "female"), ("savee", "male"), ("librispeech", "male"),
        ("librispeech", "female"), ("ased", "male"), ("ased", "female"), ("emovo", "male"),
        ("emovo", "female"), ("ravdess", "female"),
    ]:
        candidates = [u for u in rows if u.corpus == corpus and u.gender == gender and u not in picked]
        picked.append(candidates[len(candidates) // 3])
    clf = GenderClassifier.load()
    assert clf.info.get("labels") == list(GENDER_LABELS)
    probs = clf.predict_proba_batch([load_audio(u.path).samples for u in picked])
    predicted = [GENDER_LABELS[int(i)] for i in probs.argmax(axis=1)]
    correct = sum(p == u.gender for p, u in zip(predicted, picked))
    assert correct >= 9, list(zip([u.relpath for u in picked], predicted))


# --------------------------------------------------------------------------- training helpers


def _row(corpus: str, speaker: str, gender: str):
    from training.corpus import Utterance

    return Utterance(Path(f"{speaker}.flac"), corpus, speaker, gender, "", "", "en", "train", 1.0)


def test_sampling_weights_balance_speakers_and_genders():
    from training.gender_batches import sampling_weights

    rows = (
        [_row("ased", "ased_1", "female")] * 30 + [_row("ased", "ased_2", "female")] * 10
        + [_row("ased", "ased_3", "male")] * 40 + [_row("librispeech", f"ls_{i}", "male") for i in range(10)]
    )
    w = sampling_weights(rows)
    assert abs(w.sum() - 1.0) < 1e-9
    genders = np.array([r.gender for r in rows])
    assert abs(w[genders == "female"].sum() - 0.5) < 1e-9
    speakers = np.array([r.speaker for r in rows])
    # both female speakers get the same total share despite 30 vs 10 clips
    assert abs(w[speakers == "ased_1"].sum() - w[speakers == "ased_2"].sum()) < 1e-9
    # male groups: mass proportional to sqrt(group size) (40 vs 10 clips -> 2:1)
    assert abs(w[speakers == "ased_3"].sum() / w[80:].sum() - 2.0) < 1e-9


def test_speed_perturb_and_spec_augment():
    from training.gender_batches import make_batch, spec_augment
    from training.gender_signals import speed_perturb

    y = synthetic_signal(1.0)
    fast, slow = speed_perturb(y, 1.1), speed_perturb(y, 0.9)
    assert abs(len(fast) - len(y) / 1.1) <= 2 and abs(len(slow) - len(y) / 0.9) <= 2
    assert abs(np.sqrt(np.mean(fast**2)) - np.sqrt(np.mean(y**2))) < 1e-4
    assert speed_perturb(y, 1.0) is y

    rng = np.random.default_rng(0)
    x = torch.randn(4, 80, 200)
    spec_augment(x, rng, freq_masks=1, max_freq_width=80, time_masks=0)
    assert (x == 0).all(dim=2).any()  # some band fully masked

    fe = LogMelFrontEnd()
    mels = [[fe.log_mel(torch.from_numpy(s)[None])[0] for s in (y, slow, fast)] for _ in range(3)]
    batch = make_batch(mels, [0, 1, 2], crop_frames=50, noise=None, rng=rng, noise_prob=0.0)
    assert batch.shape == (3, 80, 50)
    torch.testing.assert_close(batch.mean(dim=2), torch.zeros(3, 80), atol=1e-4, rtol=0)
    masked = make_batch(mels, [0, 1, 2], crop_frames=300, noise=None, rng=rng, noise_prob=0.0,
                        specaugment=True)
    assert masked.shape[:2] == (3, 80) and masked.shape[2] <= 300
    assert (masked == 0).any()


@pytest.mark.parametrize("fit_splits, keep", [(("train",), None), (("train", "val"), None), (("train",), "last")])
def test_train_gender_fit_splits(tmp_path, monkeypatch, fit_splits, keep):
    """train_gender fits exactly the requested splits; with `val` fitted, or with keep="last", nothing is chosen on val."""
    from pipeline.gender import GenderClassifier
    from training.gender_cards import length_report
    from training.gender_train import train_gender

    data = tmp_path / "data"
    data.mkdir()
    write_gender_corpus(data)
    monkeypatch.setenv("SER_DATA_DIR", str(data))
    out = tmp_path / "model"
    meta = train_gender(out, **SYNTHETIC_GENDER_RECIPE, epochs=3, samples_per_epoch=32, batch_size=8, widths=TINY_WIDTHS,
                        fit_splits=fit_splits, speed_factors=(1.0,), keep=keep)
    tr = meta["training"]
    assert tr["fit_splits"] == list(fit_splits)
    # the resolved recipe is saved next to the model, and loads back as the run's recipe
    from training.recipes import load_recipe
    saved = load_recipe("gender", path=out / "recipe.yaml")
    assert saved.epochs == 3 and saved.widths == TINY_WIDTHS and saved.fit_splits == fit_splits
    assert saved.keep == keep and saved.speed_factors == (1.0,) and saved.lr == 0.002
    assert tr["n_train"] == (16 if fit_splits == ("train",) else 24)
    assert len(tr["history"]) == 3
    if "val" in fit_splits:
        assert tr["n_val"] == 0 and tr["best_epoch"] == 3 and meta["val_accuracy"] is None
        assert all("val_accuracy" not in h for h in tr["history"])
        assert "fitted for a fixed 3 epochs" in (out / "README.md").read_text()
        with pytest.raises(ValueError):
            length_report(meta, command="x")
    elif keep == "last":
        # the shipped recipe with val held out: last epoch, no BatchNorm re-estimation, val only measured
        assert tr["keep"] == "last" and tr["n_val"] == 8 and tr["best_epoch"] == 3
        assert meta["val_accuracy"] == tr["history"][-1]["val_accuracy"]
        assert [h["epoch"] for h in tr["history"] if "val_accuracy" in h] == [3]  # every 5th epoch and the last
        assert tr["bn_recalibration"] == {**tr["bn_recalibration"], "used": False, "val_accuracy": None}
        assert "fitted for a fixed 3 epochs" in (out / "README.md").read_text()
    else:
        assert tr["keep"] == "best" and tr["n_val"] == 8 and 1 <= tr["best_epoch"] <= 3
        assert all("val_accuracy" in h for h in tr["history"])
        report = length_report(meta, command="python -m training.gender_train --epochs 3")
        assert report.count("\n| ") == 3 + 1  # header + one row per epoch
        assert "mean of the last 5 epochs" in report
    assert meta["test_metrics"]["overall"]["n"] == 8
    probs = GenderClassifier.load(out).predict_proba(speech_like(2.0, f0=110.0))
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1.0) < 1e-5
    with pytest.raises(ValueError):
        train_gender(out, **SYNTHETIC_GENDER_RECIPE, epochs=1, fit_splits=("test",))
    with pytest.raises(ValueError, match="keep"):
        train_gender(out, **SYNTHETIC_GENDER_RECIPE, epochs=1, fit_splits=("train", "val"), keep="best")


# --------------------------------------------------------------------------- the recipe (training/recipes/gender.yaml)


def test_gender_recipe_is_what_the_shipped_model_records():
    """training/recipes/gender.yaml holds the settings gender_model/metadata.json was trained with."""
    import json

    from training.recipes import load_recipe
    from training.gender_recipe import augmentation_phrase, noise_phrase, optimiser_phrase, sampling_phrase

    meta = json.loads((PROJECT_ROOT / "gender_model" / "metadata.json").read_text())
    tr = meta["training"]
    r = load_recipe("gender")
    assert r.widths == meta["architecture"]
    for key in ("fit_splits", "seed", "threads", "epochs", "samples_per_epoch", "batch_size", "crop_s"):
        assert tr[key] == (list(getattr(r, key)) if isinstance(getattr(r, key), tuple) else getattr(r, key)), key
    assert r.keep_epoch == "last" and tr["best_epoch"] == r.epochs
    assert tr["noise_kinds"] == list(r.noise_kinds) == ["white", "pink", "babble"]  # the robust recipe
    ch = tr["channel"]
    assert (ch["copies"], ch["share"], ch["recipe"]["p_telephone"], ch["recipe"]["p_pcm_u8"]) == (
        r.channel_copies, r.channel_share, r.channel_p_telephone, r.channel_p_pcm_u8) == (2, 0.5, 0.3, 0.3)
    assert tr.get("pitch_balance_power", 0.0) == r.pitch_balance_power == 0.0
    # nEMO is in no gender fitting (a corpus never seen for the gender stage)
    assert tr["excluded_corpora"] == list(r.exclude_corpora) == ["nemo"]
    assert tr.get("excluded_speakers", []) == sorted(r.exclude_speakers)
    assert tr["corpora"] == ["ased", "emovo", "librispeech", "ravdess", "savee", "speechocean"]
    # the recorded sentences, rebuilt from the recipe's values (lr, warm-up, speed, SNR, SpecAugment, ...)
    assert tr["optimiser"] == optimiser_phrase(r)
    bank = [("white", [None]), ("pink", [None]), ("babble", [None] * r.babble_tracks)]
    assert tr["augmentation"] == augmentation_phrase(r, noise_phrase(bank))
    assert tr["sampling"] == sampling_phrase(r)
    assert r.evaluate_test and r.max_rows is None
    # the second opinion beside it: fusion.json holds the recipe's weight and temperatures
    fusion = json.loads((PROJECT_ROOT / "gender_model" / "fusion.json").read_text())
    assert r.second_opinion == "ge2e" and meta["second_opinion"]["degraded_copies_per_clip"] == r.ge2e_copies
    assert (fusion["ecapa_weight"], fusion["ecapa_temperature"], fusion["ge2e_temperature"]) == (
        r.fusion_ecapa_weight, r.fusion_ecapa_temperature, r.fusion_ge2e_temperature)


def test_recipe_loader_known_answers(tmp_path):
    from training.config import RecipeError, override, parse_sets, save_recipe
    from training.recipes import load_recipe
    from training.gender_recipe import GenderRecipe

    r = load_recipe("gender")
    assert r == GenderRecipe()
    assert (r.epochs, r.lr, r.weight_decay, r.crop_s, r.speed_factors, r.speed_probs) == (
        80, 0.002, 0.01, (1.5, 3.0), (1.0, 0.9, 1.1), (0.5, 0.25, 0.25))
    assert (r.noise_kinds, r.snr_db, r.noise_prob, r.channel_share) == (("white", "pink", "babble"), (5.0, 40.0), 0.6, 0.5)
    # --set values are text, parsed by the key's type
    sets = parse_sets(["epochs=3", "lr=2e-3", "noise_kinds=white,pink", "crop_s=[1.0, 2.5]", "evaluate_test=false",
                       "max_rows=null", "widths.C=64", "fit_splits=[train]", "pitch_balance_power=1"])
    v = override(r, sets)
    assert v.epochs == 3 and type(v.epochs) is int
    assert v.lr == 0.002 and type(v.lr) is float
    assert v.noise_kinds == ("white", "pink") and v.crop_s == (1.0, 2.5) and v.fit_splits == ("train",)
    assert v.evaluate_test is False and v.max_rows is None and v.pitch_balance_power == 1.0
    assert v.widths == {**r.widths, "C": 64} and r.widths["C"] == 128  # the shipped recipe is untouched
    assert override(r, {"max_rows": "12"}).max_rows == 12
    with pytest.raises(RecipeError, match=r"unknown key 'epoch' in the gender recipe \(did you mean 'epochs'\?\)"):
        override(r, {"epoch": 3})
    with pytest.raises(RecipeError, match="known keys: seed, threads"):
        override(r, parse_sets(["nonsense=1"]))
    with pytest.raises(RecipeError, match="epochs: expected an integer"):
        override(r, {"epochs": "three"})
    with pytest.raises(RecipeError, match="unknown key 'D'"):
        override(r, {"widths.D": 3})
    with pytest.raises(RecipeError, match="crop_s: expected 2 values"):
        override(r, {"crop_s": "1.0"})
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_sets(["epochs"])
    # a saved recipe loads back equal; a file must hold every key, and no other
    path = save_recipe(v, tmp_path)
    assert path == tmp_path / "recipe.yaml" and load_recipe("gender", path=path) == v
    assert load_recipe("gender", {"seed": 4}, path=path) == override(v, {"seed": 4})
    (tmp_path / "short.yaml").write_text("epochs: 3\n")
    with pytest.raises(RecipeError, match="lacks the keys seed"):
        load_recipe("gender", path=tmp_path / "short.yaml")
    (tmp_path / "extra.yaml").write_text(path.read_text() + "colour: blue\n")
    with pytest.raises(RecipeError, match="unknown key 'colour'"):
        load_recipe("gender", path=tmp_path / "extra.yaml")
    with pytest.raises(RecipeError, match="unknown recipe"):
        load_recipe("speaker")


def test_gender_cli_flags_are_recipe_keys(tmp_path):
    """Every old flag sets its key; --set comes last; --recipe replaces the shipped file; bad keys stop the CLI."""
    from training.config import save_recipe
    from training.gender_recipe import GenderRecipe
    from training.gender_train import build_parser, recipe_from_args

    parser = build_parser()

    def resolve(*argv):
        return recipe_from_args(parser.parse_args(list(argv)), parser)

    assert resolve() == GenderRecipe()
    r = resolve("--epochs", "5", "--seed", "2", "--no-test", "--noise", "white", "pink", "--fit-splits", "train",
                "--channel", "2", "--pitch-balance", "0.5", "--exclude-corpus", "ased", "--keep", "last",
                "--samples-per-epoch", "64", "--threads", "2", "--max-rows", "9", "--widths", "C=64",
                "--set", "lr=1e-3", "--set", "epochs=7")
    assert r == GenderRecipe(epochs=7, seed=2, evaluate_test=False, noise_kinds=("white", "pink"),
                             fit_splits=("train",), channel_copies=2, pitch_balance_power=0.5,
                             exclude_corpora=("ased",), keep="last", samples_per_epoch=64, threads=2, max_rows=9,
                             widths={**GenderRecipe().widths, "C": 64}, lr=0.001)
    save_recipe(GenderRecipe(epochs=11), tmp_path)
    assert resolve("--recipe", str(tmp_path / "recipe.yaml"), "--seed", "1") == GenderRecipe(epochs=11, seed=1)
    for bad in (["--set", "epoch=3"], ["--widths", "D=4"], ["--fit-splits", "train", "--keep", "best", "--set",
                                                            "fit_splits=train,val"]):
        with pytest.raises(SystemExit):
            resolve(*bad)


def test_recipe_saved_before_keys_were_added_still_loads(tmp_path):
    """A recipe.yaml saved before exclude_speakers / channel_p_* existed repeats its run (those keys: no-op values)."""
    import yaml

    from training.config import RecipeError, save_recipe
    from training.gender_recipe import GenderRecipe
    from training.recipes import load_recipe

    path = save_recipe(GenderRecipe(epochs=7), tmp_path)
    values = yaml.safe_load(path.read_text())
    for key in GenderRecipe.ADDED_LATER:
        del values[key]
    path.write_text(yaml.safe_dump(values))
    # filled with the values that repeat the runs made before the keys existed, not today's defaults
    assert load_recipe("gender", path=path) == GenderRecipe(epochs=7, **GenderRecipe.ADDED_LATER)
    del values["epochs"]  # any other missing key is still an error (a new file: reads are cached by path)
    (tmp_path / "older.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(RecipeError, match="lacks the keys epochs"):
        load_recipe("gender", path=tmp_path / "older.yaml")
    # the shipped model's own recipe file loads and is the shipped recipe
    assert load_recipe("gender", path=PROJECT_ROOT / "gender_model" / "recipe.yaml") == load_recipe("gender")
