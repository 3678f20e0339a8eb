"""The web app's models: loaded once per server process, and started before the first visitor asks.

Loading the cascade (TensorFlow, torch, the Whisper encoder) and its first answer take tens of
seconds on a small machine. :class:`ModelLoader` loads a cascade once per set of options and
can start that in a background thread as soon as the page is opened (:meth:`ModelLoader.start`),
together with a warm-up answer on an example clip and the speaker models for long recordings,
so the visitor's first analysis finds everything ready. :meth:`ModelLoader.get` waits for a
load in progress instead of starting a second one. The app keeps one loader per process
(``st.cache_resource``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Hashable


@dataclass(frozen=True)
class CascadeOptions:
    """What a cascade is loaded with: gender model (``None`` = built in), routing, emotion model folders."""

    gender_model: str | None
    routing: str
    male_dir: str
    female_dir: str


def one_torch_thread() -> None:
    """Run the networks on one thread per analysis (the server's sessions run side by side on the cores).

    The speech detector and the speaker and speech encoders make many small calls; with one
    thread per core, on a busy two-core machine every call waits for the other thread: a 77 s
    two-voice recording took 55 s to split into voices on two torch threads against 8.6 s on one
    (measured while two trainings ran). :func:`pipeline.backend.set_threads` sets torch's threads
    where torch runs and the ONNX Runtime sessions' otherwise (it imports no torch on that path).
    """
    from pipeline.backend import set_threads

    set_threads(1)


def load_cascade(options: CascadeOptions):
    from pipeline.cascade import Cascade

    one_torch_thread()
    return Cascade.load(options.gender_model, male_dir=options.male_dir, female_dir=options.female_dir,
                        routing=options.routing)


def warm_up(cascade, example: bytes | None) -> None:
    """One answer on ``example`` and one pass of the speaker models over it (first calls trace the networks).

    Without it a visitor's first answer, and the first long recording's voice step, each wait seconds longer.
    """
    from pipeline.app_voices import SingleThreadVad, speaker_models

    vad, encoder = speaker_models()
    if example is None:
        return
    cascade.predict_files([example], names=["warm-up.flac"])
    from pipeline.audio import decode_audio, resample, to_mono_float
    from pipeline.vad import SAMPLE_RATE

    decoded = decode_audio(example, name="warm-up.flac", mono=True)
    y = resample(to_mono_float(decoded.samples)[0], decoded.sample_rate, SAMPLE_RATE)
    SingleThreadVad(vad).segments(y)
    encoder.embed_many([y])


@dataclass
class ModelLoader:
    """Cascades by :class:`CascadeOptions`, each loaded once; thread-safe.

    Attributes:
        load: ``load(options) -> cascade`` (default :func:`load_cascade`).
        warm: ``warm(cascade)`` run after a background load (default: nothing).
    """

    load: Callable = load_cascade
    warm: Callable | None = None
    _done: dict = field(default_factory=dict)
    _errors: dict = field(default_factory=dict)
    _locks: dict = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def _lock(self, key: Hashable) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def ready(self, options: CascadeOptions) -> bool:
        return options in self._done

    def get(self, options: CascadeOptions):
        """The cascade for ``options``: loaded now, or waited for if a background load is under way.

        Raises whatever loading raised (a failed background load is retried once here).
        """
        if options in self._done:
            return self._done[options]
        with self._lock(options):
            if options not in self._done:
                self._errors.pop(options, None)
                self._done[options] = self.load(options)
            return self._done[options]

    def start(self, options: CascadeOptions) -> None:
        """Load (and warm up) the cascade for ``options`` in a background thread, unless already done or under way.

        The load holds the options' lock from this call on, so a :meth:`get` right after waits for it
        instead of loading a second copy; the warm-up runs after the lock is released.
        """
        if options in self._done:
            return
        lock = self._lock(options)
        if not lock.acquire(blocking=False):  # a load is under way
            return

        def work() -> None:
            try:
                cascade = self._done[options] = self.load(options)
            except Exception as exc:  # noqa: BLE001 - get() retries and shows the error
                self._errors[options] = exc
                return
            finally:
                lock.release()
            if self.warm is not None:  # a visitor's first analysis need not wait for it
                try:
                    self.warm(cascade)
                except Exception:  # noqa: BLE001 - a failed warm-up only costs time later
                    pass

        threading.Thread(target=work, name="ser-model-preload", daemon=True).start()
