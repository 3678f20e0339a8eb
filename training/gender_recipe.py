"""The gender training recipe: :class:`GenderRecipe`, whose values are ``training/recipes/gender.yaml``.

``GenderRecipe()`` is the shipped recipe; ``GenderRecipe(epochs=3)`` or
``training.config.load_recipe("gender", {"epochs": 3})`` a variant. Each field
is documented in the YAML file. This module also writes the recipe's sentences
that ``metadata.json`` records (optimiser, augmentation, sampling): they are
built from the values, so the record and the recipe cannot disagree.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Sequence

from training.config import recipe_dataclass

#: Noise kinds the training can add (mel power domain, :func:`training.gender_batches.noise_bank`).
NOISE_KINDS = ("white", "pink", "babble")
#: Splits a gender model can be fitted on.
FIT_SPLITS = ("train", "val")


@recipe_dataclass("gender")
class GenderRecipe:
    """Every tunable setting of :func:`training.gender_train.train_gender` (see ``recipes/gender.yaml``).

    Units: seconds (``crop_s``, ``babble_seconds``), dB (``snr_db``), semitones
    (``pitch_bin_semitones``), 10 ms frames (``bn_crop_frames``).
    """

    # run
    seed: int
    threads: int
    evaluate_test: bool
    max_rows: int | None
    # data
    fit_splits: tuple[str, ...]
    keep: str | None
    exclude_corpora: tuple[str, ...]
    exclude_speakers: tuple[str, ...]
    pitch_balance_power: float
    pitch_bin_semitones: float
    # model
    widths: dict[str, int]
    # optimisation
    epochs: int
    samples_per_epoch: int
    batch_size: int
    lr: float
    warmup_share: float
    weight_decay: float
    label_smoothing: float
    # crops, speed, channels
    crop_s: tuple[float, float]
    speed_factors: tuple[float, ...]
    speed_probs: tuple[float, ...]
    channel_copies: int
    channel_share: float
    channel_p_telephone: float
    channel_p_pcm_u8: float
    # noise
    noise_kinds: tuple[str, ...]
    noise_prob: float
    snr_db: tuple[float, float]
    babble_tracks: int
    babble_talkers: int
    babble_seconds: float
    # SpecAugment
    specaugment: bool
    spec_freq_masks: int
    spec_max_freq_width: int
    spec_time_masks: int
    spec_max_time_fraction: float
    # BatchNorm re-estimation
    bn_batches: int
    bn_batch_size: int
    bn_crop_frames: int
    # second opinion (training/gender_second_opinion.py)
    second_opinion: str | None
    ge2e_copies: int
    fusion_ecapa_weight: float
    fusion_ecapa_temperature: float
    fusion_ge2e_temperature: float

    #: Keys added after runs had saved their recipe.yaml, and the value that repeats those runs
    #: (:func:`training.config.from_file` fills them in when a saved file lacks them).
    ADDED_LATER = MappingProxyType({"exclude_speakers": (), "channel_p_telephone": 0.0, "channel_p_pcm_u8": 0.0,
                                    "second_opinion": None, "ge2e_copies": 0, "fusion_ecapa_weight": 1.0,
                                    "fusion_ecapa_temperature": 1.0, "fusion_ge2e_temperature": 1.0})

    @property
    def select_on_val(self) -> bool:
        """Whether ``val`` is held out (and scored after every epoch)."""
        return "val" not in self.fit_splits

    @property
    def keep_epoch(self) -> str:
        """The epoch kept: ``keep``, or by default ``"best"`` on val for train-only runs, else ``"last"``."""
        return self.keep or ("best" if self.select_on_val else "last")

    @property
    def excluded(self) -> tuple[str, ...]:
        """``exclude_corpora`` sorted, without repeats."""
        return tuple(sorted(set(self.exclude_corpora)))

    def check(self) -> None:
        """Refuse inconsistent settings (ValueError): splits, kept epoch, noise kinds, speed factors."""
        if not self.fit_splits or not set(self.fit_splits) <= set(FIT_SPLITS):
            raise ValueError(f"fit_splits must be drawn from {FIT_SPLITS}, got {self.fit_splits}")
        if self.keep_epoch not in ("best", "last") or (self.keep_epoch == "best" and not self.select_on_val):
            raise ValueError(f"keep must be 'best' (train-only runs) or 'last', got {self.keep!r} "
                             f"with fit_splits={self.fit_splits}")
        if "babble" in self.noise_kinds and "librispeech" in self.excluded:
            raise ValueError("babble noise is made of LibriSpeech readers: it cannot be used with librispeech excluded")
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown or not self.noise_kinds:
            raise ValueError(f"noise kinds must be drawn from {NOISE_KINDS}, got {list(self.noise_kinds)}")
        if not self.speed_factors or self.speed_factors[0] != 1.0:
            raise ValueError(f"speed_factors must start with 1.0 (the original), got {self.speed_factors}")
        if self.second_opinion not in (None, "ge2e"):
            raise ValueError(f"second_opinion must be null or 'ge2e', got {self.second_opinion!r}")
        if not 0.0 <= self.fusion_ecapa_weight <= 1.0 or min(self.fusion_ecapa_temperature, self.fusion_ge2e_temperature) <= 0:
            raise ValueError("fusion_ecapa_weight must lie in [0, 1] and the fusion temperatures be positive")


def optimiser_phrase(recipe: GenderRecipe) -> str:
    """The optimiser as ``metadata.json`` records it, e.g. ``"AdamW lr=0.002 (one-cycle, 15% warm-up) ..."``."""
    return (f"AdamW lr={recipe.lr} (one-cycle, {100 * recipe.warmup_share:g}% warm-up) "
            f"weight_decay={recipe.weight_decay}, label smoothing {recipe.label_smoothing}")


def augmentation_phrase(recipe: GenderRecipe, noise: str) -> str:
    """The augmentation as ``metadata.json`` records it; ``noise`` names the noise bank (:func:`noise_phrase`)."""
    r = recipe
    return (
        f"speed perturbation x{'/'.join(str(f) for f in r.speed_factors)} (resampled, "
        f"p={'/'.join(str(p) for p in r.speed_probs)}); "
        f"random crop of U({r.crop_s[0]}, {r.crop_s[1]}) s per batch; {noise} at SNR "
        f"U({r.snr_db[0]:g}, {r.snr_db[1]:g}) dB with p={r.noise_prob} (mel power domain)"
        + (f"; SpecAugment {r.spec_freq_masks} frequency masks <= {r.spec_max_freq_width} bands + "
           f"{r.spec_time_masks} time masks <= {100 * r.spec_max_time_fraction:g}% of the crop"
           if r.specaugment else "")
        + (f"; {r.channel_copies} random recording channel(s) per clip (reverberation, band limit, MP3/Opus"
           + (f", telephone band p={r.channel_p_telephone:g}" if r.channel_p_telephone else "")
           + (f", 8-bit PCM p={r.channel_p_pcm_u8:g}" if r.channel_p_pcm_u8 else "") + "), "
           f"used with p={r.channel_share}" if r.channel_copies else "")
    )


def noise_phrase(bank: Sequence) -> str:
    """A noise bank (``[(kind, tracks), ...]``) as it reads in the record, e.g. ``"white noise or pink noise"``."""
    names = []
    for kind, tracks in bank:
        if kind == "babble":
            names.append(f"babble ({len(tracks)} tracks of LibriSpeech readers from the fitted splits talking at once)")
        else:
            names.append(f"{kind} noise")
    return " or ".join(names)


def sampling_phrase(recipe: GenderRecipe) -> str:
    """How training clips are drawn, as ``metadata.json`` records it."""
    return ("corpus x gender group mass ~ sqrt(group size), equal share per speaker inside a group, "
            "genders balanced 50/50"
            + (f"; within each gender, clips re-weighted by 1 / (share of their "
               f"{recipe.pitch_bin_semitones:g}-semitone F0 bin)^{recipe.pitch_balance_power}"
               if recipe.pitch_balance_power > 0 else ""))


def channel_recipe(recipe: GenderRecipe):
    """The :class:`training.channel.ChannelRecipe` the channel copies of ``recipe`` are drawn from."""
    from training.channel import ChannelRecipe

    return ChannelRecipe(p_telephone=recipe.channel_p_telephone, p_pcm_u8=recipe.channel_p_pcm_u8)
