"""Random recording channels (training.channel) and their use in gender training."""
from __future__ import annotations

import numpy as np
import pytest

from training.channel import (
    CODECS,
    Channel,
    ChannelRecipe,
    apply_channel,
    draw_channel,
    encode_decode,
    room_impulse_response,
)
from pipeline.testing import speech_like

SR = 16000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_power(y: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def test_room_impulse_response_known_answers():
    h = room_impulse_response(SR, rt60_s=0.5, drr_db=6.0, seed=3)
    assert h.shape == (8000,) and h[0] == 1.0
    assert np.all(h[1:40] == 0.0)  # the tail starts 2.5 ms after the direct path
    tail = h[40:]
    assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(6.0, abs=1e-9)
    # energy decays by 60 dB over RT60: first vs last 50 ms of the tail differ by about 54 dB
    first, last = np.sum(tail[:800] ** 2), np.sum(tail[-800:] ** 2)
    assert 45 < 10 * np.log10(first / last) < 65
    np.testing.assert_array_equal(h, room_impulse_response(SR, rt60_s=0.5, drr_db=6.0, seed=3))
    with pytest.raises(ValueError):
        room_impulse_response(SR, rt60_s=0.0, drr_db=0.0, seed=0)


def test_reverberation_smears_a_click_and_keeps_length_and_rms():
    y = np.zeros(SR, dtype=np.float32)
    y[1000] = 1.0
    out = apply_channel(y, SR, Channel(rt60_s=0.6, drr_db=0.0), seed=1)
    assert out.shape == y.shape and out.dtype == np.float32
    assert rms(out) == pytest.approx(rms(y), rel=1e-5)
    assert np.max(np.abs(out[:1000])) < 1e-9  # causal (FFT round-off aside)
    assert np.sum(out[1500:] ** 2) > 0.2 * np.sum(out**2)  # energy well after the click


def test_band_limit_removes_high_frequencies_only():
    y = tone(1000.0) + tone(7000.0)
    out = apply_channel(y, SR, Channel(band_limit_hz=8000))
    assert out.shape == y.shape
    assert band_power(out, 6500, 7500) < 1e-4 * band_power(y, 6500, 7500)
    # the 1 kHz tone keeps its power (the RMS is restored after the 7 kHz tone is removed: x2)
    assert band_power(out, 900, 1100) == pytest.approx(2 * band_power(y, 900, 1100), rel=0.05)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_round_trip_keeps_a_tone(codec):
    y = tone(440.0, seconds=1.5)
    out = encode_decode(y, SR, codec=codec, level=1.0)
    assert out.shape == y.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    # the tone survives the worst quality setting: most energy stays at 440 Hz
    assert band_power(out, 400, 480) > 0.8 * band_power(out, 0, SR / 2)
    assert 0.5 < rms(out) / rms(y) < 1.5
    with pytest.raises(ValueError, match="unknown codec"):
        encode_decode(y, SR, codec="aac", level=0.5)


def test_codec_changes_speech_and_channel_keeps_rms():
    y = speech_like(2.0, seed=4)
    for channel in (Channel(codec="mp3", codec_level=1.0), Channel(codec="opus", codec_level=1.0),
                    Channel(rt60_s=0.3, drr_db=3.0, band_limit_hz=11025, codec="mp3", codec_level=0.6)):
        out = apply_channel(y, SR, channel, seed=2)
        assert out.shape == y.shape
        assert rms(out) == pytest.approx(rms(y), rel=1e-4)
        assert not np.allclose(out, y, atol=1e-3)


def test_draw_channel_never_clean_and_follows_the_recipe():
    rng = np.random.default_rng(0)
    channels = [draw_channel(rng) for _ in range(2000)]
    assert all(c.describe() != "clean" for c in channels)
    recipe = ChannelRecipe()
    # every draw has an effect: the frequencies are the recipe's, conditioned on "not clean"
    p_clean = (1 - recipe.p_reverb) * (1 - recipe.p_band_limit) * (1 - recipe.p_codec)
    reverb = np.mean([c.rt60_s is not None for c in channels])
    assert reverb == pytest.approx(recipe.p_reverb / (1 - p_clean), abs=0.04)
    assert all(recipe.rt60_s[0] <= c.rt60_s <= recipe.rt60_s[1] for c in channels if c.rt60_s is not None)
    assert {c.codec for c in channels} == {None, "mp3", "opus"}
    again = [draw_channel(np.random.default_rng(0)) for _ in range(1)]
    assert again[0] == channels[0]
    with pytest.raises(ValueError):
        draw_channel(rng, ChannelRecipe(p_reverb=0, p_band_limit=0, p_codec=0))
    assert Channel().describe() == "clean" and Channel().effects == ()
    assert Channel(rt60_s=0.3, drr_db=0.0, codec="opus", codec_level=0.5).effects == ("reverb", "opus")
    assert "mp3 level 0.80" in Channel(codec="mp3", codec_level=0.8).describe()


def test_version_probs():
    from training.gender_batches import version_probs
    from training.gender_recipe import GenderRecipe

    SPEED_PROBS, CHANNEL_SHARE = GenderRecipe().speed_probs, GenderRecipe().channel_share
    assert version_probs(3, 2, speed_probs=(0.5, 0.5, 0.0), channel_share=0.2) == pytest.approx(
        (0.4, 0.4, 0.0, 0.1, 0.1))
    assert version_probs(3, 0) == SPEED_PROBS and version_probs(1, 0) is None
    p = version_probs(3, 2)
    assert len(p) == 5 and sum(p) == pytest.approx(1.0)
    assert p[3] == p[4] == pytest.approx(CHANNEL_SHARE / 2)
    assert p[0] == pytest.approx(SPEED_PROBS[0] * (1 - CHANNEL_SHARE))
    assert version_probs(1, 1) == pytest.approx((1 - CHANNEL_SHARE, CHANNEL_SHARE))


def test_train_gender_with_channel_copies(tmp_path, two_corpora_env):
    from studies.gender_robustness.study import describe
    from training.gender_train import train_gender
    from pipeline.testing import TINY_GENDER_WIDTHS as TINY_WIDTHS

    meta = train_gender(tmp_path / "m", second_opinion=None, epochs=1, samples_per_epoch=16, batch_size=8, widths=TINY_WIDTHS,
                        speed_factors=(1.0,), exclude_corpora=("other",), channel_copies=2, evaluate_test=False,
                        noise_kinds=("white",), channel_p_telephone=0.0, channel_p_pcm_u8=0.0)  # the plain channel mix
    ch = meta["training"]["channel"]
    assert ch["copies"] == 2 and ch["share"] == 0.5 and ch["recipe"]["codecs"] == ["mp3", "opus"]
    # 24 training clips x 2 copies, each with at least one effect
    assert sum(ch["drawn"].values()) >= 48 and set(ch["drawn"]) <= {"reverb", "band_limit", "mp3", "opus"}
    assert "random recording channel" in meta["training"]["augmentation"]
    assert describe(str(tmp_path / "m"))["recording channels"] == "2 per clip, p=0.5"
    plain = train_gender(tmp_path / "p", second_opinion=None, epochs=1, samples_per_epoch=16, batch_size=8, widths=TINY_WIDTHS,
                         speed_factors=(1.0,), exclude_corpora=("other",), evaluate_test=False, channel_copies=0,
                         noise_kinds=("white",))
    assert plain["training"]["channel"] is None and "recording channels" not in describe(str(tmp_path / "p"))


def test_telephone_channel_removes_the_fundamental_and_everything_above_the_band():
    y = tone(150.0, amp=0.1) + tone(1000.0, amp=0.1) + tone(6000.0, amp=0.1)
    out = apply_channel(y, SR, Channel(telephone=True))
    assert out.shape == y.shape and rms(out) == pytest.approx(rms(y), rel=1e-4)
    # 150 Hz sits below the 300 Hz edge, 6 kHz above the 4 kHz Nyquist of the 8 kHz line
    assert band_power(out, 100, 200) < 0.05 * band_power(out, 900, 1100)
    assert band_power(out, 5500, 6500) < 1e-4 * band_power(out, 900, 1100)
    # a band limit drawn with the telephone band is replaced by it
    both = Channel(telephone=True, band_limit_hz=12000)
    assert both.effects == ("telephone",) and both.describe() == "telephone band"


def test_pcm_u8_channel_quantises_at_the_drawn_peak_level():
    from training.channel import pcm_u8_roundtrip

    y = 0.5 * speech_like(1.0, seed=4).astype(np.float32)
    q = pcm_u8_roundtrip(y, SR)
    assert q.shape == y.shape and len(np.unique(q)) <= 256
    assert np.max(np.abs(q - y)) <= 1 / 128 + 1e-6
    # peak at -30 dBFS keeps only a few dozen levels: the error grows against the signal
    quiet = apply_channel(y, SR, Channel(pcm_u8_peak_db=-30.0))
    loud = apply_channel(y, SR, Channel(pcm_u8_peak_db=-1.0))
    assert rms(quiet) == pytest.approx(rms(y), rel=1e-3)
    assert rms(quiet - y) > 5 * rms(loud - y)
    assert len(np.unique(np.round(quiet / np.max(np.abs(quiet)) * 1e4))) < 40


def test_draw_channel_telephone_and_pcm_u8_only_when_asked():
    default = [draw_channel(np.random.default_rng(1)) for _ in range(1)]
    assert all(not c.telephone and c.pcm_u8_peak_db is None for c in default)
    recipe = ChannelRecipe(p_reverb=0, p_band_limit=0, p_codec=0, p_telephone=0.5, p_pcm_u8=0.5)
    channels = [draw_channel(np.random.default_rng(i), recipe) for i in range(400)]
    tel = np.mean([c.telephone for c in channels])
    assert tel == pytest.approx(0.5 / 0.75, abs=0.08)  # conditioned on "not clean"
    assert all(recipe.pcm_u8_peak_db[0] <= c.pcm_u8_peak_db <= recipe.pcm_u8_peak_db[1]
               for c in channels if c.pcm_u8_peak_db is not None)
    assert "p_telephone" in recipe.to_dict() and "p_telephone" not in ChannelRecipe().to_dict()
    # the earlier recipes draw exactly what they drew before
    assert draw_channel(np.random.default_rng(5)) == draw_channel(np.random.default_rng(5), ChannelRecipe())


def test_select_rows_leaves_out_excluded_speakers(two_corpora_env):
    from training.corpus import read_manifest
    from training.gender_recipe import GenderRecipe
    from training.gender_signals import select_rows

    speaker = next(u.speaker for u in read_manifest() if u.split == "train")
    _, kept, fit, val = select_rows(GenderRecipe(exclude_speakers=(speaker,), fit_splits=("train",), exclude_corpora=()),
                                    np.random.default_rng(0))
    assert fit and all(u.speaker != speaker for u in fit + val)
    assert any(u.speaker == speaker for u in kept)  # still scored, only not fitted
    # ids this manifest lacks (the shipped recipe's real speakers, here a synthetic corpus) are ignored
    _, _, everyone, _ = select_rows(GenderRecipe(exclude_speakers=("nobody",), fit_splits=("train",), exclude_corpora=()),
                                    np.random.default_rng(0))
    assert len(everyone) == len(fit) + sum(u.speaker == speaker for u in kept if u.split == "train")
