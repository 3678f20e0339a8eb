"""GE2E embeddings of clips and of their degraded copies, cached (the gender stage's second opinion).

Three caches, all under ``cache/ge2e/`` (used by the GE2E head of the gender recipe,
:mod:`training.gender_second_opinion`, and by the studies of ``studies/gender_fusion``):

* :func:`embed_corpus`: every clip as decoded by :func:`pipeline.audio.load_audio`, keyed by
  manifest path (``embeddings.npz``).
* :func:`embed_fitting_copies`: ``copies`` random degraded copies of every ``train``/``val`` clip
  of the six gender corpora (:func:`degrade`), embedded with the GE2E speaker encoder. Each copy
  is seeded by its clip's path and copy number, so a rebuild gives the same copies.
* :func:`score_test_conditions`: every ``test`` clip of the six corpora under each condition of
  :data:`training.gender_conditions.CONDITIONS` (the evaluation's robustness table, same seeds and
  babble), as its GE2E embedding and the shipped ECAPA's P(female).

A degraded fitting copy (:func:`degrade`): the decoded clip at 16 kHz through a random recording
channel of :mod:`training.channel` (the robust recipe's: reverberation, band limit, MP3/Opus at
a random quality, telephone band p = 0.3, 8-bit PCM p = 0.3), then with probability 0.6 white,
pink or babble noise (equal odds) at U(5, 40) dB SNR against its speech part
(:func:`training.noise.mix_at_snr`), then prepared as any file is. The babble is made of
LibriSpeech readers of the fitting rows, never the evaluation's babble readers.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Sequence, Sized

import numpy as np

SR = 16000
NOISE_PROB = 0.6
NOISE_KINDS = ("white", "pink", "babble")
SNR_RANGE_DB = (5.0, 40.0)
P_TELEPHONE = 0.3
P_PCM_U8 = 0.3


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clip_seed(key: str) -> int:
    """A stable 63-bit seed from a text key (the clip's manifest path and copy number)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little") >> 1


def degrade(y: np.ndarray, seed: int, babble: Sequence[np.ndarray]) -> tuple[np.ndarray, str, str, float | None]:
    """``y`` (decoded float32 ``[shape=(n,)]`` at 16 kHz) through a random channel and noise (module docstring).

    Returns the degraded signal (not yet prepared), the channel's description, the noise kind and its SNR.
    """
    from training.channel import ChannelRecipe, apply_channel, draw_channel
    from training.noise import mix_at_snr, pink_noise

    rng = np.random.default_rng(seed)
    channel = draw_channel(rng, ChannelRecipe(p_telephone=P_TELEPHONE, p_pcm_u8=P_PCM_U8))
    out = apply_channel(y, SR, channel, seed=int(rng.integers(2**31)))
    if rng.random() >= NOISE_PROB:
        return out, channel.describe(), "clean", None
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    snr = float(rng.uniform(*SNR_RANGE_DB))
    noise_seed = int(rng.integers(2**31))
    if kind == "white":
        noise = np.random.default_rng(noise_seed).standard_normal(out.size)
        out = mix_at_snr(out, noise, snr, reference="speech", seed=noise_seed, noise_power=1.0)
    elif kind == "pink":
        out = mix_at_snr(out, pink_noise(out.size, seed=noise_seed), snr, reference="speech", seed=noise_seed,
                         noise_power=1.0)
    else:
        track = babble[int(rng.integers(len(babble)))]
        out = mix_at_snr(out, track, snr, reference="speech", seed=noise_seed)
    return out, channel.describe(), kind, snr


def fitting_babble(rows: Sequence, *, tracks: int = 4, talkers: int = 6, seconds: float = 30.0, seed: int = 0) -> list[np.ndarray]:
    """Babble tracks ``[shape=(seconds * 16000,)]`` of LibriSpeech readers of ``rows``, the study's readers left out."""
    from pipeline.audio import load_audio
    from training.gender_noise import babble_rows
    from training.noise import make_babble, study_babble_rows

    groups = babble_rows(rows, tracks=tracks, talkers=talkers, seed=seed,
                         exclude={u.path for u in study_babble_rows(rows)})
    if not groups:
        raise ValueError("degraded copies need babble: LibriSpeech readers of both genders among the rows")
    return [make_babble([load_audio(u.path).samples for u in group], seconds=seconds, seed=seed + k)
            for k, group in enumerate(groups)]


def _load_npz(path: Path) -> dict:
    if not path.is_file():
        return {}
    stored = np.load(path, allow_pickle=False)
    return {k: stored[k] for k in stored.files}


def embed_corpus(rows: Sequence, cache: Path, *, chunk: int = 32) -> dict:
    """Embeddings of ``rows`` (cached by manifest path). Returns ``{path: vector}``, failures and timing."""
    from pipeline.audio import load_audio
    from pipeline.errors import PipelineError
    from pipeline.speaker_encoder import SpeakerEncoder

    done: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    timing = {"seconds": 0.0, "clips": 0, "audio_s": 0.0}
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        done = dict(zip(stored["paths"].tolist(), stored["embeddings"]))
        failed = dict(zip(stored["failed_paths"].tolist(), stored["failed_reasons"].tolist()))
        timing = json.loads(str(stored["timing"]))
    todo = [u for u in rows if u.relpath not in done and u.relpath not in failed]
    if todo:
        encoder = SpeakerEncoder()
        start, audio_s, n = time.perf_counter(), 0.0, 0
        base = dict(timing)
        for i in range(0, len(todo), chunk):
            batch, signals = [], []
            for u in todo[i:i + chunk]:
                try:
                    signals.append(load_audio(u.path).samples)
                    batch.append(u.relpath)
                except PipelineError as exc:
                    failed[u.relpath] = f"{exc.code}: {exc.message}"
            if signals:
                for path, vector in zip(batch, encoder.embed_many(signals)):
                    done[path] = vector
                audio_s += sum(s.size for s in signals) / 16000
            n, elapsed = min(i + chunk, len(todo)), time.perf_counter() - start
            _log(f"ge2e: {n}/{len(todo)} clips, {n / elapsed:.1f} clips/s, {audio_s / elapsed:.0f} s audio/s, "
                 f"eta {(len(todo) - n) * elapsed / n / 60:.1f} min")
            timing = {"seconds": base["seconds"] + elapsed, "clips": base["clips"] + n,
                      "audio_s": base["audio_s"] + audio_s}
            if (i // chunk) % 20 == 19 or n == len(todo):  # save every 640 clips: a crash loses little
                _save(cache, done, failed, timing)
    return {"vectors": done, "failed": failed, "timing": timing}


def _save(cache: Path, done: dict, failed: dict, timing: dict) -> None:
    _save_npz(cache, paths=np.array(list(done), dtype=str),
              embeddings=np.array(list(done.values()), np.float32).reshape(-1, 256),
              failed_paths=np.array(list(failed), dtype=str), failed_reasons=np.array(list(failed.values()), dtype=str),
              timing=json.dumps(timing))


def _save_npz(cache: Path, **arrays) -> None:
    """Write ``arrays`` to ``cache`` (npz) through a temporary file, so a crash never leaves half a cache."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cache)


def embed_versions(items: Iterable[tuple[str, Callable[[], tuple[np.ndarray, object]]]], cache: Path, *,
                   extra: str, label: str, chunk: int = 32, save_every: int = 640,
                   embed: Callable[[list[np.ndarray]], np.ndarray] | None = None, width: int = 256) -> dict:
    """Embeddings of made signals, cached by key in ``cache`` (npz); the keys already there are not made again.

    Args:
        items: ``(key, make)`` pairs, read once and lazily (a generator of made signals never holds them all);
            ``make()`` returns a prepared 16 kHz float32 signal ``[shape=(n,)]`` and one value recorded beside it
            (``extra``), or raises :class:`pipeline.errors.PipelineError` / ``RuntimeError`` to skip the item (logged).
        extra: the name of those values in the cache and the result.
        embed: signals -> ``[shape=(len, width)]``; default the GE2E speaker encoder (``width`` 256).

    Returns: ``{"keys": [shape=(m,)], "embeddings": [shape=(m, width)] float32, extra: [shape=(m,)]}``.
    """
    from pipeline.errors import PipelineError

    stored = _load_npz(cache)
    keys = list(stored.get("keys", np.array([], str)).tolist())
    vectors = list(stored.get("embeddings", np.zeros((0, width), np.float32)))
    values = list(stored.get(extra, np.array([])).tolist())
    have = set(keys)
    total = len(items) if isinstance(items, Sized) else None
    start, seen, made_n, since_save = time.perf_counter(), 0, 0, 0
    batches = iter(items)
    while True:
        batch, signals, made = [], [], []
        for key, make in batches:
            seen += 1
            if key in have:
                continue
            try:
                signal, value = make()
            except (PipelineError, RuntimeError) as exc:  # parselmouth raises RuntimeError on clips Praat refuses
                _log(f"skipped {key}: {exc}")
                continue
            batch.append(key)
            signals.append(signal)
            made.append(value)
            if len(batch) == chunk:
                break
        if not signals:
            break
        if embed is None:
            from pipeline.speaker_encoder import SpeakerEncoder

            embed = SpeakerEncoder().embed_many
        keys += batch
        vectors += list(np.asarray(embed(signals), np.float32).reshape(-1, width))
        values += made
        made_n, since_save = made_n + len(batch), since_save + len(batch)
        elapsed = time.perf_counter() - start
        if (made_n // chunk) % 10 == 1:
            eta = f", eta {(total - seen) * elapsed / seen / 60:.1f} min" if total else ""
            _log(f"{label}: {seen}/{total or '?'}, {made_n / elapsed:.1f}/s{eta}")
        if since_save >= save_every:
            _save_npz(cache, keys=np.array(keys, str), embeddings=np.asarray(vectors, np.float32).reshape(-1, width),
                      **{extra: np.array(values)})
            since_save = 0
    if made_n:
        _save_npz(cache, keys=np.array(keys, str), embeddings=np.asarray(vectors, np.float32).reshape(-1, width),
                  **{extra: np.array(values)})
        _log(f"{label}: {made_n} made in {time.perf_counter() - start:.0f} s")
    return {"keys": np.array(keys), "embeddings": np.asarray(vectors, np.float32).reshape(-1, width),
            extra: np.array(values)}


def embed_fitting_copies(rows: Sequence, cache: Path, *, copies: int = 2, chunk: int = 32) -> dict:
    """GE2E embeddings of ``copies`` degraded copies of each of ``rows``, cached in ``cache`` (npz).

    Returns ``{"keys": [shape=(m,)] "path#k", "embeddings": [shape=(m, 256)], "noise": [shape=(m,)]}``
    (clips that cannot be decoded are left out and logged).
    """
    from pipeline.audio import DEFAULT_AUDIO_CONFIG, decode_audio, prepare_signal, resample

    config, babble = DEFAULT_AUDIO_CONFIG, []

    def make(u, k: int) -> tuple[np.ndarray, str]:
        if not babble:  # made once, and only when a copy is missing from the cache
            babble.extend(fitting_babble(rows))
        decoded = decode_audio(u.path, mono=True, max_seconds=config.max_duration_s)
        out, _, kind, _ = degrade(resample(decoded.samples, decoded.sample_rate, SR), clip_seed(f"{u.relpath}#{k}"), babble)
        return prepare_signal(out, SR, config=config).samples, kind

    items = [(f"{u.relpath}#{k}", partial(make, u, k)) for u in rows for k in range(copies)]
    return embed_versions(items, cache, extra="noise", label="copies", chunk=chunk, save_every=1280)


def score_test_conditions(rows: Sequence, manifest: Sequence, cache: Path, *, ecapa_dir: Path) -> dict:
    """Every clip of ``rows`` under each robustness condition: GE2E embedding and the ECAPA's P(female).

    Cached in ``cache`` (npz). Returns ``{"keys": "path|condition" [shape=(m,)], "embeddings": [shape=(m, 256)],
    "p_ecapa": [shape=(m,)]}``; a version the preparation refused is left out (counted wrong by the report).
    """
    stored = _load_npz(cache)
    if stored and len(stored["keys"]):
        return stored
    from pipeline.gender import GenderClassifier
    from pipeline.speaker_encoder import SpeakerEncoder
    from training.gender_conditions import condition_batches, study_babble

    ecapa, encoder = GenderClassifier.load(ecapa_dir, second_opinion=False), SpeakerEncoder()
    keys, vectors, probs = [], [], []
    start, done = time.perf_counter(), 0
    for indices, prepared in condition_batches(rows, babble=study_babble(manifest, scored=rows)):
        for condition, signals in prepared.items():
            good = [(i, s) for i, s in zip(indices, signals) if s is not None]
            if not good:
                continue
            clips = [s for _, s in good]
            keys += [f"{rows[i].relpath}|{condition}" for i, _ in good]
            vectors += list(encoder.embed_many(clips))
            probs += list(ecapa.predict_proba_batch(clips)[:, 1])
        done += len(indices)
        elapsed = time.perf_counter() - start
        _log(f"test conditions: {done}/{len(rows)} clips, eta {(len(rows) - done) * elapsed / max(done, 1) / 60:.1f} min")
    out = {"keys": np.array(keys, str), "embeddings": np.asarray(vectors, np.float32).reshape(-1, 256),
           "p_ecapa": np.asarray(probs, np.float64)}
    _save_npz(cache, **out)
    return out


PITCH_SEMITONES = (2.0, 5.0)
"""Range of the pitch move of :func:`pitch_moved`, semitones (up for men, down for women)."""


def pitch_moved(y: np.ndarray, seed: int, gender: str) -> tuple[np.ndarray, float]:
    """``y`` (float32 ``[shape=(n,)]`` at 16 kHz) with its F0 moved towards the other gender, formants kept.

    Praat's PSOLA (``parselmouth``: Manipulation -> pitch tier x 2^(s/12) -> overlap-add resynthesis),
    ``s`` drawn from :data:`PITCH_SEMITONES`, positive for ``"male"``, negative for ``"female"``.
    Returns the moved signal (same length, float32) and ``s``.
    """
    import parselmouth
    from parselmouth.praat import call

    rng = np.random.default_rng(seed)
    s = float(rng.uniform(*PITCH_SEMITONES)) * (1.0 if gender == "male" else -1.0)
    sound = parselmouth.Sound(np.asarray(y, np.float64), SR)
    manipulation = call(sound, "To Manipulation", 0.01, 60, 600)
    tier = call(manipulation, "Extract pitch tier")
    call(tier, "Multiply frequencies", sound.xmin, sound.xmax, 2 ** (s / 12))
    call([tier, manipulation], "Replace pitch tier")
    out = call(manipulation, "Get resynthesis (overlap-add)").values[0]
    out = np.resize(out, y.size) if out.size != y.size else out
    return out.astype(np.float32), s


def embed_pitch_copies(rows: Sequence, cache: Path, *, chunk: int = 32) -> dict:
    """GE2E embeddings of one :func:`pitch_moved` copy of each of ``rows`` (prepared clips), cached in ``cache``.

    Returns ``{"keys": [shape=(m,)] paths, "embeddings": [shape=(m, 256)], "semitones": [shape=(m,)]}``.
    """
    from pipeline.audio import load_audio

    def make(u) -> tuple[np.ndarray, float]:
        return pitch_moved(load_audio(u.path).samples, clip_seed(f"{u.relpath}#pitch"), u.gender)

    return embed_versions([(u.relpath, partial(make, u)) for u in rows], cache, extra="semitones",
                           label="pitch copies", chunk=chunk)
