"""Batch scoring: find audio files, score them, write one CSV row per file.

Shared by ``script.py`` (both engines: :class:`LocalEngine` here, Ray in
:mod:`pipeline.ray_engine`) and the web app so all produce the same table: a row is
always :func:`prediction_row` of the :class:`~pipeline.cascade.Prediction` that
:meth:`Cascade.score <pipeline.cascade.Cascade.score>` gives for the
:func:`featurise_input` of a file. Rows are written and flushed as they complete, so
an interrupted run leaves a valid CSV; :func:`read_done` lets a later run resume
without redoing them.
"""
from __future__ import annotations

import csv
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from pipeline.audio import AUDIO_EXTENSIONS, AudioConfig
from pipeline.cascade import Cascade, Featurised, Prediction, featurise_source
from pipeline.denoise import DenoiseConfig
from pipeline.emotion import EMOTION_LABELS
from pipeline.gender import GENDER_LABELS

CSV_COLUMNS: tuple[str, ...] = (
    "file", "voice", "status", "error", "duration_s", "gender", "gender_confidence", "emotion",
    "emotion_confidence", "emotion_model",
    *(f"prob_{label}" for label in EMOTION_LABELS),
    *(f"gender_prob_{label}" for label in GENDER_LABELS),
    "speech_duration_s",
)


@dataclass(frozen=True)
class InputFile:
    """An audio file to score: ``path`` on disk (or ``uri``), ``name`` as written in the CSV.

    ``uri`` (``s3://...``, ``gs://...``, ``file:///...``) is set for files that pyarrow's
    file systems read; ``path`` is then ``Path(uri)``, for display only.
    """

    path: Path
    name: str
    uri: str | None = None

    def source(self):
        """What :func:`pipeline.audio.decode_audio` reads: the path, or the bytes behind ``uri``."""
        if self.uri is None:
            return self.path
        return _read_uri(self.uri)


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` inputs (read with pyarrow's file systems), not for local paths."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def _read_uri(uri: str) -> bytes:
    """The bytes of one file behind a URI (a missing one fails as ``not_found``, like a path)."""
    from pyarrow import fs

    from pipeline.errors import FileAccessError

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_file(path) as handle:
            return handle.read()
    except FileNotFoundError:
        raise FileAccessError("file not found (it may have been moved or deleted)", path=uri) from None
    except (OSError, ValueError) as exc:
        raise FileAccessError(f"cannot read {uri}: {exc}", path=uri) from None


def _discover_uri(uri: str, *, recursive: bool) -> list[InputFile]:
    """Audio files under a URI folder (sorted, named relative to it), or the one file it names."""
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"cannot open {uri}: {exc}") from None
    if info.type == fs.FileType.File:
        return [InputFile(Path(root), uri, uri)]
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError(f"no such file or folder: {uri}")
    base = uri.rstrip("/")
    prefix = root.rstrip("/") + "/"
    entries = []
    for entry in filesystem.get_file_info(fs.FileSelector(root, recursive=recursive)):
        if entry.type == fs.FileType.File and is_audio_name(entry.base_name):
            relative = entry.path[len(prefix):] if entry.path.startswith(prefix) else entry.base_name
            entries.append(InputFile(Path(entry.path), relative, f"{base}/{relative}"))
    return sorted(entries, key=lambda entry: entry.name)


def read_list(list_file: str | os.PathLike) -> list[InputFile]:
    """The inputs named in a text file, one path or URI a line, in order.

    Blank lines and lines starting with ``#`` are skipped. A relative path is taken
    relative to the list file's folder; the CSV names each file as written in the list.
    Entries are not checked here: a missing file gets its own row (``not_found``).

    Raises:
        FileNotFoundError: the list file itself cannot be read.
    """
    list_path = Path(list_file)
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read the list {list_file}: {exc.strerror or exc}") from None
    found = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if is_uri(entry):
            found.append(InputFile(Path(entry), entry, entry))
        else:
            path = Path(entry).expanduser()
            found.append(InputFile(path if path.is_absolute() else list_path.parent / path, entry))
    return found


def is_audio_name(name: str) -> bool:
    """True if ``name`` ends with a known audio extension (any case)."""
    return name.lower().endswith(AUDIO_EXTENSIONS)


def discover(inputs: Sequence[str | os.PathLike], *, recursive: bool = False,
             lists: Sequence[str | os.PathLike] = ()) -> list[InputFile]:
    """List the audio files named by ``inputs`` (files, folders, URIs) and ``lists``, in a stable order.

    Folders contribute files with an audio extension (case-insensitive), sorted
    by relative path; with ``recursive`` their sub-folders too (symbolic links to
    folders are not followed, so link loops are harmless). Files named directly
    are always included, whatever their extension. In the CSV a file inside a
    given folder is named relative to that folder; a file given directly keeps
    the path as given. Each file appears once. A URI (``s3://bucket/folder``,
    ``file:///data/x.wav``) is listed with pyarrow's file systems, the same way; the
    files of each list file (:func:`read_list`) follow the inputs.

    Raises:
        FileNotFoundError: an input or a list file does not exist.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    listed = [entry for list_file in lists for entry in read_list(list_file)]
    for item in [*inputs, *listed]:
        if isinstance(item, InputFile):
            entries = [item]
        elif is_uri(str(item)):
            entries = _discover_uri(str(item), recursive=recursive)
        else:
            entries = _discover_path(item, recursive=recursive)
        for entry in entries:
            key = entry.uri or os.path.abspath(entry.path)
            if key not in seen:
                seen.add(key)
                found.append(entry)
    return found


def _discover_path(item: str | os.PathLike, *, recursive: bool) -> list[InputFile]:
    root = Path(item)
    if root.is_dir():
        entries: list[InputFile] = []
        if recursive:
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames.sort()
                for filename in filenames:
                    if is_audio_name(filename):
                        path = Path(dirpath) / filename
                        entries.append(InputFile(path, path.relative_to(root).as_posix()))
        else:
            for path in root.iterdir():
                if is_audio_name(path.name) and not path.is_dir():
                    entries.append(InputFile(path, path.name))
        entries.sort(key=lambda entry: entry.name)
    elif root.exists() or root.is_symlink():
        entries = [InputFile(root, str(item))]
    else:
        raise FileNotFoundError(f"no such file or folder: {item}")
    return entries


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def prediction_row(prediction: Prediction, *, name: str | None = None) -> dict[str, str]:
    """The CSV row (column -> text) for one prediction."""
    row = {
        "file": name if name is not None else (prediction.file or ""),
        "voice": "",  # set by script.py --group (pipeline.grouping); one file alone has no voice label
        "status": prediction.status,
        "error": prediction.error,
        "duration_s": _fmt(prediction.duration_s, 3),
        "gender": prediction.gender or "",
        "gender_confidence": _fmt(prediction.gender_confidence),
        "emotion": prediction.emotion or "",
        "emotion_confidence": _fmt(prediction.emotion_confidence),
        "emotion_model": prediction.emotion_model or "",
        "speech_duration_s": _fmt(prediction.speech_duration_s, 3),
    }
    for label in EMOTION_LABELS:
        row[f"prob_{label}"] = _fmt(prediction.emotion_probabilities.get(label))
    for label in GENDER_LABELS:
        row[f"gender_prob_{label}"] = _fmt(prediction.gender_probabilities.get(label))
    return row


@dataclass(frozen=True)
class FeatureSettings:
    """What stage 1 (decode, prepare, features) needs: known before any model is loaded."""

    audio_config: AudioConfig
    feature_config: object
    denoise: DenoiseConfig | None = None
    encoder: bool = False  #: append the pooled speech-encoder states (an emotion model reads them)

    @classmethod
    def of(cls, cascade: Cascade) -> "FeatureSettings":
        return cls(cascade.audio_config, cascade.feature_config, cascade.denoise, cascade.reads_encoder)

    @classmethod
    def from_model_dirs(cls, male_dir: str | os.PathLike, female_dir: str | os.PathLike, *,
                        denoise: DenoiseConfig | bool | None = None) -> "FeatureSettings | None":
        """Read from the emotion models' ``config.json`` alone (no TensorFlow); ``None`` if unreadable.

        ``None`` also when the two folders disagree: :meth:`Cascade.load` then reports why.
        """
        import json

        from pipeline.emotion import CONFIG_FILE, EmotionModelConfig

        try:
            configs = [EmotionModelConfig.from_dict(json.loads((Path(d) / CONFIG_FILE).read_text(encoding="utf-8")))
                       for d in (male_dir, female_dir)]
        except Exception:  # noqa: BLE001 - the model loader gives the real message
            return None
        male, female = configs
        if (male.audio_config, male.feature_config) != (female.audio_config, female.feature_config):
            return None
        return cls(male.audio_config, male.feature_config, DenoiseConfig() if denoise is True else (denoise or None),
                   male.encoder is not None or female.encoder is not None)


def featurise_input(item: InputFile, settings: FeatureSettings) -> Featurised:
    """Stage 1 for one input file (never raises): the same for every engine and worker."""
    try:
        source = item.source()
    except Exception as exc:  # an unreadable URI: its own row, like a missing path
        return Featurised(item.name, failure=Prediction.failure(exc, file=item.name))
    return featurise_source(source, item.name, settings.audio_config, settings.feature_config, settings.denoise,
                            settings.encoder)


def _init_worker(parent_pid: int | None = None) -> None:
    """Feature workers use one BLAS/OpenMP thread each (the pool already fills the cores), and
    end with their parent: a scorer killed outright (SIGKILL, out of memory) must not leave idle
    workers holding memory. On Linux the kernel sends them SIGTERM when the parent dies
    (``PR_SET_PDEATHSIG``); a parent already gone by then ends the worker at once."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    os.environ["SER_ENCODER_THREADS"] = "1"  # the speech encoder, if stage 1 runs it here (pipeline.whisper_encoder)
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(0)


def worker_pool(jobs: int, *, start_method: str | None = None):
    """A ``ProcessPoolExecutor`` of ``jobs`` workers set up as :func:`_init_worker` says.

    ``start_method`` (``"spawn"``, ...) for a pool started after torch or TensorFlow ran here
    (forking then is unsafe); ``None`` is the platform's default (fork on Linux).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context(start_method) if start_method else None
    return ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(os.getpid(),),
                               mp_context=context)


class LocalEngine:
    """This machine: stage 1 in ``jobs`` worker processes, the models in this process.

    Created before the models load (from :meth:`FeatureSettings.from_model_dirs`), it
    starts decoding the first batches at once, so a short job's features are ready
    when the models are (the cold start overlaps). With ``jobs == 1`` or ``settings``
    unknown it does nothing until :meth:`results`. Results equal ``jobs == 1`` up to
    floating-point rounding (about 1e-7).
    """

    def __init__(self, files: Sequence[InputFile], settings: FeatureSettings | None = None, *,
                 batch_size: int = 16, jobs: int = 1) -> None:
        self.chunks = [list(files[i:i + batch_size]) for i in range(0, len(files), batch_size)]
        self.settings = settings
        self.pooled = jobs > 1 and len(files) > 0
        self.workers = max(1, min(jobs, len(files)))  # one file still gets a worker: it overlaps the load
        self._pool = None
        self._ahead: list = []
        if self.pooled and settings is not None:
            self._start()

    def _start(self) -> None:
        self._pool = worker_pool(self.workers)
        self._ahead = [self._submit(c) for c in self.chunks[:2]]

    def _submit(self, chunk: list[InputFile]) -> list:
        return [self._pool.submit(featurise_input, f, self.settings) for f in chunk]

    def results(self, cascade: Cascade) -> Iterator[tuple[InputFile, Prediction]]:
        """Yield ``(file, prediction)`` for every file, in order, ``batch_size`` per model call."""
        if self.settings != FeatureSettings.of(cascade):  # unknown, or not what the models expect
            self.close()
            self.settings = FeatureSettings.of(cascade)
            if self.pooled:
                self._start()
        if self._pool is None:
            for chunk in self.chunks:
                yield from zip(chunk, cascade.score([featurise_input(f, self.settings) for f in chunk]))
            return
        from pipeline.backend import torch_threads

        # the workers take the other cores; more torch threads oversubscribe them (ONNX sessions fix theirs at load)
        with torch_threads(1):
            for k, chunk in enumerate(self.chunks):
                futures = self._ahead.pop(0)
                if k + 2 < len(self.chunks):
                    self._ahead.append(self._submit(self.chunks[k + 2]))
                items = []
                for f, future in zip(chunk, futures):
                    try:
                        items.append(future.result())
                    except Exception as exc:  # a worker died: only this file fails
                        items.append(Featurised(f.name, failure=Prediction.failure(exc, file=f.name)))
                yield from zip(chunk, cascade.score(items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, []

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score(cascade: Cascade, files: Sequence[InputFile], *, batch_size: int = 16,
          jobs: int = 1) -> Iterator[tuple[InputFile, Prediction]]:
    """Yield ``(file, prediction)`` for every file, in order, scoring ``batch_size`` at a time.

    With ``jobs > 1``, decoding and feature extraction (stage 1) run in that many
    worker processes, ahead of the models (stage 2) in this process (:class:`LocalEngine`).
    """
    with LocalEngine(files, FeatureSettings.of(cascade), batch_size=batch_size, jobs=jobs) as engine:
        yield from engine.results(cascade)


class CsvSink:
    """Append rows to a CSV file, flushing and fsyncing after each write (crash-safe).

    ``columns`` defaults to :data:`CSV_COLUMNS` (one row per file); ``script.py --segments``
    passes :data:`pipeline.segments_csv.SEGMENT_COLUMNS`.
    """

    def __init__(self, path: Path, *, append: bool = False, columns: Sequence[str] = CSV_COLUMNS) -> None:
        self.path = path
        new = not (append and path.exists() and path.stat().st_size > 0)
        self._handle: TextIO = open(path, "a" if not new else "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=list(columns), extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._flush()

    def write(self, row: dict[str, str]) -> None:
        self._writer.writerow(row)
        self._flush()

    def write_many(self, rows: Iterable[dict[str, str]]) -> None:
        """Append several rows, then flush once (a batch at a time: a kill loses at most a cut line)."""
        self._writer.writerows(rows)
        self._flush()

    def _flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "CsvSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_done(path: Path) -> dict[str, dict[str, str]]:
    """Rows already in an existing output CSV, keyed by ``file`` (for ``--resume``).

    A last line cut short by a kill (wrong column count) is ignored and dropped.
    """
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path} was not written by this version of script.py (columns differ)")
        return {row["file"]: row for row in reader if None not in row.values() and None not in row}


def rewrite(path: Path, rows: Iterable[dict[str, str]], *, columns: Sequence[str] = CSV_COLUMNS) -> None:
    """Atomically replace ``path`` with ``rows`` under the header ``columns`` (default: one row per file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
