"""Synthetic conversations from corpus clips, with their reference turns (for studies/diarization).

:func:`make_conversation` draws 2-4 speakers (mixed genders, or all the same), then alternating
turns (never the same speaker twice in a row, every speaker at least twice) of 1-8 s built from
the speaker's clips (leading/trailing silence trimmed, concatenated, cut to length), separated
by 0.2-2 s pauses with a -70 dBFS noise floor. Speakers come from one corpus when it has enough
of the genders drawn, else from all corpora of the pool. Deterministic for a given ``rng`` state.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from training.corpus import Utterance

SR = 16000
TURNS = {2: 12, 3: 14, 4: 16}  #: turns per conversation by number of voices


@dataclass
class Conversation:
    """A conversation: ``samples [shape=(n,)]`` float32 at 16 kHz and its reference.

    Attributes:
        turns: ``(start_s, end_s, speaker)`` in time order.
        genders: speaker -> ``"male"``/``"female"``.
        corpora: corpus of each speaker.
        same_gender: all speakers of one gender.
    """

    samples: np.ndarray
    turns: list[tuple[float, float, str]]
    genders: dict[str, str]
    corpora: dict[str, str] = field(default_factory=dict)
    same_gender: bool = False

    @property
    def n_voices(self) -> int:
        return len(self.genders)


class ClipCache:
    """Trimmed clips per path, read on first use (float32, 16 kHz)."""

    def __init__(self) -> None:
        self._clips: dict[str, np.ndarray] = {}

    def get(self, u: Utterance) -> np.ndarray:
        key = str(u.path)
        if key not in self._clips:
            import librosa
            import soundfile as sf

            y, sr = sf.read(key, dtype="float32", always_2d=False)
            if y.ndim > 1:
                y = y.mean(axis=1)
            assert sr == SR, f"{key}: {sr} Hz"
            trimmed, _ = librosa.effects.trim(y, top_db=30)
            self._clips[key] = trimmed / max(1e-6, float(np.max(np.abs(trimmed)))) * 0.5
        return self._clips[key]


def speaker_speech(rng: np.random.Generator, utts: list[Utterance], cache: ClipCache, n_samples: int) -> np.ndarray:
    """``n_samples`` of one speaker's speech ``[shape=(<= n_samples,)]``: their trimmed clips in random order,
    concatenated and cut (shorter only if all their clips, eight times over, are shorter)."""
    parts, have = [], 0
    for j in rng.permutation(len(utts)).tolist() * 8:
        clip = cache.get(utts[j])
        parts.append(clip)
        have += clip.size
        if have >= n_samples:
            break
    return np.concatenate(parts)[:n_samples]


def _pick_speakers(rng: np.random.Generator, speakers: dict[str, list[Utterance]], k: int, same: bool):
    by_corpus_gender: dict[tuple[str, str], list[str]] = defaultdict(list)
    for spk, utts in sorted(speakers.items()):
        by_corpus_gender[utts[0].corpus, utts[0].gender].append(spk)
    if same:
        gender = ["male", "female"][rng.integers(2)]
        need = {gender: k}
    else:
        n_f = int(rng.integers(1, k))
        need = {"female": n_f, "male": k - n_f}
    corpora = sorted({c for c, _ in by_corpus_gender})
    feasible = [c for c in corpora if all(len(by_corpus_gender[c, g]) >= n for g, n in need.items())]
    chosen = []
    if feasible:
        corpus = feasible[rng.integers(len(feasible))]
        for g, n in need.items():
            chosen += list(rng.choice(by_corpus_gender[corpus, g], n, replace=False))
    else:
        for g, n in need.items():
            pool = sorted(s for (c, gg), ss in by_corpus_gender.items() if gg == g for s in ss)
            chosen += list(rng.choice(pool, n, replace=False))
    return [str(s) for s in chosen]


def make_conversation(rng: np.random.Generator, speakers: dict[str, list[Utterance]], cache: ClipCache, *,
                      k: int | None = None, same_gender: bool | None = None) -> Conversation:
    """One conversation from ``speakers`` (speaker -> their utterances); see the module docstring."""
    k = int(rng.integers(2, 5)) if k is None else k
    same = bool(rng.random() < 0.4) if same_gender is None else same_gender
    chosen = _pick_speakers(rng, speakers, k, same)
    n_turns = TURNS[k]
    order = list(rng.permutation(chosen))
    while len(order) < n_turns:
        order.append(str(rng.choice([s for s in chosen if s != order[-1]])))
    order = [str(s) for s in order]
    gains = {s: 10 ** (rng.uniform(-6, 0) / 20) for s in chosen}
    pieces, turns, t = [], [], 0.0
    floor = 10 ** (-70 / 20)
    for i, spk in enumerate(order):
        if i:
            pause = int(rng.uniform(0.2, 2.0) * SR)
            pieces.append((floor * rng.standard_normal(pause)).astype(np.float32))
            t += pause / SR
        turn = speaker_speech(rng, speakers[spk], cache, int(rng.uniform(1.0, 8.0) * SR)) * gains[spk]
        pieces.append(turn.astype(np.float32))
        turns.append((t, t + turn.size / SR, spk))
        t += turn.size / SR
    first = {s: speakers[s][0] for s in chosen}
    return Conversation(np.concatenate(pieces), turns, {s: first[s].gender for s in chosen},
                        {s: first[s].corpus for s in chosen}, same)
