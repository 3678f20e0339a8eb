"""``script.py --engine ray``: the batch scorer on a Ray cluster (Ray Data batch inference).

The work is the local engine's, split the same way and computed by the same functions:

* stage 1, :func:`pipeline.batch.featurise_input` (decode, prepare, features), runs in
  Ray tasks (``map_batches`` over the file list, one CPU each);
* stage 2, :meth:`Cascade.score <pipeline.cascade.Cascade.score>` and
  :func:`pipeline.batch.prediction_row`, runs in a pool of model actors that load the
  models once and score ``batch_size`` files per call;
* the driver (``script.py``) iterates the streamed rows and appends them to the CSV.

``--segments`` has no stage 1: a pool of segment actors analyses whole recordings, one per call
(:func:`pipeline.segments_csv.analyse_input`, the local engine's function), and the driver writes
each recording's rows together.

Nothing here schedules, queues or retries by itself: Ray Data streams the blocks,
backpressures, retries a task whose worker died (Ray's default ``max_retries``) and
restarts a dead actor and resubmits its batch (Ray Data's defaults for actor pools:
``max_restarts=-1``, ``max_task_retries=-1``). Every input
carries its index; the driver yields each index once, so a retried batch never gives a
second row.

The models travel with the job: the driver reads the model folders and hands their bytes
to the actors, which write them to a temporary folder and load them from there; the
``pipeline`` package is shipped as a ``py_modules`` runtime environment. Workers need the
same Python libraries as the driver (``requirements.txt``). See ``docs/ray.md``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import ray  # ImportError without Ray: script.py says how to install it

from pipeline.batch import FeatureSettings, InputFile, featurise_input, prediction_row
from pipeline.errors import ModelError

PACKAGE_DIR = Path(__file__).resolve().parent
WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "KERAS_BACKEND", "HF_HUB_OFFLINE", "HF_HOME")
"""Environment variables passed on to the workers when the driver has them set."""
ACTOR_MEMORY_BYTES = 1536 * 2**20
"""Memory each model actor reserves: the shipped models resident (about 1.4 GB, TensorFlow and
torch included). Reserving it also keeps Ray Data from fusing stage 1 into the actors (it
fuses operators whose resource requests are equal), so decoding stays in tasks."""


class EngineError(RuntimeError):
    """Ray could not be reached, or the run failed on the cluster (the rows written so far stay)."""


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder``, by relative POSIX path (model folders are a few MB)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


@dataclass(frozen=True)
class ModelSpec:
    """The models of a run, as they travel to the actors.

    ``gender`` is the gender folder's files, or a hub id that every actor loads itself;
    ``male`` and ``female`` are the emotion folders' files. ``settings`` is what stage 1
    needs, read from the emotion models' ``config.json``.
    """

    gender: dict[str, bytes] | str
    male: dict[str, bytes]
    female: dict[str, bytes]
    settings: FeatureSettings
    routing: str = "hard"
    device: str = "cpu"
    denoise: bool = False

    @classmethod
    def from_args(cls, gender_model: str | os.PathLike | None, *, male_dir: str | os.PathLike,
                  female_dir: str | os.PathLike, routing: str = "hard", device: str = "cpu",
                  denoise: bool = False) -> "ModelSpec":
        """Read the model folders on the driver (no TensorFlow or torch here).

        Raises:
            ModelError: an emotion folder is missing or its ``config.json`` unreadable.
        """
        from pipeline.gender import DEFAULT_GENDER_MODEL_DIR

        for folder in (male_dir, female_dir):
            if not Path(folder).is_dir():
                raise ModelError(f"emotion model folder {folder} does not exist")
        settings = FeatureSettings.from_model_dirs(male_dir, female_dir, denoise=denoise)
        if settings is None:
            raise ModelError(f"the config.json of {male_dir} or {female_dir} is unreadable, or they differ")
        gender_dir = Path(gender_model) if gender_model is not None else DEFAULT_GENDER_MODEL_DIR
        gender = _folder_bytes(gender_dir) if gender_dir.is_dir() else os.fspath(gender_model)
        return cls(gender, _folder_bytes(Path(male_dir)), _folder_bytes(Path(female_dir)), settings,
                   routing=routing, device=device, denoise=denoise)

    def load(self):
        """The :class:`~pipeline.cascade.Cascade`, from a temporary copy of the folders (removed after)."""
        from pipeline.cascade import Cascade

        root = Path(tempfile.mkdtemp(prefix="ser-models-"))
        try:
            gender = (_write_folder(root / "gender", self.gender) if isinstance(self.gender, dict)
                      else self.gender)
            return Cascade.load(gender, male_dir=_write_folder(root / "male", self.male),
                                female_dir=_write_folder(root / "female", self.female),
                                routing=self.routing, device=self.device, denoise=self.denoise)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class RaySettings:
    """How the run uses the cluster (``script.py --ray-*`` flags)."""

    address: str | None = None
    """``auto``, ``HOST:PORT``, or ``None`` to start a private Ray on this machine."""
    actors: int | None = None
    """Model actors; ``None``: a quarter of the cluster's CPUs, at least 1."""
    cpus_per_actor: float = 1.0
    batch_size: int = 16
    progress: bool = False


_THREADS_LIMITED = False


def featurise_batch(batch: dict[str, np.ndarray], settings: FeatureSettings) -> dict[str, np.ndarray]:
    """Stage 1 of a batch of inputs (a Ray task): each one's pickled :class:`Featurised`."""
    global _THREADS_LIMITED
    if not _THREADS_LIMITED:  # one BLAS/OpenMP thread per task: Ray already gives each task a CPU
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        _THREADS_LIMITED = True
    out = []
    for path, name, uri in zip(batch["path"], batch["name"], batch["uri"]):
        item = InputFile(Path(str(path)), str(name), str(uri) if uri else None)
        out.append(pickle.dumps(featurise_input(item, settings), protocol=pickle.HIGHEST_PROTOCOL))
    return {"index": batch["index"], "featurised": np.array(out, dtype=object)}


class ModelActor:
    """Stage 2 (a Ray actor): loads the models once, then scores a batch of featurised inputs per call."""

    def __init__(self, spec: "ModelSpec | ray.ObjectRef", threads: int = 1) -> None:
        from pipeline.backend import set_threads

        set_threads(threads)  # torch's pool, or the ONNX sessions that spec.load() makes
        if isinstance(spec, ray.ObjectRef):
            spec = ray.get(spec)
        self.cascade = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(blob) for blob in batch["featurised"]]
        predictions = self.cascade.score(items)
        rows = [json.dumps(prediction_row(p, name=item.name)) for p, item in zip(predictions, items)]
        return {"index": batch["index"], "row": np.array(rows, dtype=object)}


class SegmentActor:
    """``--segments`` (a Ray actor): loads the models, the speech detector and the speaker encoder once,
    then analyses whole recordings, one per input of a batch (:func:`pipeline.segments_csv.analyse_input`)."""

    def __init__(self, spec: "ModelSpec | ray.ObjectRef", threads: int = 1, batch_size: int = 16,
                 voices: str = "auto") -> None:
        from pipeline.backend import set_threads
        from pipeline.speaker_encoder import SpeakerEncoder
        from pipeline.vad import SileroVad

        set_threads(threads)
        if isinstance(spec, ray.ObjectRef):
            spec = ray.get(spec)
        self.cascade = spec.load()
        self.vad, self.encoder = SileroVad(), SpeakerEncoder()
        self.batch_size = batch_size
        self.voices = voices

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from pipeline.segments_csv import analyse_input

        out = []
        for path, name, uri in zip(batch["path"], batch["name"], batch["uri"]):
            item = InputFile(Path(str(path)), str(name), str(uri) if uri else None)
            rows = analyse_input(self.cascade, item, vad=self.vad, encoder=self.encoder, batch_size=self.batch_size,
                                 voices=self.voices)
            out.append(json.dumps(rows))
        return {"index": batch["index"], "rows": np.array(out, dtype=object)}


class RayEngine:
    """A connection to Ray for one run: ``with RayEngine(spec, settings) as engine: engine.rows(files)``."""

    def __init__(self, spec: ModelSpec, settings: RaySettings = RaySettings()) -> None:
        self.spec = spec
        self.settings = settings
        self._started = False
        self._spec_ref = None

    def __enter__(self) -> "RayEngine":
        env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        runtime_env = {"py_modules": [str(PACKAGE_DIR)], "env_vars": env}
        options: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False,
                                   "logging_level": logging.WARNING}
        if self.settings.address:
            options["address"] = self.settings.address
        else:
            options.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
        try:
            ray.init(**options)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError: all mean no cluster
            where = self.settings.address or "this machine"
            raise EngineError(f"could not start or reach Ray on {where}: {type(exc).__name__}: {exc}") from None
        self._started = True
        # The models go to the object store once; this reference keeps them there for actor restarts.
        self._spec_ref = ray.put(self.spec)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._spec_ref = None
            ray.shutdown()
            self._started = False

    def plan(self, *, stage1: bool = True) -> tuple[int, float]:
        """``(actors, cpus_per_actor)`` for this cluster, leaving at least one CPU to stage 1.

        ``stage1=False`` (``--segments``: the actors do all the work): by default an actor per
        ``cpus_per_actor`` CPUs of the cluster, and none is left over.

        Raises:
            EngineError: the actors would take every CPU (the run could never start a task).
        """
        cpus = float(ray.cluster_resources().get("CPU", 0))
        per_actor = self.settings.cpus_per_actor
        if not stage1:
            actors = self.settings.actors or max(1, int(cpus // per_actor))
            if actors * per_actor > cpus:
                raise EngineError(f"{actors} actor(s) x {per_actor:g} CPU need more than the cluster's {cpus:g} "
                                  "CPUs; lower --ray-actors or --ray-cpus-per-actor")
            return actors, per_actor
        actors = self.settings.actors or max(1, int(cpus // 4))
        if actors * per_actor > cpus - 1:
            raise EngineError(f"{actors} actor(s) x {per_actor:g} CPU leave no CPU for decoding on a cluster of "
                              f"{cpus:g} CPUs; lower --ray-actors or --ray-cpus-per-actor")
        return actors, per_actor

    def dataset(self, files: Sequence[InputFile]):
        """The Ray Data plan: file list -> featurise tasks -> model actors -> rows ``{index, row}``."""
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = self.settings.progress
        context.execution_options.preserve_order = False  # the driver restores the input order
        logging.getLogger("ray.data").setLevel(logging.INFO if self.settings.progress else logging.WARNING)
        actors, per_actor = self.plan()
        size = self.settings.batch_size
        items = [{"index": i, "path": str(f.path), "name": f.name, "uri": f.uri or ""} for i, f in enumerate(files)]
        blocks = max(1, math.ceil(len(items) / size))
        return (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(featurise_batch, fn_kwargs={"settings": self.spec.settings}, batch_size=size,
                         batch_format="numpy", num_cpus=1)
            .map_batches(ModelActor, fn_constructor_kwargs={"spec": self._spec_ref, "threads": int(per_actor)},
                         compute=ray.data.ActorPoolStrategy(size=actors), batch_size=size, batch_format="numpy",
                         num_cpus=per_actor, memory=ACTOR_MEMORY_BYTES)
        )

    def segment_dataset(self, files: Sequence[InputFile], voices: str = "auto"):
        """The ``--segments`` plan: file list -> segment actors (a recording per call) -> ``{index, rows}``;
        ``voices``: a key of :data:`pipeline.recording.VOICE_MODES`."""
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = self.settings.progress
        context.execution_options.preserve_order = False
        logging.getLogger("ray.data").setLevel(logging.INFO if self.settings.progress else logging.WARNING)
        actors, per_actor = self.plan(stage1=False)
        items = [{"index": i, "path": str(f.path), "name": f.name, "uri": f.uri or ""} for i, f in enumerate(files)]
        return (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map_batches(SegmentActor, fn_constructor_kwargs={"spec": self._spec_ref, "threads": int(per_actor),
                                                              "batch_size": self.settings.batch_size,
                                                              "voices": voices},
                         compute=ray.data.ActorPoolStrategy(size=actors), batch_size=1, batch_format="numpy",
                         num_cpus=per_actor, memory=ACTOR_MEMORY_BYTES)
        )

    def rows(self, files: Sequence[InputFile]) -> Iterator[tuple[InputFile, dict[str, str]]]:
        """Yield ``(file, CSV row)`` for each of ``files`` once, in the order they finish."""
        yield from self._once(files, self.dataset, "row")

    def segment_rows(self, files: Sequence[InputFile],
                     voices: str = "auto") -> Iterator[tuple[InputFile, list[dict[str, str]]]]:
        """``--segments``: yield ``(file, its segment rows)`` for each of ``files`` once, in the order they finish."""
        yield from self._once(files, lambda todo: self.segment_dataset(todo, voices), "rows")

    def _once(self, files: Sequence[InputFile], plan, column: str) -> Iterator[tuple[InputFile, Any]]:
        """Run ``plan(files)`` and yield each input's ``column`` (JSON) once, whatever Ray retried."""
        if not files:
            return
        seen: set[int] = set()
        try:
            for batch in plan(files).iter_batches(batch_size=None, batch_format="numpy"):
                for index, value in zip(batch["index"], batch[column]):
                    if int(index) not in seen:
                        seen.add(int(index))
                        yield files[int(index)], json.loads(value)
        except Exception as exc:  # RayTaskError, UserCodeException, an actor that never starts, ...
            if isinstance(exc, EngineError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"the Ray run failed: {first}") from None
