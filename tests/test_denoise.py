"""Noise reduction (pipeline.denoise), its cascade and CLI option, and the noise study's helpers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import script
from pipeline.audio import trim_silence
from pipeline.denoise import DenoiseConfig, reduce_noise
from studies.noise_study.study import Condition, conditions, summarise
from training.noise import make_babble, mix_at_snr, speech_power
from pipeline.testing import SR, speech_like, white_noise, with_silence_padding


@pytest.mark.parametrize("stationary", [False, True])
def test_reduce_noise_removes_noise_and_keeps_speech(stationary):
    clean = with_silence_padding(speech_like(2.0), SR, 1.0, 0.5)  # 1 s of noise only, then speech
    noisy = clean + white_noise(clean.size / SR, SR, peak=0.1, seed=1)
    out = reduce_noise(noisy, SR, config=DenoiseConfig(stationary=stationary))
    assert out.shape == noisy.shape and out.dtype == np.float32
    lead, speech = slice(0, SR), slice(SR, 3 * SR)
    attenuation_db = 10 * np.log10(np.mean(noisy[lead] ** 2) / np.mean(out[lead] ** 2))
    assert attenuation_db > 10  # the noise-only part is gated
    assert np.corrcoef(out[speech], clean[speech])[0, 1] > 0.8  # the speech survives


def test_reduce_noise_rejects_non_mono():
    with pytest.raises(ValueError):
        reduce_noise(np.zeros((2, 1000), dtype=np.float32), SR)


def test_cascade_denoise_option(tiny_cascade, tiny_models):
    from pipeline.cascade import Cascade

    denoising = Cascade.load(str(tiny_models["female_gender"]), male_dir=tiny_models["male"],
                             female_dir=tiny_models["female"], denoise=True)
    assert denoising.denoise == DenoiseConfig() and tiny_cascade.denoise is None
    y = speech_like(2.0) + white_noise(2.0, peak=0.05, seed=2)
    clean, denoised = tiny_cascade.predict_signal(y, SR), denoising.predict_signal(y, SR)
    assert clean.ok and denoised.ok
    assert denoised.gender == clean.gender  # the tiny gender model answers female for anything
    # Bad input still gets a status, never an exception, with the option on.
    for bad, sr, code in ((np.zeros(SR, dtype=np.float32), SR, "silent"), (np.zeros(0), SR, "empty"),
                          (speech_like(0.1), SR, "too_short"), (speech_like(1.0), 0, "unreadable")):
        assert denoising.predict_signal(bad, sr).status == code


def test_script_denoise_flag(tmp_path, wav_file, tiny_models):
    import csv

    wav_file("in/a.wav", y=speech_like(2.0) + white_noise(2.0, peak=0.05, seed=3))
    out = tmp_path / "out.csv"
    args = [str(tmp_path / "in"), "-o", str(out), "--gender-model", str(tiny_models["female_gender"]),
            "--male-model", str(tiny_models["male"]), "--female-model", str(tiny_models["female"]), "-q", "--jobs", "2"]
    assert script.main(args + ["--denoise"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1 and rows[0]["status"] == "ok"


def test_speech_snr_is_relative_to_the_speech_part():
    speech = speech_like(2.0)
    y = with_silence_padding(speech, SR, 1.0, 1.0)  # RAVDESS-like silent lead and tail
    noise = np.random.default_rng(0).standard_normal(10 * SR)
    for snr in (0.0, 10.0):
        noisy = mix_at_snr(y, noise, snr, reference="speech", seed=4)
        added = noisy - y
        measured = 10 * np.log10(speech_power(y) / np.mean(added.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.05)
    # Relative to the whole clip (with 2 s of silence) the SNR would be about 3 dB lower.
    whole = float(np.mean(y.astype(np.float64) ** 2))
    assert 10 * np.log10(speech_power(y) / whole) == pytest.approx(10 * np.log10(4 / 2), abs=0.3)
    assert trim_silence(y).size < y.size


def test_babble_and_conditions():
    talkers = [speech_like(1.0, f0=f0, seed=i) for i, f0 in enumerate((110, 180, 220))]
    babble = make_babble(talkers, seconds=3.0)
    assert babble.shape == (3 * SR,) and babble.dtype == np.float32 and np.all(np.isfinite(babble))
    cs = conditions(("pink",), (10.0, 0.0))
    assert cs == [Condition("clean", None, False), Condition("clean", None, True), Condition("pink", 10.0, False),
                  Condition("pink", 10.0, True), Condition("pink", 0.0, False), Condition("pink", 0.0, True)]
    assert cs[3].label == "pink 10 dB, denoised"


def test_summarise_counts_failures_as_wrong():
    frame = pd.DataFrame({
        "noise": ["clean"] * 4, "snr_db": [None] * 4, "denoise": [False] * 4,
        "status": ["ok", "ok", "ok", "silent"], "gender": ["male"] * 4, "pred_gender": ["male", "male", "female", None],
        "emotion": ["sad", "happy", "sad", "sad"], "pred_emotion": ["sad", "happy", "angry", None],
    })
    (row,) = summarise(frame)
    assert row["n"] == 4 and row["scored"] == 0.75
    assert row["gender_accuracy"] == 0.5 and row["emotion_accuracy"] == 0.5
