"""Files grouped by voice (``script.py --group folder|voice``): one gender per voice, over all its speech.

The scoring pass writes one row per file, each judged alone. This pass then groups the rows:

* ``folder``: the files of one folder are one voice, labelled with the folder's path
  (:func:`folder_label`);
* ``voice``: one GE2E embedding per file (:class:`pipeline.speaker_encoder.SpeakerEncoder`, on
  the file's prepared speech), clustered with :func:`pipeline.voices.cluster_voices` (weights: the
  files' speech durations; small voices are not folded into others, :data:`FILE_MIN_VOICE_S`) and
  labelled ``"A"``, ``"B"``, ... in input order (:func:`pipeline.voices.voice_label`). One speaker
  may come out as several voices (each still one speaker): acted emotions move GE2E embeddings.

Each voice's gender probabilities are the duration-weighted mean of its files' own
(:func:`pipeline.voices.voice_genders`). Every file of the voice then carries the voice's
``gender`` and ``gender_confidence``, and its emotion comes from the emotion model(s) of the voice's
gender, as :meth:`pipeline.prediction.Prediction.set_emotion` routes (hard: that gender's model;
soft: both, weighted by the voice's probabilities). ``gender_prob_male``/``gender_prob_female``
stay the file's own, so grouping can be redone from the rows (``--resume``) and the file's own
evidence is kept. The emotion itself stays the single-clip models' answer: emotion relative to the
voice's baseline was measured and rejected (``studies/voice_baseline``).

Only rows whose routing changes are scored again (their features recomputed, then the needed
emotion model); a failed file keeps its row, with an empty ``voice``. Nothing here writes files:
:func:`group_rows` returns the new rows and ``script.py`` rewrites the CSV atomically.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from pipeline.audio import PreparedAudio, resample
from pipeline.batch import (  # _fmt: the rows' one number format
    _fmt,
    FeatureSettings,
    InputFile,
    featurise_input,
    prediction_row,
    worker_pool,
)
from pipeline.cascade import prepare_source
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.gender import GENDER_LABELS
from pipeline.prediction import Prediction
from pipeline.voices import cluster_voices, voice_genders, voice_label

GROUP_MODES = ("none", "folder", "voice")
"""``none``: every file alone (the default); ``folder``: a folder is a voice; ``voice``: clustered by voice."""

EMOTION_COLUMNS = ("emotion", "emotion_confidence", "emotion_model", *(f"prob_{e}" for e in EMOTION_LABELS))
"""The columns a re-routing rewrites (with ``gender`` and ``gender_confidence``)."""

SPEAKER_SAMPLE_RATE = 16000  #: Hz, what the GE2E encoder reads

FILE_MIN_VOICE_S = 0.0
"""Files are not folded into the nearest voice for want of speech (segments are, below
:data:`pipeline.voices.MIN_VOICE_S` = 3 s): a clip is 1.5-3 s, so folding put lone clips into the other
speaker's voice. Measured on RAVDESS train/val actors 13-18 (the shipped gender model, which saw them,
judged all 360 clips right alone), 200 draws of one man and one woman with k clips each of any
emotion: folding gave 97 of 800 files the wrong gender at k=2, 13 of 1600 at k=4, 1 of 3200 at k=8;
without it 1 of 800, 0 and 0, for 2.65, 3.29 and 3.72 voices per two speakers (folding: 1.76, 2.28,
3.00). Files under :data:`pipeline.voices.MIN_ANCHOR_S` of speech still join the nearest voice."""

MIN_FILES_PER_WORKER = 500
"""A worker process is started per this many files to read again (at most ``jobs``); fewer files are read in
this process. Reading one file again costs about 20-25 ms (decode and GE2E, one thread), while a spawned
worker took 18 s to import its libraries and embed a first clip on the busy 2-core machine."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``"embedding"`` or ``"re-routing"``."""


@dataclass(frozen=True)
class Voice:
    """One voice of a grouping.

    Attributes:
        label: the folder (``folder``) or ``"A"``, ``"B"``, ... in input order (``voice``).
        files: names (CSV ``file``) of its files, in input order.
        speech_s: seconds of speech over its files (their ``speech_duration_s``).
        gender: ``"male"`` / ``"female"``; ``None`` only if no file of it had gender probabilities.
        gender_probabilities: ``{"male": p, "female": 1 - p}``, the duration-weighted mean of its files'.
    """

    label: str
    files: tuple[str, ...]
    speech_s: float
    gender: str | None
    gender_probabilities: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The routing an ok row should carry: its ``voice`` (``""`` alone) and the gender probabilities
    ``{"male": p, "female": 1 - p}`` that choose (hard) or weight (soft) its emotion model."""

    voice: str
    gender_probabilities: dict[str, float]

    @property
    def gender(self) -> str:
        """The more probable gender (``"male"`` on a tie, as :class:`pipeline.cascade.Cascade` decides)."""
        return GENDER_LABELS[int(np.argmax([self.gender_probabilities[g] for g in GENDER_LABELS]))]


@dataclass
class Grouping:
    """What :func:`group_rows` returns.

    Attributes:
        rows: every input's row, in input order (failed files unchanged but for an empty ``voice``).
        voices: the voices found, in order of first file.
        rerouted: names of the files whose emotion was scored again with another model or weights.
        problems: ``{name: reason}`` for ok files that could not be read again (their row is left as it was).
        seconds: wall time of the pass.
    """

    rows: list[dict[str, str]]
    voices: list[Voice]
    rerouted: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _number(text: str | None) -> float:
    try:
        return float(text) if text else float("nan")
    except ValueError:
        return float("nan")


def own_probabilities(row: Mapping[str, str]) -> dict[str, float]:
    """The file's own gender probabilities from its row (``gender_prob_male``/``_female``); ``{}`` if absent."""
    probs = {g: _number(row.get(f"gender_prob_{g}")) for g in GENDER_LABELS}
    return probs if all(np.isfinite(p) for p in probs.values()) else {}


def folder_label(item: InputFile) -> str:
    """The folder of an input as written (normalised: ``in/./a/`` -> ``in/a``; ``"."`` for the working folder)."""
    if item.uri is not None:
        return item.uri.rsplit("/", 1)[0]
    return os.path.normpath(os.path.dirname(os.fspath(item.path)) or ".")


def folder_voices(items: Sequence[InputFile]) -> dict[str, str]:
    """``{name: folder label}``: one voice per folder; two spellings of one folder share the first's label."""
    labels: dict[str, str] = {}
    out = {}
    for item in items:
        label = folder_label(item)
        key = label if item.uri is not None else os.path.abspath(label)
        out[item.name] = labels.setdefault(key, label)
    return out


def cluster_files(names: Sequence[str], embeddings: np.ndarray, speech_s: np.ndarray) -> dict[str, str]:
    """``{name: "A" | "B" | ...}`` from :func:`pipeline.voices.cluster_voices` (no folding: :data:`FILE_MIN_VOICE_S`).

    Args:
        names: the files, in input order.
        embeddings: ``[shape=(len(names), 256)]`` GE2E unit vectors.
        speech_s: ``[shape=(len(names),)]`` speech per file, seconds (short files join the nearest voice).
    """
    labels = cluster_voices(embeddings, speech_s, min_voice_s=FILE_MIN_VOICE_S, centred_threshold=None)
    return {name: voice_label(int(k)) for name, k in zip(names, labels)}


def decide_voices(rows: Sequence[Mapping[str, str]], voice_of: Mapping[str, str]) -> list[Voice]:
    """One :class:`Voice` per label of ``voice_of`` (``{name: label}``), its gender from its files' rows.

    ``rows`` are ok rows in input order; the weights are their ``speech_duration_s`` (seconds).
    """
    mine = [row for row in rows if row["file"] in voice_of]
    order: dict[str, int] = {}
    labels = np.array([order.setdefault(voice_of[row["file"]], len(order)) for row in mine], int)
    durations = np.array([_number(row.get("speech_duration_s")) for row in mine], float)
    durations = np.where(np.isfinite(durations), durations, 0.0)
    female = np.array([own_probabilities(row).get("female", np.nan) for row in mine], float)
    genders = voice_genders(labels, durations, female)
    voices = []
    for label, k in order.items():
        probs = genders[k]
        voices.append(Voice(label=label, files=tuple(row["file"] for row, lab in zip(mine, labels) if lab == k),
                            speech_s=float(durations[labels == k].sum()),
                            gender=Target("", probs).gender if probs else None, gender_probabilities=dict(probs)))
    return voices


def needs_reroute(row: Mapping[str, str], target: Target, routing: str) -> bool:
    """True when the row's emotion was not routed as ``target`` says (another model, or other soft weights)."""
    gender = target.gender
    if routing == "hard":
        return row["emotion_model"] != gender
    return (row["emotion_model"] != "blended" or row["gender"] != gender
            or row["gender_confidence"] != _fmt(target.gender_probabilities[gender]))


def apply_target(row: Mapping[str, str], target: Target, probs_by_gender: Mapping[str, np.ndarray] | None, *,
                 routing: str) -> dict[str, str]:
    """The row routed as ``target``: its voice, the target's gender and confidence, and (when
    ``probs_by_gender``, each gender model's probabilities ``[shape=(8,)]`` for this file, is given)
    the emotion columns from :meth:`Prediction.set_emotion`. ``gender_prob_*`` stay the file's own."""
    gender = target.gender
    out = {**row, "voice": target.voice, "gender": gender,
           "gender_confidence": _fmt(target.gender_probabilities[gender])}
    if probs_by_gender is not None:
        routed = Prediction(gender=gender, gender_probabilities=dict(target.gender_probabilities))
        routed.set_emotion(probs_by_gender, routing=routing, labels=EMOTION_LABELS)
        new = prediction_row(routed)
        out.update({column: new[column] for column in EMOTION_COLUMNS})
    return out


# -- reading the audio again -----------------------------------------------------------------------------------

def prepare_input(item: InputFile, settings: FeatureSettings) -> PreparedAudio:
    """Decode and prepare one input as stage 1 of the scoring pass does (denoised if it was), no features."""
    return prepare_source(item.source(), item.name, settings.audio_config, settings.denoise)


@dataclass(frozen=True)
class FileResult:
    """A worker's answer for one file: ``value`` (an embedding ``[shape=(256,)]`` or features
    ``[shape=(n_features,)]``), or ``error`` (why the file could not be read again)."""

    name: str
    value: np.ndarray | None = None
    error: str = ""


@contextmanager
def single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP and one torch thread here, as in the feature workers: the small mel products and LSTM
    calls of GE2E ran 3-6x slower with two threads on the 2-core machine (measured).

    Torch's thread count is set only where torch is imported (:func:`pipeline.backend.torch_threads`):
    the ONNX path never imports it, and its sessions take their threads when made.
    """
    from threadpoolctl import threadpool_limits

    from pipeline import backend

    with backend.torch_threads(1), threadpool_limits(1):
        yield


_ENCODER = None  # the GE2E encoder of this process, loaded on first use


def _encoder(*, worker: bool = False):
    global _ENCODER
    if _ENCODER is None:
        from pipeline.speaker_encoder import SpeakerEncoder

        if worker:
            from pipeline import backend

            backend.set_threads(1)  # torch where it runs the networks, the ONNX sessions otherwise
        _ENCODER = SpeakerEncoder()
    return _ENCODER


def _failed(item: InputFile, exc: BaseException) -> FileResult:
    return FileResult(item.name, error=f"{type(exc).__name__}: {exc}")


def embed_chunk(items: Sequence[InputFile], settings: FeatureSettings, encoder=None) -> list[FileResult]:
    """GE2E embedding ``[shape=(256,)]`` of each input's prepared speech, the chunk in one
    :meth:`~pipeline.speaker_encoder.SpeakerEncoder.embed_many` call (never raises; a pool worker
    loads its own encoder)."""
    encoder = encoder or _encoder(worker=True)
    out: list[FileResult | None] = [None] * len(items)
    clips, where = [], []
    for i, item in enumerate(items):
        try:
            audio = prepare_input(item, settings)
        except Exception as exc:  # noqa: BLE001 - one file never stops the pass
            out[i] = _failed(item, exc)
            continue
        y = audio.samples
        clips.append(y if audio.sample_rate == SPEAKER_SAMPLE_RATE
                     else resample(y, audio.sample_rate, SPEAKER_SAMPLE_RATE))
        where.append(i)
    try:
        vectors = list(encoder.embed_many(clips))
    except Exception:  # noqa: BLE001 - one clip the encoder refuses: embed them one by one
        vectors = []
        for i, y in zip(where, clips):
            try:
                vectors.append(encoder.embed_utterance(y))
            except Exception as exc:  # noqa: BLE001
                vectors.append(None)
                out[i] = _failed(items[i], exc)
    for i, vector in zip(where, vectors):
        if vector is not None:
            out[i] = FileResult(items[i].name, vector)
    return out


def features_chunk(items: Sequence[InputFile], settings: FeatureSettings) -> list[FileResult]:
    """The scoring pass's features ``[shape=(n_features,)]`` of each input
    (:func:`pipeline.batch.featurise_input`); never raises."""
    out = []
    for item in items:
        done = featurise_input(item, settings)
        out.append(FileResult(item.name, error=done.failure.error or done.failure.status) if done.failure is not None
                   else FileResult(item.name, done.features))
    return out


def _run(work: Callable[..., list[FileResult]], items: Sequence[InputFile], settings: FeatureSettings, *,
         jobs: int, chunk: int, local: Callable[[Sequence[InputFile]], list[FileResult]], stage: str,
         progress: Progress | None) -> Iterator[FileResult]:
    """``work(chunk of items, settings)`` over ``items``, results in order: here (``local``), or in up to
    ``jobs`` spawned workers, one per :data:`MIN_FILES_PER_WORKER` files."""
    total = len(items)
    if progress is not None:
        progress(stage, 0, total)
    chunks = [items[i:i + chunk] for i in range(0, total, chunk)]
    workers = min(jobs, total // MIN_FILES_PER_WORKER)
    if workers <= 1:
        results: Iterable[list[FileResult]] = map(local, chunks)
    else:  # spawned: this process already ran torch and TensorFlow, after which a fork is not safe
        results = _pooled(worker_pool(workers, start_method="spawn"), work, chunks, settings)
    done = 0
    for answers in results:
        yield from answers
        done += len(answers)
        if progress is not None:
            progress(stage, done, total)


def _pooled(pool, work, chunks: list[Sequence[InputFile]], settings: FeatureSettings) -> Iterator[list[FileResult]]:
    """The pool's results in order; if a worker dies, the files not yet answered get its error."""
    done = 0
    with pool:
        try:
            for answers in pool.map(work, chunks, repeat(settings)):
                done += 1
                yield answers
        except Exception as exc:  # noqa: BLE001 - a worker died (out of memory, killed)
            for chunk in chunks[done:]:
                yield [FileResult(item.name, error=f"a worker failed: {type(exc).__name__}: {exc}") for item in chunk]


def group_rows(files: Sequence[InputFile], rows: Mapping[str, dict[str, str]], mode: str, *, routing: str,
               settings: FeatureSettings, emotion_models: Callable[[], Mapping[str, EmotionModel]],
               jobs: int = 1, batch_size: int = 16, encoder=None, progress: Progress | None = None) -> Grouping:
    """Group the rows of ``files`` (``rows``: name -> CSV row) by ``mode`` and route each ok row by its voice.

    Args:
        files: every input, in input order; ``rows`` holds a row for each.
        mode: one of :data:`GROUP_MODES`. ``none`` touches only rows that an earlier grouped run
            left with a voice (``--resume``): they go back to their own gender.
        routing: ``"hard"`` or ``"soft"``, as the scoring pass.
        settings: the scoring pass's stage-1 settings (audio preparation, features, denoising).
        emotion_models: called once, only if some row must be re-routed: ``{"male": ..., "female": ...}``.
        jobs: worker processes for reading the audio again (``1``: this process).
        batch_size: files per emotion-model call.
        encoder: a loaded :class:`~pipeline.speaker_encoder.SpeakerEncoder` for ``jobs == 1`` (default: loaded here).
        progress: ``progress(stage, done, total)``.
    """
    if mode not in GROUP_MODES:
        raise ValueError(f"mode must be one of {GROUP_MODES}, got {mode!r}")
    start = time.perf_counter()
    ok = [f for f in files if rows[f.name]["status"] == "ok" and own_probabilities(rows[f.name])]
    problems: dict[str, str] = {}
    voice_of: dict[str, str] = {}
    if mode == "folder":
        voice_of = folder_voices(ok)
    elif mode == "voice":
        here = encoder or _encoder()  # loaded before the block, so that torch (where it runs) is imported when threads are set
        local = lambda chunk: embed_chunk(chunk, settings, here)
        with single_threaded():
            embedded = {r.name: r for r in _run(embed_chunk, ok, settings, jobs=jobs, chunk=batch_size,
                                                  local=local, stage="embedding", progress=progress)}
        problems.update({name: r.error for name, r in embedded.items() if r.value is None})
        good = [f.name for f in ok if embedded[f.name].value is not None]
        if good:
            vectors = np.stack([embedded[name].value for name in good])
            speech = np.nan_to_num(np.array([_number(rows[name]["speech_duration_s"]) for name in good]))
            voice_of = cluster_files(good, vectors, speech)
    voices = decide_voices([rows[f.name] for f in ok], voice_of)
    by_label = {v.label: v for v in voices}
    targets: dict[str, Target] = {}
    for f in ok:
        row = rows[f.name]
        voice = by_label.get(voice_of.get(f.name, ""))
        if voice is not None and voice.gender is not None:
            targets[f.name] = Target(voice.label, voice.gender_probabilities)
        elif mode != "none" or row["voice"]:  # alone: its own gender (and back from an earlier grouping)
            targets[f.name] = Target("", own_probabilities(row))
    reroute = [f for f in ok if f.name in targets and needs_reroute(rows[f.name], targets[f.name], routing)]
    probs = _emotion_probabilities(reroute, targets, settings, emotion_models, routing=routing, jobs=jobs,
                                   batch_size=batch_size, problems=problems, progress=progress)
    rerouting = {f.name for f in reroute}
    out = []
    for f in files:
        row = rows[f.name]
        if row["status"] != "ok":
            out.append({**row, "voice": ""})
        elif f.name in targets and (f.name not in rerouting or f.name in probs):
            out.append(apply_target(row, targets[f.name], probs.get(f.name), routing=routing))
        else:  # not grouped (mode none), or could not be read again: as it was
            out.append(dict(row))
    return Grouping(out, voices, rerouted=[f.name for f in reroute if f.name in probs], problems=problems,
                    seconds=time.perf_counter() - start)


def _emotion_probabilities(items: Sequence[InputFile], targets: Mapping[str, Target], settings: FeatureSettings,
                           emotion_models: Callable[[], Mapping[str, EmotionModel]], *, routing: str, jobs: int,
                           batch_size: int, problems: dict[str, str],
                           progress: Progress | None) -> dict[str, dict[str, np.ndarray]]:
    """``{name: {gender: probabilities [shape=(8,)]}}`` of the models each item's target needs."""
    if not items:
        return {}
    models = emotion_models()
    out: dict[str, dict[str, np.ndarray]] = {}
    pending: list[FileResult] = []

    def flush() -> None:
        if not pending:
            return
        X = np.stack([r.value for r in pending])
        needed = set(GENDER_LABELS) if routing == "soft" else {targets[r.name].gender for r in pending}
        try:
            probs = {g: models[g].predict_proba(X) for g in needed}
        except Exception as exc:  # noqa: BLE001 - these rows stay as scored, as for an unreadable file
            problems.update({r.name: f"emotion model failed: {exc}" for r in pending})
            pending.clear()
            return
        for i, r in enumerate(pending):
            out[r.name] = {g: p[i] for g, p in probs.items()}
        pending.clear()

    local = lambda chunk: features_chunk(chunk, settings)
    with single_threaded():  # features a batch at a time: memory stays flat
        for result in _run(features_chunk, items, settings, jobs=jobs, chunk=batch_size, local=local,
                           stage="re-routing", progress=progress):
            if result.value is None:
                problems[result.name] = result.error
                continue
            pending.append(result)
            if len(pending) >= batch_size:
                flush()
        flush()
    return out
