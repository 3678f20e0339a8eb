"""Train and evaluate the shipped gender model (small ECAPA-TDNN, see :mod:`pipeline.ecapa`).

Usage::

    python -m training.gender_train --out gender_model        # the shipped recipe
    python -m training.gender_train --out /tmp/g --fit-splits train --no-test \
        --length-report reports/gender_length                  # the run that checks its length
    python -m training.gender_train --out /tmp/no_ased --exclude-corpus ased --no-test
                                                               # a corpus never seen (studies.gender_holdout)
    python -m training.gender_train --out /tmp/no_ased_ch --exclude-corpus ased --channel 2
                                                               # the same with random recording channels

Data: the gender-labelled rows of all five corpora in the shared manifest (all but
those named by ``--exclude-corpus``). The
shipped model is fitted on ``train`` + ``val`` for a fixed 80 epochs and keeps
the last one. With ``--fit-splits train`` the ``val`` split is held out instead
and used for model selection (best epoch by validation accuracy, ties broken by
validation loss); that run's validation curve (``--length-report``) is how the
fixed length is checked. ``test`` is touched only after training, by
:func:`evaluate_gender`, to write the metrics of the model card.

Every clip goes through :func:`pipeline.audio.load_audio` (trimmed and
level-normalised, exactly as at inference); its log-mel (before mean
normalisation) is computed once with :class:`~pipeline.ecapa.LogMelFrontEnd`
and cached in memory, together with two speed-perturbed copies (x0.9 and x1.1,
resampled waveforms: tempo and pitch change by 10 %, about 1.8 semitones, so the
gender label stays valid), and with ``--channel N`` N copies through random
recording channels (:mod:`training.channel`; half of the crops then come from
them). Training draws clips with sampling weights that
balance corpus x gender groups and, inside a group, speakers; picks the original
or a speed-perturbed copy; crops them at random (a random length in ``crop_s``
per mini-batch, whole clip if shorter); adds noise at a random SNR in the mel
power domain (white by default, ``--noise white pink babble`` for a mix: white
and pink noise as their mean mel power spectrum, equivalent in expectation to
adding them to the waveform before the front end; babble as a random stretch of
the mel power of several LibriSpeech readers talking at once); mean-normalises
each crop and applies SpecAugment (time and frequency masks set to the band
mean, i.e. 0). Validation runs on whole
clips, exactly like :class:`pipeline.gender.GenderClassifier` (same prepared
signal, same front end, BatchNorm in eval mode); the best epoch by validation
accuracy is kept when ``val`` is held out.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Collection, Iterable, Sequence

import numpy as np

from training.channel import ChannelRecipe
from training.corpus import Utterance, read_manifest

CORPORA = ("ravdess", "savee", "librispeech", "ased", "emovo")
HIGH_AROUSAL = ("angry", "happy", "fearful", "surprised")
LOW_AROUSAL = ("sad", "calm", "neutral")

#: Widths of the shipped (small) model; the public model uses C=1024, 1536, 256, 192.
SMALL_WIDTHS = {"C": 128, "mfa_channels": 384, "attention_channels": 64, "embedding_dim": 128}

LICENCES = {
    "ravdess": "CC BY-NC-SA 4.0 (non-commercial, share-alike)",
    "savee": "free for research use",
    "librispeech": "CC BY 4.0",
    "ased": "research use",
    "emovo": "research use",
}


def gender_rows(utterances: Iterable[Utterance], split: str) -> list[Utterance]:
    """Rows of ``split`` whose gender is ``male`` or ``female``."""
    return [u for u in utterances if u.split == split and u.gender in ("male", "female")]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_signals(utterances: Sequence[Utterance], *, log_every: int = 1000) -> list[np.ndarray | None]:
    """Prepared signals (``load_audio(...).samples``) of ``utterances``; ``None`` where refused."""
    from pipeline.audio import load_audio
    from pipeline.errors import AudioError

    out: list[np.ndarray | None] = []
    for i, u in enumerate(utterances):
        try:
            out.append(load_audio(u.path).samples)
        except AudioError as exc:
            print(f"  skipped {u.relpath}: {exc.message}", file=sys.stderr)
            out.append(None)
        if log_every and (i + 1) % log_every == 0:
            print(f"  loaded {i + 1}/{len(utterances)}", flush=True)
    return out


def compute_log_mels(signals: Sequence[np.ndarray], frontend) -> list:
    """Un-normalised log-mel ``[80, frames]`` tensors of ``signals`` (one front-end pass each)."""
    import torch

    with torch.inference_mode():
        return [frontend.log_mel(torch.from_numpy(y)[None])[0].clone() for y in signals]


def sampling_weights(utterances: Sequence[Utterance], *, by_speaker: bool = True) -> np.ndarray:
    """Per-clip sampling probabilities.

    Each (corpus, gender) group gets a mass proportional to ``sqrt(group size)``
    (clips); inside a group every speaker gets the same share (``by_speaker``,
    else every clip); then both genders are scaled to half of the mass.

    This keeps ASED (1500 train clips) and RAVDESS from dominating while not
    over-sampling the 106-clip LibriSpeech groups 10-fold, and makes every
    speaker of an emotional corpus count equally.
    """
    groups = Counter((u.corpus, u.gender) for u in utterances)
    speakers: dict[tuple, set] = defaultdict(set)
    for u in utterances:
        speakers[(u.corpus, u.gender)].add(u.speaker)
    per_speaker = Counter(u.speaker for u in utterances)
    if by_speaker:
        w = np.array([
            math.sqrt(groups[(u.corpus, u.gender)])
            / (len(speakers[(u.corpus, u.gender)]) * per_speaker[u.speaker])
            for u in utterances
        ])
    else:
        w = np.array([1.0 / math.sqrt(groups[(u.corpus, u.gender)]) for u in utterances])
    genders = np.array([u.gender for u in utterances])
    for g in ("male", "female"):
        mask = genders == g
        if mask.any():
            w[mask] *= 0.5 / w[mask].sum()
    return w / w.sum()


def pitch_balance(weights: np.ndarray, f0_hz: Sequence[float | None], genders: Sequence[str], *,
                  bin_semitones: float = 2.0, power: float = 0.5) -> np.ndarray:
    """``weights [n]`` re-weighted so that, within each gender, rare voice pitches are drawn more often.

    Clips are binned by their median F0 (``f0_hz [n]``, ``bin_semitones`` wide
    bins); each clip's weight is divided by the binned *weighted* share of its
    pitch to the ``power`` (0: unchanged, 1: a flat pitch distribution per gender).
    Clips without an F0 keep their weight. Both genders are scaled back to half
    of the mass. High-pitched men and low-pitched women, the voices a model
    trained on other corpora misjudges (``reports/corpus_pitch.md``), gain weight.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    genders = np.asarray(genders)
    f0 = np.array([np.nan if v is None else float(v) for v in f0_hz])
    bins = np.floor(12.0 * np.log2(np.where(np.isfinite(f0), f0, 100.0) / 100.0) / bin_semitones)
    for g in np.unique(genders):
        mask = (genders == g) & np.isfinite(f0)
        if not mask.any():
            continue
        mass = defaultdict(float)
        for b, wi in zip(bins[mask], w[mask]):
            mass[b] += wi
        total = sum(mass.values())
        share = np.array([mass[b] / total for b in bins[mask]])
        w[mask] = w[mask] / share**power
    for g in ("male", "female"):
        mask = genders == g
        if mask.any():
            w[mask] *= 0.5 / w[mask].sum()
    return w / w.sum()


#: Noise kinds the training can add (mel power domain, see :func:`noise_bank`).
NOISE_KINDS = ("white", "pink", "babble")


def noise_mel(frontend, noise: np.ndarray, *, stationary: bool) -> "torch.Tensor":
    """Mel power of ``noise [shape=(n,)]`` (16 kHz) scaled to unit variance, after pre-emphasis.

    Returns ``[80, 1]`` (the mean over time) when ``stationary``, else ``[80, frames]``.
    """
    import torch

    noise = np.asarray(noise, dtype=np.float64)
    noise = noise / (np.sqrt(np.mean(noise**2)) or 1.0)
    with torch.inference_mode():
        power = frontend.mel_power(torch.from_numpy(noise.astype(np.float32))[None])[0]
        return (power.mean(dim=1, keepdim=True) if stationary else power).clone()


def white_noise_mel(frontend, *, seconds: float = 20.0, seed: int = 1234) -> "torch.Tensor":
    """Mean mel power per band ``[80, 1]`` of unit-variance white noise (after pre-emphasis)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, int(seconds * frontend.sample_rate), generator=gen)
    with torch.inference_mode():
        return frontend.mel_power(noise)[0].mean(dim=1, keepdim=True).clone()


def babble_rows(utterances: Sequence[Utterance], *, tracks: int, talkers: int, seed: int,
                exclude: Collection[str] = ()) -> list[list[Utterance]]:
    """LibriSpeech readers of ``utterances`` grouped into ``tracks`` babble tracks of ``talkers`` each.

    Rows whose path is in ``exclude`` are left out (training passes the noise study's readers,
    :func:`training.augment.study_babble_rows`); each track is half female; no reader is in
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
               babble_tracks: int = 4, babble_talkers: int = 6, babble_seconds: float = 30.0,
               exclude: Collection[str] = ()) -> list:
    """Noise mel powers to draw from during training (unit-variance noise, see :func:`noise_mel`).

    * ``white``: white noise, ``[80, 1]``;
    * ``pink``: 1/f noise (:func:`training.augment.pink_noise`), ``[80, 1]``;
    * ``babble``: ``babble_tracks`` tracks of ``babble_talkers`` LibriSpeech readers of
      ``utterances`` (paths in ``exclude`` left out) talking at once (:func:`babble_rows`),
      ``[80, frames]`` each, cropped at random per clip. Other speakers' voices at low
      SNR teach the model to follow the loudest talker.

    Each kind gets the same total probability. Returns a list of
    ``(kind, [tensor, ...])`` pairs.
    """
    from training.augment import make_babble, pink_noise

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


#: Speed-perturbation factors cached per clip (1.0 = original) and their sampling probabilities.
SPEED_FACTORS = (1.0, 0.9, 1.1)
SPEED_PROBS = (0.5, 0.25, 0.25)

#: Probability that a training crop comes from one of the clip's channel copies (when there are any).
CHANNEL_SHARE = 0.5


def version_probs(n_speed: int, n_channel: int) -> tuple[float, ...] | None:
    """Sampling probabilities of a clip's cached versions ``[original, speed copies..., channel copies...]``.

    Without channel copies: :data:`SPEED_PROBS` when ``n_speed`` matches it,
    else ``None`` (uniform), as the shipped recipe always drew. With them: the
    speed versions share ``1 - CHANNEL_SHARE`` in their usual proportions and
    the channel copies share :data:`CHANNEL_SHARE` equally.
    """
    if n_channel <= 0:
        return SPEED_PROBS if n_speed == len(SPEED_PROBS) else None
    speed = SPEED_PROBS if n_speed == len(SPEED_PROBS) else tuple([1.0 / n_speed] * n_speed)
    return tuple(p * (1.0 - CHANNEL_SHARE) for p in speed) + tuple([CHANNEL_SHARE / n_channel] * n_channel)


def channel_versions(signals: Sequence[np.ndarray], frontend, *, copies: int, seed: int,
                     sr: int = 16000) -> tuple[list[list], list]:
    """Log-mels of ``copies`` random-channel versions of each signal, and the channels drawn.

    Returns ``(mels, channels)``: ``mels[i]`` is a list of ``copies`` log-mels
    ``[80, frames]`` of ``signals[i]`` (``sr`` Hz); ``channels`` lists every
    :class:`training.channel.Channel` drawn. Uses its own generator
    (``seed + 7919``), so the training stream is unchanged.
    """
    from training.channel import apply_channel, draw_channel

    rng = np.random.default_rng(seed + 7919)
    out, drawn = [], []
    for i, y in enumerate(signals):
        versions = []
        for _ in range(copies):
            channel = draw_channel(rng)
            drawn.append(channel)
            versions.append(apply_channel(y, sr, channel, seed=int(rng.integers(2**31))))
        out.append(compute_log_mels(versions, frontend))
        if (i + 1) % 1000 == 0:
            print(f"channel copies: {i + 1}/{len(signals)}", flush=True)
    return out, drawn


def speed_perturb(y: np.ndarray, factor: float) -> np.ndarray:
    """``y`` played ``factor`` times faster (resampled: tempo and pitch both scale by ``factor``).

    The result has ``len(y) / factor`` samples; its RMS is restored to that of ``y``.
    """
    import torch
    import torchaudio

    if factor == 1.0:
        return y
    frac = Fraction(factor).limit_denominator(100)
    # reading y as if sampled at factor * sr and resampling to sr shortens it by 1/factor
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)),
                                         orig_freq=frac.numerator, new_freq=frac.denominator).numpy()
    rms_in, rms_out = float(np.sqrt(np.mean(y**2))), float(np.sqrt(np.mean(out**2)))
    if rms_out > 0:
        out = out * (rms_in / rms_out)
    return out.astype(np.float32)


def spec_augment(
    x, rng: np.random.Generator, *, freq_masks: int = 2, max_freq_width: int = 10,
    time_masks: int = 2, max_time_fraction: float = 0.1,
):
    """SpecAugment on mean-normalised log-mels ``[batch, bands, frames]`` (in place; masks set to 0)."""
    bands, frames = int(x.shape[1]), int(x.shape[2])
    for b in range(int(x.shape[0])):
        for _ in range(freq_masks):
            width = int(rng.integers(0, max_freq_width + 1))
            if width:
                f0 = int(rng.integers(0, bands - width + 1))
                x[b, f0 : f0 + width, :] = 0.0
        max_t = int(max_time_fraction * frames)
        for _ in range(time_masks):
            width = int(rng.integers(0, max_t + 1)) if max_t > 0 else 0
            if width:
                t0 = int(rng.integers(0, frames - width + 1))
                x[b, :, t0 : t0 + width] = 0.0
    return x


def make_batch(
    mels: Sequence, indices: Sequence[int], *, crop_frames: int, noise, rng: np.random.Generator,
    noise_prob: float = 0.6, snr_db: tuple[float, float] = (5.0, 40.0), signal_power: float = 10 ** (-26 / 10),
    specaugment: bool = False, version_probs: Sequence[float] | None = None,
):
    """Random crops of ``mels[indices]`` to a common length, noise-augmented and mean-normalised.

    ``mels[i]`` is a log-mel ``[80, frames]`` or a sequence of alternative
    versions of clip ``i`` (original, speed-perturbed and channel copies),
    drawn with ``version_probs`` (default: :data:`SPEED_PROBS` when there are
    as many versions, else uniformly). Returns ``[batch, 80, frames]``
    float32 with ``frames = min(crop_frames, shortest clip)``; SpecAugment
    masks when ``specaugment``.

    ``noise`` is ``None``, one unit-variance noise mel power ``[80, 1 or frames]``
    or a :func:`noise_bank`. With probability ``noise_prob`` a crop gets noise of
    a kind drawn uniformly (then a track uniformly, and a random stretch of a
    non-stationary track) at an SNR drawn from ``snr_db`` against
    ``signal_power`` (the level :func:`pipeline.audio.load_audio` normalises to),
    added in the power domain.
    """
    import torch

    chosen = []
    for i in indices:
        m = mels[i]
        if isinstance(m, (list, tuple)):
            p = version_probs if version_probs is not None else (SPEED_PROBS if len(m) == len(SPEED_PROBS) else None)
            m = m[int(rng.choice(len(m), p=p))]
        chosen.append(m)
    length = min(crop_frames, min(int(m.shape[1]) for m in chosen))
    crops = []
    for m in chosen:
        start = int(rng.integers(0, m.shape[1] - length + 1))
        crop = m[:, start : start + length]
        noisy = rng.random() < noise_prob  # drawn even without noise: one random stream whatever the options
        if noisy and noise is not None:
            snr = rng.uniform(*snr_db)
            noise_power = signal_power / (10 ** (snr / 10))
            crop = torch.log(torch.exp(crop) + noise_power * _draw_noise(noise, length, rng))
        crops.append(crop - crop.mean(dim=1, keepdim=True))
    x = torch.stack(crops)
    if specaugment:
        spec_augment(x, rng)
    return x


def _draw_noise(noise, frames: int, rng: np.random.Generator):
    """One noise mel power ``[80, 1 or frames]`` from ``noise`` (a tensor or a :func:`noise_bank`)."""
    if not isinstance(noise, (list, tuple)):
        track = noise
    else:
        # no draw from rng where there is no choice: the white-only recipe keeps its random stream
        _, tracks = noise[int(rng.integers(len(noise)))] if len(noise) > 1 else noise[0]
        track = tracks[int(rng.integers(len(tracks)))] if len(tracks) > 1 else tracks[0]
    if track.shape[1] == 1:
        return track
    if track.shape[1] < frames:
        reps = -(-frames // int(track.shape[1]))
        track = track.repeat(1, reps)
    start = int(rng.integers(0, track.shape[1] - frames + 1))
    return track[:, start:start + frames]


def recalibrate_batchnorm(model, mels: Sequence, rng: np.random.Generator, *, batches: int = 40,
                          batch_size: int = 32, crop_frames: int = 300) -> None:
    """Re-estimate BatchNorm running statistics on clean (un-augmented) crops of ``mels``."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    originals = [m[0] if isinstance(m, (list, tuple)) else m for m in mels]
    with torch.no_grad():
        for _ in range(batches):
            idx = rng.choice(len(originals), size=batch_size, replace=True)
            model.forward_features(make_batch(originals, idx, crop_frames=crop_frames, noise=None,
                                              rng=rng, noise_prob=0.0))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def _accuracy_on_mels(model, mels: Sequence, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on whole clips (mean-normalised)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for m, y in zip(mels, labels):
            logits = model.forward_features((m - m.mean(dim=1, keepdim=True))[None])
            loss += float(F.cross_entropy(logits, torch.tensor([int(y)])))
            correct += int(int(logits.argmax(1)) == int(y))
    return correct / max(1, len(mels)), loss / max(1, len(mels))


def evaluate_gender(classifier, utterances: Sequence[Utterance], *, signals: Sequence | None = None) -> dict:
    """Gender accuracy of ``classifier`` on ``utterances`` (gender-labelled rows).

    Args:
        classifier: a :class:`pipeline.gender.GenderClassifier` (anything with
            ``predict_proba_batch`` returning ``[p_male, p_female]`` rows).
        utterances: manifest rows; rows without ``male``/``female`` are ignored.
        signals: optional prepared signals aligned with ``utterances`` (``None``
            entries are skipped); loaded with :func:`pipeline.audio.load_audio` if omitted.

    Returns:
        ``{"overall": {...}, "per_corpus": {corpus: {...}}, "per_gender": {...},
        "per_speaker": {speaker: {...}},
        "per_gender_emotion": {"male/angry": {...}, ...},
        "arousal": {"male_high_arousal": {...}, "female_low_arousal": {...}, ...},
        "errors": [relpath, ...], "skipped": n}`` where each ``{...}`` is
        ``{"n": int, "correct": int, "accuracy": float}``.
    """
    from pipeline.gender import GENDER_LABELS

    rows = [(i, u) for i, u in enumerate(utterances) if u.gender in GENDER_LABELS]
    if signals is None:
        loaded = load_signals([u for _, u in rows], log_every=0)
    else:
        loaded = [signals[i] for i, _ in rows]
    kept = [(u, y) for (_, u), y in zip(rows, loaded) if y is not None]
    skipped = len(rows) - len(kept)
    probs = classifier.predict_proba_batch([y for _, y in kept]) if kept else np.zeros((0, 2))
    tallies: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    errors = []
    for (u, _), p in zip(kept, probs):
        ok = int(GENDER_LABELS[int(np.argmax(p))] == u.gender)
        if not ok:
            errors.append(u.relpath)
        keys = [("overall", "all"), ("per_corpus", u.corpus), ("per_gender", u.gender), ("per_speaker", u.speaker)]
        if u.emotion:
            keys.append(("per_gender_emotion", f"{u.gender}/{u.emotion}"))
            if u.emotion in HIGH_AROUSAL:
                keys.append(("arousal", f"{u.gender}_high_arousal"))
            if u.emotion in LOW_AROUSAL:
                keys.append(("arousal", f"{u.gender}_low_arousal"))
        for section, key in keys:
            tallies[section][key][0] += 1
            tallies[section][key][1] += ok

    def cell(n_correct: list[int]) -> dict:
        n, c = n_correct
        return {"n": n, "correct": c, "accuracy": round(c / n, 4) if n else float("nan")}

    result: dict = {
        section: {key: cell(v) for key, v in sorted(tallies[section].items())}
        for section in ("per_corpus", "per_gender", "per_speaker", "per_gender_emotion", "arousal")
    }
    result["overall"] = cell(tallies["overall"]["all"])
    result["errors"] = sorted(errors)
    result["skipped"] = skipped
    return result


def train_gender(
    out_dir: str | Path,
    *,
    seed: int = 0,
    epochs: int = 80,
    samples_per_epoch: int = 3200,
    batch_size: int = 32,
    crop_s: tuple[float, float] = (1.5, 3.0),
    lr: float = 2e-3,
    weight_decay: float = 1e-2,
    label_smoothing: float = 0.1,
    speed_factors: Sequence[float] = SPEED_FACTORS,
    specaugment: bool = True,
    widths: dict | None = None,
    threads: int = 1,
    evaluate_test: bool = True,
    max_rows: int | None = None,
    fit_splits: Sequence[str] = ("train", "val"),
    noise_kinds: Sequence[str] = ("white",),
    keep: str | None = None,
    exclude_corpora: Sequence[str] = (),
    channel_copies: int = 0,
    pitch_balance_power: float = 0.0,
) -> dict:
    """Train the small ECAPA gender model, save it to ``out_dir`` and return its metadata.

    ``out_dir`` receives ``config.json`` + ``model.safetensors`` (``save_pretrained``),
    ``metadata.json`` and ``README.md`` (model card, metrics from :func:`evaluate_gender`
    on the ``test`` split when ``evaluate_test``). ``max_rows`` limits each split
    (for smoke tests only).

    ``fit_splits`` are the manifest splits fitted on: ``("train",)`` keeps ``val``
    for choosing the best epoch (and BatchNorm re-estimation); ``("train", "val")``
    fits on both for exactly ``epochs`` epochs and keeps the last one (no
    selection, so the length must have been chosen beforehand on a ``train``-only run).

    ``noise_kinds`` (from :data:`NOISE_KINDS`) are the noises added to 60% of the
    training crops (:func:`noise_bank`).

    ``keep`` is ``"best"`` (the default of a ``train``-only run: best epoch on ``val``,
    then BatchNorm re-estimation if it helps) or ``"last"`` (the default, and the only
    choice, when ``val`` is fitted). A ``train``-only run with ``keep="last"`` is the
    shipped recipe with ``val`` held out: nothing is chosen on ``val``, so its ``val``
    accuracy is an unbiased estimate (used to judge seed ensembles).

    ``exclude_corpora`` names corpora left out of fitting and of ``val``: every
    speaker of such a corpus is new to the model, and so are its language,
    recording conditions and speaking style (:mod:`studies.gender_holdout`).

    ``channel_copies`` > 0 caches that many copies of every training clip, each
    through its own random recording channel (:mod:`training.channel`: room
    reverberation, band limit, MP3/Opus), drawn together half of the time
    (:func:`version_probs`). 0, the default, leaves the random stream of the
    shipped recipe untouched.

    ``pitch_balance_power`` > 0 re-weights the sampling so that rare voice
    pitches within each gender are drawn more often (:func:`pitch_balance`,
    F0 by :func:`studies.corpus_pitch.fast_median_f0`); 0, the default, leaves
    the shipped sampling as it is.
    """
    import torch
    import torch.nn.functional as F
    import torchaudio

    from pipeline.audio import DEFAULT_AUDIO_CONFIG
    from pipeline.ecapa import FRONTEND_PARAMS, ECAPAGender, LogMelFrontEnd
    from pipeline.gender import GENDER_LABELS, GenderClassifier

    t_start = time.time()
    torch.set_num_threads(threads)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    widths = dict(SMALL_WIDTHS if widths is None else widths)
    out_dir = Path(out_dir)

    fit_splits = tuple(fit_splits)
    if not fit_splits or not set(fit_splits) <= {"train", "val"}:
        raise ValueError(f"fit_splits must be drawn from ('train', 'val'), got {fit_splits}")
    select_on_val = "val" not in fit_splits
    keep_epoch = keep or ("best" if select_on_val else "last")
    if keep_epoch not in ("best", "last") or (keep_epoch == "best" and not select_on_val):
        raise ValueError(f"keep must be 'best' (train-only runs) or 'last', got {keep!r} with fit_splits={fit_splits}")
    excluded = tuple(sorted(set(exclude_corpora)))
    if "babble" in noise_kinds and "librispeech" in excluded:
        raise ValueError("babble noise is made of LibriSpeech readers: it cannot be used with librispeech excluded")
    manifest = read_manifest()
    unknown = set(excluded) - {u.corpus for u in manifest}
    if unknown:
        raise ValueError(f"exclude_corpora names corpora not in the manifest: {sorted(unknown)}")
    all_rows, manifest = manifest, [u for u in manifest if u.corpus not in excluded]
    train_rows = [u for split in fit_splits for u in gender_rows(manifest, split)]
    val_rows = gender_rows(manifest, "val") if select_on_val else []
    if max_rows:
        train_rows = [train_rows[i] for i in rng.permutation(len(train_rows))[:max_rows]]
        val_rows = [val_rows[i] for i in rng.permutation(len(val_rows))[:max_rows]]
    print(f"loading {len(train_rows)} clips to fit ({'+'.join(fit_splits)}) + {len(val_rows)} val clips", flush=True)
    frontend = LogMelFrontEnd()
    data, channels = {}, []
    for name, rows in (("train", train_rows), ("val", val_rows)):
        signals = load_signals(rows)
        keep = [i for i, y in enumerate(signals) if y is not None]
        rows = [rows[i] for i in keep]
        mels = compute_log_mels([signals[i] for i in keep], frontend)
        if name == "train" and len(speed_factors) > 1:
            # [original, speed copies...] per clip; speed_factors[0] must be 1.0
            copies = [
                compute_log_mels([speed_perturb(signals[i], f) for i in keep], frontend)
                for f in speed_factors[1:]
            ]
            mels = [[m, *(c[j] for c in copies)] for j, m in enumerate(mels)]
        if name == "train" and channel_copies > 0:
            channel_mels, channels = channel_versions([signals[i] for i in keep], frontend,
                                                      copies=channel_copies, seed=seed)
            mels = [[*(m if isinstance(m, list) else [m]), *channel_mels[j]] for j, m in enumerate(mels)]
        labels = np.array([GENDER_LABELS.index(u.gender) for u in rows])
        if name == "train" and pitch_balance_power > 0:
            from training.pitch import fast_median_f0

            train_f0 = [fast_median_f0(signals[i]) for i in keep]
        data[name] = (rows, mels, labels)
    train_rows, train_mels, train_labels = data["train"]
    val_rows, val_mels, val_labels = data["val"]
    print(f"features ready in {time.time() - t_start:.0f} s", flush=True)

    weights = sampling_weights(train_rows)
    if pitch_balance_power > 0:
        weights = pitch_balance(weights, train_f0, [u.gender for u in train_rows], power=pitch_balance_power)
    probs = version_probs(len(speed_factors), channel_copies)
    from training.augment import study_babble_rows

    # the noise study's babble readers never become training babble, so its babble stays unseen noise
    noise = noise_bank(noise_kinds, frontend, train_rows, seed=seed,
                       exclude={u.path for u in study_babble_rows(manifest)})
    frames_per_s = frontend.sample_rate / frontend.hop_length
    crop_range = (int(round(crop_s[0] * frames_per_s)), int(round(crop_s[1] * frames_per_s)))

    model = ECAPAGender(**widths)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, samples_per_epoch // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    best = {"val_accuracy": -1.0, "val_loss": float("inf"), "epoch": 0, "state": None}
    history = []
    for epoch in range(1, epochs + 1):
        t_epoch = time.time()
        model.train()
        total_loss, total_correct, seen = 0.0, 0, 0
        for _ in range(steps_per_epoch):
            idx = rng.choice(len(train_rows), size=batch_size, replace=True, p=weights)
            crop_frames = int(rng.integers(crop_range[0], crop_range[1] + 1))
            x = make_batch(train_mels, idx, crop_frames=crop_frames, noise=noise, rng=rng,
                           specaugment=specaugment, version_probs=probs)
            y = torch.as_tensor(train_labels[idx])
            logits = model.forward_features(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
            total_correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        train_time = time.time() - t_epoch
        record = {
            "epoch": epoch,
            "train_loss": round(total_loss / seen, 4),
            "train_accuracy": round(total_correct / seen, 4),
            "train_seconds": round(train_time, 1),
        }
        if select_on_val:
            val_acc, val_loss = _accuracy_on_mels(model, val_mels, val_labels)
            record.update(val_accuracy=round(val_acc, 4), val_loss=round(val_loss, 4),
                          val_seconds=round(time.time() - t_epoch - train_time, 1))
        else:
            val_acc, val_loss = float("nan"), float("nan")
        history.append(record)
        print(json.dumps(record), flush=True)
        if keep_epoch == "last":
            best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch, "state": None}
        elif (val_acc, -val_loss) > (best["val_accuracy"], -best["val_loss"]):
            best = {
                "val_accuracy": val_acc,
                "val_loss": val_loss,
                "epoch": epoch,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    # BatchNorm running statistics were gathered on augmented crops; re-estimating
    # them on clean crops is kept only if it improves validation (accuracy, then loss).
    # Without a validation split there is nothing to decide on: the statistics stay as trained.
    bn_recalibration, recal_acc = False, float("nan")
    if keep_epoch == "best":
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        recalibrate_batchnorm(model, train_mels, np.random.default_rng(seed + 1))
        recal_acc, recal_loss = _accuracy_on_mels(model, val_mels, val_labels)
        print(json.dumps({"bn_recalibrated_val_accuracy": round(recal_acc, 4), "val_loss": round(recal_loss, 4)}), flush=True)
        bn_recalibration = (recal_acc, -recal_loss) > (best["val_accuracy"], -best["val_loss"])
        if bn_recalibration:
            best["val_accuracy"], best["val_loss"] = recal_acc, recal_loss
        else:
            model.load_state_dict(before)
    model.eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    metadata = {
        "model": "ECAPA-TDNN gender classifier (small), parameter names as JaesungHuh/voice-gender-classifier",
        "labels": list(GENDER_LABELS),
        "sample_rate": frontend.sample_rate,
        "frontend": FRONTEND_PARAMS,
        "architecture": widths,
        "audio_config": DEFAULT_AUDIO_CONFIG.to_dict(),
        "training": {
            "fit_splits": list(fit_splits),
            "keep": keep_epoch,
            "corpora": sorted({u.corpus for u in train_rows}),
            "excluded_corpora": list(excluded),
            "train_rows": dict(sorted(Counter(f"{u.corpus}/{u.gender}" for u in train_rows).items())),
            "val_rows": dict(sorted(Counter(f"{u.corpus}/{u.gender}" for u in val_rows).items())),
            "n_train": len(train_rows),
            "n_val": len(val_rows),
            "seed": seed,
            "threads": threads,
            "epochs": epochs,
            "best_epoch": best["epoch"],
            "samples_per_epoch": steps_per_epoch * batch_size,
            "batch_size": batch_size,
            "crop_s": list(crop_s),
            "optimiser": f"AdamW lr={lr} (one-cycle, 15% warm-up) weight_decay={weight_decay}, "
            f"label smoothing {label_smoothing}",
            "augmentation": (
                f"speed perturbation x{'/'.join(str(f) for f in speed_factors)} (resampled, p={'/'.join(str(p) for p in SPEED_PROBS)}); "
                f"random crop of U({crop_s[0]}, {crop_s[1]}) s per batch; {_noise_phrase(noise)} at SNR U(5, 40) dB "
                "with p=0.6 (mel power domain)"
                + ("; SpecAugment 2 frequency masks <= 10 bands + 2 time masks <= 10% of the crop" if specaugment else "")
                + (f"; {channel_copies} random recording channel(s) per clip (reverberation, band limit, MP3/Opus), "
                   f"used with p={CHANNEL_SHARE}" if channel_copies else "")
            ),
            "channel": ({"copies": channel_copies, "share": CHANNEL_SHARE, "recipe": ChannelRecipe().to_dict(),
                         "drawn": dict(sorted(Counter(k for c in channels for k in c.effects).items()))}
                        if channel_copies else None),
            "noise_kinds": list(noise_kinds),
            "sampling": "corpus x gender group mass ~ sqrt(group size), equal share per speaker inside a group, "
            "genders balanced 50/50"
            + (f"; within each gender, clips re-weighted by 1 / (share of their 2-semitone F0 bin)^{pitch_balance_power}"
               if pitch_balance_power > 0 else ""),
            "pitch_balance_power": pitch_balance_power,
            "bn_recalibration": {
                "used": bool(bn_recalibration),
                "val_accuracy": None if math.isnan(recal_acc) else round(recal_acc, 4),
                "note": "BatchNorm statistics re-estimated on clean train crops, kept only if it improves val (accuracy, then loss)",
            },
            "history": history,
            "wall_seconds": None,
        },
        "val_accuracy": None if math.isnan(best["val_accuracy"]) else round(best["val_accuracy"], 4),
        "torch_version": torch.__version__,
        "torchaudio_version": torchaudio.__version__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    metadata["training"]["wall_seconds"] = round(time.time() - t_start, 1)
    if evaluate_test:
        test_rows = gender_rows(all_rows, "test")  # held-out corpora are scored too
        if max_rows:
            test_rows = [test_rows[i] for i in rng.permutation(len(test_rows))[:max_rows]]
        classifier = GenderClassifier.load(out_dir)
        metrics = evaluate_gender(classifier, test_rows)
        metadata["test_metrics"] = metrics
        print(json.dumps({k: metrics[k] for k in ("overall", "per_corpus", "arousal")}, indent=1), flush=True)
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(model_card(metadata, out_dir), encoding="utf-8")
    return metadata


def _noise_phrase(bank: list) -> str:
    """How the training noise reads in the model card, e.g. ``"white noise or pink noise or babble (...)"``."""
    names = []
    for kind, tracks in bank:
        if kind == "babble":
            names.append(f"babble ({len(tracks)} tracks of LibriSpeech readers from the fitted splits talking at once)")
        else:
            names.append(f"{kind} noise")
    return " or ".join(names)


def _noise_limit(kinds: Sequence[str]) -> str:
    """The model card's sentence on training noise and where its effect is measured."""
    where = ("(the noise study in `reports/noise_study.md` measures pink noise and babble at 20-0 dB SNR; "
             "`python -m studies.gender_robustness` compares gender models under the same noise)")
    if list(kinds) == ["white"]:
        return f"Training adds white noise only, and pink noise lowers its accuracy markedly {where}."
    return f"Training adds {', '.join(kinds)} noise; accuracy still falls as the SNR drops {where}."


def length_report(metadata: dict, *, command: str) -> str:
    """Markdown: validation curve of a ``train``-only run, used to fix the epochs of a ``train`` + ``val`` fit.

    ``metadata`` is what :func:`train_gender` returns (or its ``metadata.json``)
    for a run with ``fit_splits=("train",)``; ``command`` is the command line
    that produced it. Reports, per epoch, train and val accuracy and val loss, the
    best epoch, and the mean and range of val accuracy over the last 5 and 15 epochs
    (what a fixed-length fit that keeps its last epoch should expect).
    """
    tr = metadata["training"]
    hist = tr["history"]
    if not hist or "val_accuracy" not in hist[0]:
        raise ValueError("length_report needs a run selected on val (fit_splits=('train',))")
    val = np.array([h["val_accuracy"] for h in hist])
    last5 = float(val[-5:].mean())
    # the epoch training kept (ties on accuracy broken by val loss), else the first maximum
    best = int(tr.get("best_epoch") or int(np.argmax(val)) + 1)
    lines = [
        "# Gender model: training length",
        "",
        f"Generated from `{command}`: the small ECAPA-TDNN fitted on the `train` split "
        f"({tr['n_train']} clips) and scored after every epoch on the `val` speakers ({tr['n_val']} clips, "
        "whole clips, as at inference). The shipped model is then fitted on `train` + `val` for the same "
        "number of epochs and keeps its last epoch, so what matters is the accuracy at the end of the "
        "schedule, not at its best epoch. The `test` split is not used.",
        "",
        f"- epochs: {tr['epochs']} ({tr['samples_per_epoch']} crops each, one-cycle learning rate)",
        f"- best val accuracy: {100 * val.max():.2f}% (the epoch kept, ties broken by val loss: {best})",
        f"- last epoch: {100 * val[-1]:.2f}%; mean of the last 5 epochs: {100 * last5:.2f}%; "
        f"of the last 15: {100 * float(val[-15:].mean()):.2f}% (range {100 * float(val[-15:].min()):.2f}-"
        f"{100 * float(val[-15:].max()):.2f}%)",
        *(
            [f"- BatchNorm statistics re-estimated on clean `train` crops after the best epoch: "
             f"{100 * bn['val_accuracy']:.2f}% on `val`"]
            if (bn := tr.get("bn_recalibration")) and bn.get("val_accuracy") is not None else []
        ),
        "",
        "| epoch | train accuracy (augmented crops) | val accuracy | val loss |",
        "|---:|---:|---:|---:|",
    ]
    for h in hist:
        lines.append(f"| {h['epoch']} | {100 * h['train_accuracy']:.1f}% | {100 * h['val_accuracy']:.2f}% | {h['val_loss']:.4f} |")
    return "\n".join(lines) + "\n"


def _table(rows: dict, header: str) -> str:
    lines = [f"| {header} | n | correct | accuracy |", "|---|---:|---:|---:|"]
    for key, c in rows.items():
        lines.append(f"| {key} | {c['n']} | {c['correct']} | {100 * c['accuracy']:.1f}% |")
    return "\n".join(lines)


def _data_sentence(metadata: dict) -> str:
    """Which splits (and corpora) the model was fitted on and how its length was chosen (model card)."""
    excluded = metadata["training"].get("excluded_corpora")
    sentence = _splits_sentence(metadata)
    if excluded:
        sentence += (f" Left out of training on purpose, to measure a corpus never seen: {', '.join(excluded)} "
                     "(`--exclude-corpus`, scored by `python -m studies.gender_holdout`).")
    return sentence


def _splits_sentence(metadata: dict) -> str:
    """Which splits the model was fitted on and how its length was chosen."""
    tr = metadata["training"]
    fit = tr.get("fit_splits", ["train"])
    if "val" in fit:
        return (
            "Gender-labelled rows of the shared corpus, `train` + `val` splits (speaker-disjoint from `test`), "
            f"fitted for a fixed {tr['epochs']} epochs (the last one is kept, no selection). The length is checked "
            "by a run with the same recipe fitted on `train` alone and scored on `val` after every epoch "
            "(`reports/gender_length.md`, written by `--fit-splits train --length-report`). "
            "The `test` split was used only for the metrics below."
        )
    if tr.get("keep") == "last":
        val = metadata.get("val_accuracy")
        return (
            "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`), "
            f"fitted for a fixed {tr['epochs']} epochs (the last one is kept, no selection)"
            + (f"; `val` accuracy of that epoch {100 * val:.1f}%" if val is not None else "")
            + ". The `test` split was used only for the metrics below."
        )
    if "best_epoch" not in tr:  # an ensemble whose members each kept their own best epoch
        return (
            "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`); "
            f"each member kept its best epoch of {tr['epochs']} on `val` (see its own `metadata.json`). "
            "The `test` split was used only for the metrics below."
        )
    return (
        "Gender-labelled rows of the shared corpus, `train` split (speaker-disjoint from `val` and `test`); "
        f"model selection on `val` (best epoch {tr['best_epoch']} of {tr['epochs']}, "
        f"val accuracy {100 * metadata['val_accuracy']:.1f}%). The `test` split was used only for the metrics below."
    )


def model_card(metadata: dict, out_dir: Path) -> str:
    """Markdown model card built from ``metadata`` (numbers come from the training run).

    ``metadata`` is a single model's (:func:`train_gender`) or a seed ensemble's
    (:func:`training.gender_ensemble.ensemble_metadata`, with an ``"ensemble"`` key).
    """
    tr = metadata["training"]
    ensemble = metadata.get("ensemble")
    weights = [out_dir / m / "model.safetensors" for m in ensemble["members"]] if ensemble else [out_dir / "model.safetensors"]
    size_mb = sum(f.stat().st_size for f in weights) / 1e6 if all(f.exists() for f in weights) else float("nan")
    w = metadata["architecture"]
    counts = "\n".join(f"| {k} | {v} |" for k, v in tr["train_rows"].items())
    seeds = ", ".join(str(s) for s in tr.get("seeds", [tr.get("seed")]))

    def architecture(size: str) -> str:
        return ("ECAPA-TDNN (Desplanques et al. 2020) with the parameter names of the public "
                "`JaesungHuh/voice-gender-classifier`, at reduced width "
                f"(C={w['C']}, MFA {w['mfa_channels']}, attention {w['attention_channels']}, "
                f"embedding {w['embedding_dim']}; {size}). Trained from scratch in this project; no public weights "
                "used. Front end: pre-emphasis 0.97, 25 ms Hamming window / 10 ms hop, 512-point FFT, 80 HTK mel "
                "bands 20-7600 Hz, log(mel + 1e-6), per-band mean subtraction over the clip.")

    if ensemble:
        n = len(ensemble["members"])
        member_accs = [m.get("test_accuracy") for m in metadata.get("members", {}).values()]
        head = [
            f"# Gender model (seed ensemble of {n} small ECAPA-TDNNs)",
            "",
            "Predicts the speaker's gender (`male` / `female`) from a 16 kHz mono "
            "speech signal prepared by `pipeline.audio.load_audio` (silence-trimmed, RMS-normalised to "
            f"{metadata['audio_config']['target_rms_dbfs']} dBFS): the mean of the probabilities of {n} networks "
            f"trained with the same recipe and data, seeds {seeds}. It routes each clip to the male or female "
            "emotion model of this project.",
            "",
            "Why an ensemble: single models of this recipe score "
            + (" / ".join(f"{100 * a:.1f}%" for a in member_accs) if None not in member_accs else "differently")
            + " on `test` depending on the seed (`reports/gender_seeds.md`). How a three-seed ensemble compares "
            "with its own members on held-out `val` speakers, clean and under noise: "
            "`reports/gender_ensemble_val.md` (and the rule it was judged by, `reports/gender_ensemble_plan.md`).",
            "",
            "Architecture of each member: " + architecture(
                f"{metadata['n_parameters']:,} parameters in all, {size_mb:.1f} MB of weights"),
            "",
            f"Files: `ensemble.json` (member folders, read by `GenderClassifier.load`), one folder per member "
            f"({', '.join(f'`{m}/`' for m in ensemble['members'])}: `config.json` and `model.safetensors` in the hub "
            "layout, each loadable on its own, and its training `metadata.json`), `metadata.json` (the ensemble's "
            "labels, front end, audio config, training recipe, metrics).",
        ]
    else:
        head = [
            "# Gender model (small ECAPA-TDNN)",
            "",
            "Predicts the speaker's gender (`male` / `female`, logits index 0 / 1) from a 16 kHz mono "
            "speech signal prepared by `pipeline.audio.load_audio` (silence-trimmed, RMS-normalised to "
            f"{metadata['audio_config']['target_rms_dbfs']} dBFS). It routes each clip to the male or female "
            "emotion model of this project.",
            "",
            "Architecture: " + architecture(
                f"{metadata['n_parameters']:,} parameters, model.safetensors {size_mb:.1f} MB"),
            "",
            "Files: `config.json` (widths, read by `ECAPAGender.from_pretrained`), `model.safetensors`, "
            "`metadata.json` (labels, front end, audio config, training history, metrics).",
        ]
    parts = [
        *head,
        "",
        "```python",
        "from pipeline.audio import load_audio",
        "from pipeline.gender import GenderClassifier",
        "clf = GenderClassifier.load()            # this folder",
        "p_male, p_female = clf.predict_proba(load_audio('clip.wav').samples)",
        "```",
        "",
        "## Training data and licences",
        "",
        _data_sentence(metadata),
        "",
        "| corpus/gender | clips fitted |",
        "|---|---:|",
        counts,
        "",
        "Licences of the training data:",
        "",
        *[f"- {c}: {LICENCES.get(c, 'see corpus')}" for c in tr["corpora"]],
        "",
        "**Because the model is trained on RAVDESS, it inherits RAVDESS's CC BY-NC-SA 4.0 terms: "
        "non-commercial use only, and derivatives must be shared alike.** SAVEE, ASED and EMOVO are "
        "released for research use.",
        "",
        f"Training: {tr['optimiser']}; {tr['augmentation']}; {tr['sampling']}; "
        f"{tr['samples_per_epoch']} sampled crops per epoch, batch {tr['batch_size']}, "
        f"seed{'s' if ensemble else ''} {seeds}; torch {metadata['torch_version']}, torchaudio {metadata['torchaudio_version']}; "
        f"{tr['wall_seconds'] / 60:.1f} min wall on {tr.get('threads', '?')} CPU thread(s) "
        f"(audio loading, feature caching and training{', all members' if ensemble else ''}).",
        "",
        *(
            [
                "BatchNorm running statistics re-estimated on clean (un-augmented) train crops after training: "
                + ("used" if tr["bn_recalibration"]["used"] else "not used")
                + f" (val accuracy with them {100 * tr['bn_recalibration']['val_accuracy']:.1f}%; kept only if "
                "validation improves).",
                "",
            ]
            if (tr.get("bn_recalibration") or {}).get("val_accuracy") is not None
            else []
        ),
        *(
            [
                "Validation accuracy per epoch: "
                + ", ".join(f"{100 * h['val_accuracy']:.1f}" for h in tr["history"]) + " (%).",
            ]
            if metadata.get("val_accuracy") is not None
            else []
        ),
        "",
        "Retrain (reads `../shared/data` or `$SER_DATA_DIR`):",
        "",
        "```",
        *(
            [f"python -m training.gender_train --out /tmp/gender_seed{x} --seed {x}" for x in tr["seeds"]]
            + ["python -m training.gender_ensemble --members "
               + " ".join(f"/tmp/gender_seed{x}" for x in tr["seeds"]) + " --out gender_model"]
            if ensemble
            else ["python -m training.gender_train --out gender_model"]
        ),
        "```",
        "",
    ]
    metrics = metadata.get("test_metrics")
    if metrics:
        o = metrics["overall"]
        parts += [
            "## Metrics (test split, speakers unseen in training)",
            "",
            f"Overall accuracy: **{100 * o['accuracy']:.2f}%** ({o['correct']}/{o['n']} clips, "
            f"{metrics['skipped']} skipped by audio checks). Computed by "
            "`training.gender_train.evaluate_gender` on whole clips.",
            "",
            _table(metrics["per_corpus"], "corpus"),
            "",
            _table(metrics["per_gender"], "gender"),
            "",
            "Arousal check (high = angry/happy/fearful/surprised, low = sad/calm/neutral): high-arousal "
            "male and low-arousal female speech are where gender models usually fail.",
            "",
            _table(metrics["arousal"], "group"),
            "",
            _table(metrics["per_gender_emotion"], "gender/emotion"),
            "",
        ]
    parts += [
        "## Known limits",
        "",
        "- Binary self-reported gender labels of the corpora; the model estimates voice "
        "characteristics, not identity, and will misjudge some speakers (e.g. children, "
        "voices outside the training range).",
        "- Trained on adult acted/read speech in English, Amharic and Italian, mostly clean "
        "close-microphone recordings; noisy, far-field, telephone or other-language audio may be less accurate. "
        + _noise_limit(metadata["training"].get("noise_kinds", ["white"])),
        "- The test split holds few speakers per corpus (e.g. SAVEE: one male speaker, no female; "
        "LibriSpeech: 25 readers), so per-corpus numbers have wide confidence intervals.",
        "- Recordings unlike all of the training corpora (another language, microphone, room or speaking style) "
        "are judged much less accurately than the test split suggests: trained without one corpus, this recipe "
        "fell far below its test accuracy on that corpus for two of the three corpora tried. Held-out-corpus "
        "and per-speaker figures are in `reports/gender_holdout.md` of the project (`make gender-holdout`). "
        "The voices misjudged there are mostly pitched unusually for their gender (men above about 165 Hz, "
        "women below it; `reports/corpus_pitch.md`, `make corpus-pitch`).",
        "- Very short clips (< 1 s of speech) are less reliable.",
        "",
    ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gender_model", help="output folder (default: gender_model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--samples-per-epoch", type=int, default=3200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription on a busy 2-core machine)")
    parser.add_argument("--max-rows", type=int, default=None, help="limit rows per split (smoke test)")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split metrics")
    parser.add_argument("--fit-splits", nargs="+", default=["train", "val"], choices=["train", "val"],
                        help="splits to fit on (default: train val, exactly --epochs epochs, last kept; "
                        "train alone selects the best epoch on val)")
    parser.add_argument("--noise", nargs="+", default=["white"], choices=list(NOISE_KINDS),
                        help="noise kinds added to training crops (default: white)")
    parser.add_argument("--keep", choices=["best", "last"], default=None,
                        help="epoch kept by a train-only run (default: best on val; 'last' is the shipped recipe "
                        "with val held out, for unbiased val estimates)")
    parser.add_argument("--channel", type=int, default=0, metavar="N",
                        help="cache N random recording channels per training clip (reverberation, band limit, "
                        "MP3/Opus; training.channel), used for half of the crops (default 0: none)")
    parser.add_argument("--pitch-balance", type=float, default=0.0, metavar="POWER",
                        help="draw rare voice pitches within each gender more often: weight / (share of the "
                        "clip's F0 bin)^POWER (default 0: off; 1: flat)")
    parser.add_argument("--exclude-corpus", nargs="+", default=[], metavar="CORPUS",
                        help="leave these corpora out of fitting and val (held-out-corpus runs)")
    parser.add_argument("--length-report", default=None, metavar="STEM",
                        help="after a train-only run, write its val curve to STEM.md and STEM.json")
    parser.add_argument("--widths", nargs="+", metavar="KEY=VALUE", default=None,
                        help="ECAPA widths (default: " + " ".join(f"{k}={v}" for k, v in SMALL_WIDTHS.items()) + ")")
    args = parser.parse_args(argv)
    widths = None
    if args.widths:
        widths = dict(SMALL_WIDTHS)
        for item in args.widths:
            key, _, value = item.partition("=")
            if key not in SMALL_WIDTHS or not value.isdigit():
                parser.error(f"--widths takes {', '.join(SMALL_WIDTHS)}=INTEGER, got {item!r}")
            widths[key] = int(value)
    if args.length_report and "val" in args.fit_splits:
        parser.error("--length-report needs a train-only run (the val curve is the report)")
    metadata = train_gender(
        args.out,
        seed=args.seed,
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        threads=args.threads,
        evaluate_test=not args.no_test,
        max_rows=args.max_rows,
        widths=widths,
        fit_splits=args.fit_splits,
        noise_kinds=args.noise,
        keep=args.keep,
        exclude_corpora=args.exclude_corpus,
        channel_copies=args.channel,
        pitch_balance_power=args.pitch_balance,
    )
    if args.length_report:
        command = "python -m training.gender_train " + " ".join(argv if argv is not None else sys.argv[1:])
        write_length_report(metadata, args.length_report, command=command)
    return 0


def write_length_report(metadata: dict, stem: str | Path, *, command: str) -> None:
    """Write :func:`length_report` to ``stem.md`` and the run's history to ``stem.json``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(length_report(metadata, command=command), encoding="utf-8")
    tr = metadata["training"]
    payload = {"command": command, "epochs": tr["epochs"], "n_train": tr["n_train"], "n_val": tr["n_val"],
               "history": tr["history"]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
