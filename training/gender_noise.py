"""Noise for the gender training, in the mel power domain.

White and pink noise enter as their mean mel power spectrum ``[80, 1]``
(equivalent in expectation to adding them to the waveform before the front
end); babble as the mel power ``[80, frames]`` of several LibriSpeech readers
talking at once, of which a random stretch is added. All noise is scaled to unit
variance before the front end; :func:`training.gender_batches.make_batch` sets
its level from the SNR. Defaults of the babble size come from
``training/recipes/gender.yaml``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Sequence

import numpy as np

from training.corpus import Utterance
from training.gender_recipe import NOISE_KINDS, GenderRecipe
from training.gender_signals import load_signals

if TYPE_CHECKING:
    import torch

_SHIPPED = GenderRecipe()


def noise_mel(frontend, noise: np.ndarray, *, stationary: bool) -> "torch.Tensor":
    """Mel power of ``noise [samples]`` (16 kHz) scaled to unit variance, after pre-emphasis.

    Returns ``[80, 1]`` (the mean over time) when ``stationary``, else ``[80, frames]``.
    """
    import torch

    noise = np.asarray(noise, dtype=np.float64)
    noise = noise / (np.sqrt(np.mean(noise**2)) or 1.0)
    with torch.inference_mode():
        power = frontend.mel_power(torch.from_numpy(noise.astype(np.float32))[None])[0]
        return (power.mean(dim=1, keepdim=True) if stationary else power).clone()


def white_noise_mel(frontend, *, seconds: float = 20.0, seed: int = 1234) -> "torch.Tensor":
    """Mean mel power per band ``[80, 1]`` of ``seconds`` of unit-variance white noise (after pre-emphasis)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, int(seconds * frontend.sample_rate), generator=gen)
    with torch.inference_mode():
        return frontend.mel_power(noise)[0].mean(dim=1, keepdim=True).clone()


def babble_rows(utterances: Sequence[Utterance], *, tracks: int, talkers: int, seed: int,
                exclude: Collection[str] = ()) -> list[list[Utterance]]:
    """LibriSpeech readers of ``utterances`` grouped into ``tracks`` babble tracks of ``talkers`` each.

    Rows whose path is in ``exclude`` are left out (training passes the noise study's readers,
    :func:`training.noise.study_babble_rows`); each track is half female; no reader is in
    two tracks (fewer tracks if readers run out).
    """
    excluded = set(exclude)
    rng = np.random.default_rng(seed)
    pools = {}
    for g in ("female", "male"):
        pool = sorted((u for u in utterances if u.corpus == "librispeech" and u.gender == g and u.path not in excluded),
                      key=lambda u: u.path)
        pools[g] = [pool[i] for i in rng.permutation(len(pool))]
    half = talkers // 2
    n = min(tracks, len(pools["female"]) // max(half, 1), len(pools["male"]) // max(talkers - half, 1))
    return [pools["female"][k * half:(k + 1) * half] + pools["male"][k * (talkers - half):(k + 1) * (talkers - half)]
            for k in range(n)]


def noise_bank(kinds: Sequence[str], frontend, utterances: Sequence[Utterance], *, seed: int,
               babble_tracks: int = _SHIPPED.babble_tracks, babble_talkers: int = _SHIPPED.babble_talkers,
               babble_seconds: float = _SHIPPED.babble_seconds, exclude: Collection[str] = ()) -> list:
    """Noise mel powers to draw from during training (unit-variance noise, see :func:`noise_mel`).

    * ``white``: white noise, ``[80, 1]``;
    * ``pink``: 1/f noise (:func:`training.noise.pink_noise`), ``[80, 1]``;
    * ``babble``: ``babble_tracks`` tracks of ``babble_talkers`` LibriSpeech readers of
      ``utterances`` (paths in ``exclude`` left out) talking at once (:func:`babble_rows`)
      for ``babble_seconds``, ``[80, frames]`` each, cropped at random per clip. Other
      speakers' voices at low SNR teach the model to follow the loudest talker.

    Each kind gets the same total probability. Returns a list of
    ``(kind, [tensor, ...])`` pairs.
    """
    from training.noise import make_babble, pink_noise

    unknown = set(kinds) - set(NOISE_KINDS)
    if unknown or not kinds:
        raise ValueError(f"noise kinds must be drawn from {NOISE_KINDS}, got {list(kinds)}")
    bank = []
    for kind in kinds:
        if kind == "white":
            bank.append((kind, [white_noise_mel(frontend)]))
        elif kind == "pink":
            bank.append((kind, [noise_mel(frontend, pink_noise(20 * frontend.sample_rate, seed=1235), stationary=True)]))
        else:
            groups = babble_rows(utterances, tracks=babble_tracks, talkers=babble_talkers, seed=seed, exclude=exclude)
            if not groups:
                raise ValueError("babble noise needs LibriSpeech readers of both genders among the fitted rows")
            tracks = []
            for k, rows in enumerate(groups):
                voices = [y for y in load_signals(rows, log_every=0) if y is not None]
                babble = make_babble(voices, seconds=babble_seconds, sr=frontend.sample_rate, seed=seed + k)
                tracks.append(noise_mel(frontend, babble, stationary=False))
            bank.append((kind, tracks))
    return bank


def draw_noise(noise, frames: int, rng: np.random.Generator):
    """One noise mel power ``[80, 1 or frames]`` from ``noise`` (a tensor or a :func:`noise_bank`).

    Draws a kind, then a track (no draw where there is only one choice, so the
    white-only recipe keeps its random stream), then a start in a
    non-stationary track (looped when shorter than ``frames``).
    """
    if not isinstance(noise, (list, tuple)):
        track = noise
    else:
        _, tracks = noise[int(rng.integers(len(noise)))] if len(noise) > 1 else noise[0]
        track = tracks[int(rng.integers(len(tracks)))] if len(tracks) > 1 else tracks[0]
    if track.shape[1] == 1:
        return track
    if track.shape[1] < frames:
        reps = -(-frames // int(track.shape[1]))
        track = track.repeat(1, reps)
    start = int(rng.integers(0, track.shape[1] - frames + 1))
    return track[:, start:start + frames]
