"""Noise in gender training (training.gender_noise.noise_bank) and the noisy comparison of gender models."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the full profile: the gender trainer's noise")
import torch

from training.corpus import read_manifest
from pipeline.ecapa import LogMelFrontEnd
from pipeline.testing import TINY_GENDER_WIDTHS as TINY_WIDTHS, speech_like
from training.testing import SYNTHETIC_GENDER_RECIPE
from training.testing import write_gender_corpus


@pytest.fixture
def librispeech_like(tmp_path, monkeypatch):
    """The synthetic three-split corpus, every row labelled LibriSpeech (so its readers can make babble)."""
    data = tmp_path / "data"
    data.mkdir()
    write_gender_corpus(data, corpus="librispeech")
    monkeypatch.setenv("SER_DATA_DIR", str(data))
    return read_manifest()


def test_noise_mel_levels_and_shapes():
    """Unit-variance noise: the same waveform power whatever the colour; pink has relatively more low-band power."""
    from training.noise import pink_noise
    from training.gender_noise import noise_mel, white_noise_mel

    fe = LogMelFrontEnd()
    white = white_noise_mel(fe)
    pink = noise_mel(fe, pink_noise(5 * 16000, seed=0), stationary=True)
    assert white.shape == pink.shape == (80, 1)
    assert float(pink[5, 0] / pink[70, 0]) > 10 * float(white[5, 0] / white[70, 0])
    # the scale of the input does not matter: noise_mel normalises to unit variance
    loud = noise_mel(fe, 7.0 * pink_noise(5 * 16000, seed=0), stationary=True)
    torch.testing.assert_close(loud, pink, rtol=1e-4, atol=0)
    track = noise_mel(fe, pink_noise(16000, seed=0), stationary=False)
    assert track.shape == (80, 101)


def test_babble_rows_exclude_the_study_talkers_and_balance_genders(librispeech_like):
    from training.noise import study_babble_rows
    from training.gender_noise import babble_rows
    from training.gender_signals import gender_rows

    rows = gender_rows(librispeech_like, "train")
    excluded = {u.path for u in study_babble_rows(librispeech_like)}
    assert len(excluded) == 6
    groups = babble_rows(rows, tracks=4, talkers=4, seed=0, exclude=excluded)
    # 8 female and 8 male train rows, 3 of each excluded -> 5 per gender -> two tracks of 2 + 2
    assert len(groups) == 2
    used = [u.path for g in groups for u in g]
    assert len(used) == len(set(used)) == 8 and not set(used) & excluded
    assert all(sorted(u.gender for u in g) == ["female", "female", "male", "male"] for g in groups)
    assert babble_rows(rows, tracks=4, talkers=4, seed=0, exclude=excluded) == groups  # seeded


def test_noise_bank_draws_and_white_only_stream(librispeech_like):
    from training.gender_batches import make_batch
    from training.gender_noise import noise_bank, white_noise_mel
    from training.gender_signals import gender_rows

    fe = LogMelFrontEnd()
    rows = gender_rows(librispeech_like, "train")
    bank = noise_bank(["white", "pink", "babble"], fe, rows, seed=0, babble_tracks=2, babble_talkers=2,
                      babble_seconds=2.0)
    assert [k for k, _ in bank] == ["white", "pink", "babble"]
    assert len(bank[2][1]) == 2 and bank[2][1][0].shape == (80, 201)
    with pytest.raises(ValueError):
        noise_bank(["hum"], fe, rows, seed=0)
    with pytest.raises(ValueError):
        noise_bank(["babble"], fe, [u for u in rows if u.gender == "male"], seed=0)

    # every crop gets noise: it fills the quiet frames of an on/off pattern (log 1 vs log 1e-6)
    on_off = torch.full((80, 400), float(np.log(1e-6)))
    on_off[:, ::2] = 0.0
    x = make_batch([on_off] * 6, range(6), crop_frames=300, noise=bank, rng=np.random.default_rng(1), noise_prob=1.0)
    assert x.shape == (6, 80, 300)
    band_range = x.amax(dim=2) - x.amin(dim=2)  # [6, 80]; 13.8 everywhere without noise
    assert bool((band_range.mean(dim=1) < 13.6).all())
    # babble is not stationary: silent crops of 300 frames take a stretch of a (tiled) 201-frame track
    silent = [torch.full((80, 400), float(np.log(1e-6)))] * 3
    y = make_batch(silent, range(3), crop_frames=300, noise=[bank[2]], rng=np.random.default_rng(1), noise_prob=1.0)
    assert all(float(c.abs().max()) > 0.1 for c in y)

    # a one-kind bank draws nothing extra from the generator: the white-only recipe keeps its random stream
    mels = [torch.from_numpy(np.random.default_rng(i).normal(size=(80, 300)).astype(np.float32)) for i in range(4)]
    white = white_noise_mel(fe)
    a = make_batch(mels, [0, 1, 2, 3], crop_frames=120, noise=white, rng=np.random.default_rng(5), noise_prob=0.6)
    b = make_batch(mels, [0, 1, 2, 3], crop_frames=120, noise=noise_bank(["white"], fe, rows, seed=0),
                   rng=np.random.default_rng(5), noise_prob=0.6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_gender_with_noise_mix_and_compare(tmp_path, librispeech_like):
    """A tiny model trained with all three noises; the comparison scores it clean and noisy."""
    from studies.gender_robustness.study import compare, gender_clips, to_markdown
    from training.gender_train import train_gender

    out = tmp_path / "model"
    meta = train_gender(out, **{**SYNTHETIC_GENDER_RECIPE, "noise_kinds": ("white", "pink", "babble")}, epochs=1,
                        samples_per_epoch=16, batch_size=8, widths=TINY_WIDTHS, fit_splits=("train",),
                        speed_factors=(1.0,), evaluate_test=False)
    assert meta["training"]["noise_kinds"] == ["white", "pink", "babble"]
    assert "babble" in meta["training"]["augmentation"] and "pink noise" in meta["training"]["augmentation"]

    clips = gender_clips(librispeech_like, "val")
    assert len(clips) == 8 and len(gender_clips(librispeech_like, "val", 4)) == 4
    results = compare([str(out)], clips, conditions=(("pink", 10.0), ("babble", 0.0)))
    assert [(r.noise, r.snr_db) for r in results] == [("clean", None), ("pink", 10.0), ("babble", 0.0)]
    assert all(r.n == 8 and 0 <= r.correct <= 8 for r in results)
    assert all(r.per_corpus == {"librispeech": [8, r.correct]} for r in results)
    text = to_markdown(results, split="val", n_clips=8)
    assert "| pink 10 dB |" in text and "mean of noisy conditions" in text
    assert f"| librispeech | {100 * results[0].correct / 8:.1f}% ({results[0].correct}/8) |" in text
    assert "| noise | white + pink + babble |" in text and "| fitted on | train |" in text  # from metadata.json


def test_gender_robustness_score_known_answer():
    """A classifier that always says male gets exactly the male clips right; refused clips count as wrong."""
    from studies.gender_robustness.study import ConditionResult, mean_noisy, score

    class AlwaysMale:
        def predict_proba_batch(self, signals):
            return np.tile([0.9, 0.1], (len(signals), 1))

    voice = speech_like(2.0, f0=120.0)
    signals = [(voice, 16000), (voice, 16000), (voice, 16000), (np.zeros(32000, dtype=np.float32), 16000)]
    right = score(AlwaysMale(), signals, ["male", "female", "male", "male"])
    assert right.tolist() == [True, False, True, False]
    results = [ConditionResult("m", "clean", None, 4, 4), ConditionResult("m", "pink", 5.0, 4, 2),
               ConditionResult("m", "babble", 5.0, 4, 1)]
    assert results[1].accuracy == 0.5 and mean_noisy(results, "m") == pytest.approx(0.375)
