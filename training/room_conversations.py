"""Conversations that sound like one room: shared room, microphone, noise and codec (studies/room_conversations).

:func:`make_room_conversation` draws 1-6 speakers of one split (same gender in a third of the
multi-speaker ones), lays their turns on one timeline (0.3-10 s turns, log-uniform; gaps from
-1 s, an overlap, to 1.5 s; short back-channels over another speaker's turn), then puts every
speaker through **one** simulated room (``pyroomacoustics.ShoeBox``, image-source method; each
speaker at its own spot 0.5-3 m from the single microphone), adds **one** background noise (pink,
babble of readers not in the conversation, or none) at one SNR against the speech
(:func:`training.noise.mix_at_snr`), and passes the mixture through **one** codec
(:func:`training.channel.encode_decode`: none, MP3 or Opus). The reference turns keep overlaps.
Deterministic for a given ``rng`` state; clips come from :class:`training.conversations.ClipCache`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.conversations import ClipCache, _pick_speakers, speaker_speech
from training.corpus import Utterance

SR = 16000
SPEAKER_COUNTS = (1, 2, 3, 4, 5, 6)
SPEAKER_PROBS = (0.15, 0.35, 0.20, 0.15, 0.10, 0.05)
TURN_S = (0.3, 10.0)            #: turn length range, log-uniform, seconds
GAP_S = (0.1, 1.5)              #: pause between turns, seconds
OVERLAP_S = (0.3, 2.0)          #: how far a turn starts before the previous one ends, seconds
BACKCHANNEL_S = (0.3, 0.8)      #: length of a back-channel, seconds
BACKCHANNEL_P = 0.10            #: share of turns that get a back-channel from another speaker
ROOM_M = ((3.0, 8.0), (3.0, 6.0), (2.5, 3.5))  #: room length, width, height ranges, metres
RT60_S = (0.2, 0.8)
DISTANCE_M = (0.5, 3.0)         #: speaker to microphone
SNR_DB = (5.0, 30.0)
NOISES = ("none", "pink", "babble")
CODECS = ("none", "mp3", "opus")


@dataclass
class RoomConversation:
    """A conversation in one room: ``samples [shape=(n,)]`` float32 at 16 kHz and its reference.

    Attributes:
        turns: ``(start_s, end_s, speaker)`` in order of start, overlaps and back-channels included.
        genders: speaker -> ``"male"``/``"female"``; corpora: speaker -> corpus.
        same_gender: every speaker of one gender (False for one speaker).
        room: what was drawn (dimensions, RT60, distances, noise, SNR, codec), for reports.
    """

    samples: np.ndarray
    turns: list[tuple[float, float, str]]
    genders: dict[str, str]
    corpora: dict[str, str] = field(default_factory=dict)
    same_gender: bool = False
    room: dict = field(default_factory=dict)

    @property
    def n_voices(self) -> int:
        return len(self.genders)

    @property
    def overlap_share(self) -> float:
        """Share of the speech time (union of turns) where two or more speakers talk, 0..1."""
        return overlap_share(self.turns)


def overlap_share(turns: list[tuple[float, float, str]], *, step_s: float = 0.01) -> float:
    """Share of the union of ``turns`` covered by two or more of them (10 ms frames)."""
    if not turns:
        return 0.0
    n = int(np.ceil(max(e for _, e, _ in turns) / step_s)) + 1
    count = np.zeros(n, np.int32)
    for s, e, _ in turns:
        count[int(round(s / step_s)):int(round(e / step_s))] += 1
    speech = int((count > 0).sum())
    return float((count > 1).sum() / speech) if speech else 0.0


def _speech(rng: np.random.Generator, utts: list[Utterance], cache: ClipCache, seconds: float) -> np.ndarray:
    """``seconds`` of one speaker's speech (:func:`training.conversations.speaker_speech`), float32."""
    return speaker_speech(rng, utts, cache, max(1, int(seconds * SR))).astype(np.float32)


def _timeline(rng: np.random.Generator, chosen: list[str], seconds: float) -> list[tuple[float, float, str]]:
    """Turns ``(start_s, end_s, speaker)`` of about ``seconds``: alternating speakers, overlaps, back-channels."""
    p_overlap = float(rng.uniform(0.2, 0.6)) if len(chosen) > 1 else 0.0
    turns: list[tuple[float, float, str]] = []
    t, previous = 0.0, None
    while t < seconds:
        speaker = chosen[0] if len(chosen) == 1 else str(rng.choice([s for s in chosen if s != previous]))
        length = float(np.exp(rng.uniform(np.log(TURN_S[0]), np.log(TURN_S[1]))))
        if turns and rng.random() < p_overlap:
            last = turns[-1][1] - turns[-1][0]
            start = t - min(float(rng.uniform(*OVERLAP_S)), 0.5 * last, 0.5 * length)
        else:
            start = t + (float(rng.uniform(*GAP_S)) if turns else 0.0)
        turns.append((start, start + length, speaker))
        if len(chosen) > 1 and length > 1.5 and rng.random() < BACKCHANNEL_P:
            other = str(rng.choice([s for s in chosen if s != speaker]))
            b_len = float(rng.uniform(*BACKCHANNEL_S))
            b_start = start + float(rng.uniform(0.3, length - b_len - 0.2))
            turns.append((b_start, b_start + b_len, other))
        t, previous = max(t, start + length), speaker
    return sorted(turns)


def _room_responses(rng: np.random.Generator, n_sources: int) -> tuple[list[np.ndarray], dict]:
    """One impulse response per source in one simulated room (single microphone), and the room drawn."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(*r) for r in ROOM_M])
    rt60 = float(rng.uniform(*RT60_S))
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=SR, materials=pra.Material(absorption), max_order=min(int(max_order), 10))
    mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(0.8, 1.5)])
    room.add_microphone(mic)
    distances = []
    for _ in range(n_sources):
        for _ in range(100):  # a spot inside the room at the drawn distance
            d = float(rng.uniform(*DISTANCE_M))
            angle = float(rng.uniform(0, 2 * np.pi))
            pos = mic + np.array([d * np.cos(angle), d * np.sin(angle), float(rng.uniform(-0.3, 0.4))])
            if np.all(pos > 0.2) and np.all(pos < dims - 0.2):
                break
        else:
            pos = dims / 2
            d = float(np.linalg.norm(pos - mic))
        room.add_source(pos)
        distances.append(round(d, 2))
    room.compute_rir()
    responses = [np.asarray(room.rir[0][k], np.float64) for k in range(n_sources)]
    return responses, {"dims_m": [round(float(x), 2) for x in dims], "rt60_s": round(rt60, 2), "distances_m": distances}


def make_room_conversation(rng: np.random.Generator, speakers: dict[str, list[Utterance]], cache: ClipCache, *,
                           k: int | None = None, same_gender: bool | None = None, seconds: float = 60.0,
                           babble_pool: dict[str, list[Utterance]] | None = None) -> RoomConversation:
    """One conversation of ``speakers`` (speaker -> utterances, one split) in one room; see the module docstring.

    Args:
        k: number of speakers (default drawn from :data:`SPEAKER_PROBS`).
        same_gender: all of one gender (default: a third of multi-speaker conversations).
        seconds: length of the timeline before the room's tail, about the conversation's length.
        babble_pool: speakers for babble noise (default ``speakers``); the conversation's own are never used.
    """
    from scipy.signal import fftconvolve

    from training.channel import encode_decode
    from training.noise import make_babble, mix_at_snr, pink_noise

    k = int(rng.choice(SPEAKER_COUNTS, p=SPEAKER_PROBS)) if k is None else int(k)
    same = (bool(rng.random() < 1 / 3) if same_gender is None else bool(same_gender)) and k > 1
    if k == 1:
        chosen = [str(rng.choice(sorted(speakers)))]
    else:
        chosen = _pick_speakers(rng, speakers, k, same)
    turns = _timeline(rng, chosen, seconds)
    gains = {s: 10 ** (rng.uniform(-6, 0) / 20) for s in chosen}
    responses, room = _room_responses(rng, len(chosen))
    n = int(np.ceil(max(e for _, e, _ in turns) * SR)) + SR // 2
    mixture = np.zeros(n, np.float64)
    for spk, rir in zip(chosen, responses):
        dry = np.zeros(n, np.float64)
        for s, e, who in turns:
            if who == spk:
                piece = _speech(rng, speakers[spk], cache, e - s) * gains[spk]
                i = int(round(s * SR))
                dry[i:i + piece.size] += piece[:n - i]
        mixture += fftconvolve(dry, rir)[:n]
    noise = NOISES[int(rng.integers(len(NOISES)))]
    snr = float(rng.uniform(*SNR_DB))
    if noise == "pink":
        mixture = mix_at_snr(mixture.astype(np.float32), pink_noise(n, seed=int(rng.integers(2**31))), snr,
                             reference="speech", seed=int(rng.integers(2**31)), noise_power=1.0)
    elif noise == "babble":
        pool = babble_pool or speakers
        others = sorted(s for s in pool if s not in chosen)
        talkers = [_speech(rng, pool[str(s)], cache, 10.0) for s in rng.choice(others, min(6, len(others)), replace=False)]
        mixture = mix_at_snr(mixture.astype(np.float32), make_babble(talkers, seconds=n / SR, seed=int(rng.integers(2**31))),
                             snr, reference="speech", seed=int(rng.integers(2**31)))
    mixture = np.asarray(mixture, np.float64)
    mixture *= 0.5 / max(1e-9, float(np.max(np.abs(mixture))))
    codec = CODECS[int(rng.integers(len(CODECS)))]
    level = float(rng.uniform(0.4, 0.95))
    if codec != "none":
        mixture = encode_decode(mixture.astype(np.float32), SR, codec=codec, level=level)
    room.update(noise=noise, snr_db=round(snr, 1) if noise != "none" else None, codec=codec,
                codec_level=round(level, 2) if codec != "none" else None)
    first = {s: speakers[s][0] for s in chosen}
    return RoomConversation(np.asarray(mixture, np.float32), turns, {s: first[s].gender for s in chosen},
                            {s: first[s].corpus for s in chosen}, same, room)
