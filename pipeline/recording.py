"""A whole recording: who speaks when, and with which emotion (:func:`analyse_recording`).

Steps (all in flat memory: one 16 kHz float32 copy of the recording, 230 MB per hour, and
per-batch work beyond it; no whole-file spectrogram):

1. decode to mono (:func:`pipeline.audio.decode_audio`, no length limit) and resample to 16 kHz;
2. speech segments (:class:`pipeline.vad.SileroVad`: streamed silero-vad, turns over 6 s split
   into 2-6 s pieces);
3. per batch of segments: GE2E embedding (:mod:`pipeline.voices`), and the cascade's own
   per-clip preparation and features plus its gender classifier's probabilities (the
   segment's samples are freed after the batch; only features and probabilities stay);
4. voices: clustering of the embeddings (:func:`pipeline.voices.cluster_voices`), each voice's
   gender from the duration-weighted mean of its segments' gender probabilities. Opt-in
   (``diarization=DiarizationConfig()``): the first cut guards one voice (or, with
   ``DiarizationConfig(one_voice_model=ONE_VOICE_MODEL)``, a learnt decision; with ``keep_first_cut``
   too, the default's voices when its first cut already splits); when it hears more,
   the speech found at a lower silero threshold is embedded in 1.5 s windows, grouped by
   spectral clustering and re-segmented (:mod:`pipeline.diarize`), and the segments are runs
   of one voice, cut to 2-6 s;
5. emotion per segment from the emotion model of its *voice's* gender (``routing="soft"``
   blends both with the voice's gender probabilities).

Nothing is lost: a segment the cascade cannot judge (too short after trimming, ...) keeps its
voice and gets a non-ok :class:`~pipeline.cascade.Prediction`; a recording without speech,
or one that cannot be decoded, gets a :class:`Recording` with that ``status`` and no segments.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import numpy as np

from pipeline.audio import AudioSource, decode_audio, resample, to_mono_float, validate_rate
from pipeline.prediction import Prediction
from pipeline.emotion import EMOTION_LABELS, EmotionModel
from pipeline.errors import NoSpeechError, SilentAudioError, TooShortError
from pipeline.gender import GENDER_LABELS, GenderClassifier
from pipeline.diarize import ROOM_CONVERSATION, DiarizationConfig, speech_windows, voice_path, window_voices
from pipeline.resegment import Window, carry_voices, hmm_resegment, resegment
from pipeline.vad import SAMPLE_RATE, SileroVad, SpeechRegion, regions_from_probabilities, split_long
from pipeline.voices import (CLUSTER_THRESHOLD, VoiceSummary, cluster_voices, embed_segments, summarise_voices,
                             voice_genders, voice_label)

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.speaker_encoder import SpeakerEncoder

class Models(Protocol):
    """What :func:`analyse_recording` needs of the loaded models: a :class:`pipeline.cascade.Cascade`
    in practice. A protocol rather than an import, so that the cascade (whose
    ``analyse_recording`` method calls this module) is the only side that imports the other."""

    routing: str
    gender: GenderClassifier
    emotion_models: Mapping[str, EmotionModel]

    def featurise_signal(self, y: np.ndarray, sr: int, *, name: str | None = None) -> Any: ...


DIARIZATION: DiarizationConfig | None = None
"""How voices are found by default: ``None``, whole segments and :func:`pipeline.voices.cluster_voices`.

The window path (``diarization=DiarizationConfig()``) passed its round's rule in
``studies/room_conversations`` (round 3) but lost gender per voice (dev 80.3% -> 74.8%) and
corpus-clip conversations (DER 15.3% -> 18.3%) in the full study, so it is opt-in. Round 7's
:data:`pipeline.diarize.ROOM_CONVERSATION` is better on conversations in one room but splits more
monologues and calls one real three-person recording one voice, which round 6's rule forbids for the
default: it is the ``room`` choice of :data:`VOICE_MODES`."""

VOICE_MODES: dict[str, DiarizationConfig | None] = {"auto": DIARIZATION, "room": ROOM_CONVERSATION}
"""Named ways of finding voices, for the fronts: ``auto`` (the default, :data:`DIARIZATION`) and ``room``
(:data:`pipeline.diarize.ROOM_CONVERSATION`, for a conversation of several people recorded in one room)."""

MIN_RECORDING_S = 0.25  #: shorter inputs are refused as ``too_short``
SILENCE_PEAK = 10 ** (-80 / 20)  #: below this peak (-80 dBFS) the recording is ``silent``


@dataclass
class SegmentResult:
    """One speech segment of a recording.

    Attributes:
        start_s, end_s: seconds from the start of the recording.
        voice: the voice label (``"A"``, ``"B"``, ...; see :attr:`Recording.voices`).
        prediction: the cascade's answer for the segment; its ``gender`` and
            ``gender_probabilities`` are the *voice's* (which chose the emotion model).
        segment_gender_probabilities: the gender classifier on this segment alone
            (``{}`` when the segment could not be judged).
    """

    start_s: float
    end_s: float
    voice: str
    prediction: Prediction
    segment_gender_probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Recording:
    """The result of :func:`analyse_recording`.

    Attributes:
        duration_s: length of the recording in seconds (``None`` if it could not be decoded).
        status: ``"ok"``, ``"no_speech"`` (silence, noise or music only), or the code of the
            :class:`~pipeline.errors.PipelineError` that stopped it (``unreadable``, ``empty``,
            ``silent``, ``too_short``, ``non_finite``, ...).
        error: human-readable message; ``""`` when ``status == "ok"``.
        segments: time-ordered :class:`SegmentResult` s (empty unless ``ok``).
        voices: one :class:`~pipeline.voices.VoiceSummary` per voice, in order of first speech.
        file: the name the input came from, if any.
    """

    duration_s: float | None
    status: str = "ok"
    error: str = ""
    segments: list[SegmentResult] = field(default_factory=list)
    voices: list[VoiceSummary] = field(default_factory=list)
    file: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def speech_s(self) -> float:
        return float(sum(s.duration_s for s in self.segments))


def analyse_recording(cascade: Models, source: AudioSource | np.ndarray, sr: int | None = None, *,
                      name: str | None = None, progress: Callable[[int, int], None] | None = None,
                      vad: SileroVad | None = None, encoder: "SpeakerEncoder | None" = None,
                      threshold: float = CLUSTER_THRESHOLD, batch_size: int = 32,
                      diarization: DiarizationConfig | None = DIARIZATION) -> Recording:
    """Segments, voices, gender per voice and emotion per segment of a recording of any length.

    Args:
        cascade: loaded models (:class:`pipeline.cascade.Cascade`).
        source: a path, bytes or binary file object (``sr=None``), or a signal
            ``np.ndarray [shape=(n,), (n, channels) or (channels, n)]`` of any real dtype with ``sr``.
        sr: sample rate of a signal in Hz; ``None`` when ``source`` is a file.
        name: carried into :attr:`Recording.file` (default: the path, if any).
        progress: ``progress(done, total)`` over the segments, after each batch
            (first called with ``done=0`` once the speech segments are known).
        vad, encoder: loaded models to reuse (default: loaded here, about 0.2 s).
        threshold: cosine distance of the first average-linkage cut over whole segments
            (default :data:`pipeline.voices.CLUSTER_THRESHOLD`): the one-voice guard, or with
            ``diarization=None`` the first cut of :func:`pipeline.voices.cluster_voices`.
        batch_size: segments per model call (memory vs. speed; results do not depend on it).
        diarization: ``None`` (default, :data:`DIARIZATION`): whole VAD segments grouped by
            :func:`pipeline.voices.cluster_voices`. A :class:`pipeline.diarize.DiarizationConfig`:
            the first cut guards one voice (or, with ``one_voice_model``, a logistic regression over
            the window embeddings decides); when it hears more, 1.5 s windows, a spectral voice
            count and re-segmentation give the segments (:mod:`pipeline.diarize`).

    Never raises for bad audio: the :class:`Recording` carries the status.
    """
    if name is None and isinstance(source, (str, os.PathLike)):
        name = str(source)
    duration_s = None
    try:
        y, duration_s = _load(source, sr, name=name)
        vad = vad or SileroVad()
        probs = vad.probabilities(y)
        regions = split_long(regions_from_probabilities(probs, y.size, vad.config), y, vad.config)
        if not regions:
            raise NoSpeechError("no speech found: the recording holds only silence, noise or other sounds")
        if encoder is None:
            from pipeline.speaker_encoder import SpeakerEncoder

            encoder = SpeakerEncoder()
        embeddings = labels = None
        if diarization is not None:
            embeddings = embed_segments(encoder, y, regions, batch=batch_size)
            durations = np.array([r.duration_s for r in regions])
            first = int(cluster_voices(embeddings, durations, threshold=threshold, centred_threshold=None).max()) + 1
            def windowed() -> tuple[list[SpeechRegion], list[Window], np.ndarray]:
                speech = regions_from_probabilities(probs, y.size, replace(vad.config, threshold=diarization.vad_threshold))
                return (speech, *_window_embeddings(y, speech, encoder, diarization, batch_size))

            # the learnt decision needs the windows first; the first cut alone does not
            speech, windows, X = windowed() if diarization.one_voice_model is not None else ([], [], None)
            path = voice_path(first, X, windows, sum(r.duration_s for r in speech), diarization)
            if path == "one":
                labels = np.zeros(len(regions), int)  # one voice: the whole segments, as the first cut finds them
            elif path == "windows" or (diarization.segments_hmm and diarization.hmm is not None):
                if X is None:
                    speech, windows, X = windowed()
                carried = None
                if path == "segments":  # the default pipeline's voices, re-segmented over the windows
                    carried = carry_voices(regions, cluster_voices(embeddings, durations, threshold=threshold), windows, X)
                regions, labels = _voice_segments(y, speech, windows, X, vad, diarization, window_labels=carried)
                embeddings = None
            # "segments" (keep_first_cut): labels stay None, the default pipeline's voices over the whole segments
        return _analyse(cascade, y, regions, duration_s, name=name, progress=progress, encoder=encoder,
                        threshold=threshold, batch_size=batch_size, labels=labels, embeddings=embeddings)
    except Exception as exc:  # one bad recording never stops the caller
        failure = Prediction.failure(exc)
        return Recording(duration_s=duration_s, status=failure.status, error=failure.error, file=name)


def _load(source, sr: int | None, *, name: str | None) -> tuple[np.ndarray, float]:
    """Decode/validate -> ``(y [shape=(n,)] float32 at 16 kHz, duration in seconds)``."""
    if sr is None:
        decoded = decode_audio(source, name=name, mono=True)
        mono, rate = decoded.samples, validate_rate(decoded.sample_rate)
        if mono.ndim != 1:
            mono, _ = to_mono_float(mono)
    else:
        rate = validate_rate(sr)
        mono, _ = to_mono_float(source)  # empty, non-finite and non-numeric inputs raise here
    duration_s = mono.size / rate
    if duration_s < MIN_RECORDING_S:
        raise TooShortError(f"recording lasts {duration_s * 1000:.0f} ms; at least "
                            f"{MIN_RECORDING_S * 1000:.0f} ms is needed")
    if float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise SilentAudioError("the recording is silent (peak below -80 dBFS): there is no sound to analyse")
    return resample(mono, rate, SAMPLE_RATE), duration_s


def _window_embeddings(y: np.ndarray, speech: list[SpeechRegion], encoder: "SpeakerEncoder", config: DiarizationConfig,
                       batch_size: int) -> tuple[list[Window], np.ndarray]:
    """The windows of the speech regions (:func:`pipeline.diarize.speech_windows`) and their GE2E embeddings."""
    windows = speech_windows(speech, window_s=config.window_s, hop_s=config.hop_s)
    X = np.zeros((len(windows), 256), np.float32)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        X[start:start + len(chunk)] = encoder.embed_many([y[w.samples(SAMPLE_RATE)] for w in chunk])
    return windows, X


def _voice_segments(y: np.ndarray, speech: list[SpeechRegion], windows: list[Window], X: np.ndarray, vad: SileroVad,
                    config: DiarizationConfig, window_labels: np.ndarray | None = None) -> tuple[list[SpeechRegion], np.ndarray]:
    """Speech regions and their window embeddings -> time-ordered segments of one voice each (2-6 s pieces) and voices.

    The windows' voices are ``window_labels`` or :func:`pipeline.diarize.window_voices`'; then
    :func:`pipeline.resegment.resegment` or, with ``config.hmm``, :func:`pipeline.resegment.hmm_resegment`; long
    runs cut by :func:`pipeline.vad.split_long`; voices numbered by first speech.
    """
    if window_labels is None:
        window_labels = window_voices(X, windows, config)
    if config.hmm is None:
        runs = resegment(speech, windows, X, window_labels, step_s=config.step_s, min_run_s=config.min_run_s)
    else:
        runs = hmm_resegment(speech, windows, X, window_labels, config.hmm, step_s=config.step_s,
                             min_run_s=config.min_run_s).segments
    regions: list[SpeechRegion] = []
    voices: list[int] = []
    for run in runs:
        pieces = split_long([run.region], y, vad.config)
        regions += pieces
        voices += [run.voice] * len(pieces)
    _, first = np.unique(voices, return_index=True)
    order = np.argsort(np.argsort(first))  # voice -> rank of its first speech
    return regions, order[np.unique(voices, return_inverse=True)[1]]


def _analyse(cascade: Models, y: np.ndarray, regions: list[SpeechRegion], duration_s: float, *, name, progress,
             encoder, threshold: float, batch_size: int, labels: np.ndarray | None = None,
             embeddings: np.ndarray | None = None) -> Recording:
    """Per segment: GE2E embedding (unless given), features, gender; then voices (unless ``labels`` are given) and emotion."""
    n = len(regions)
    if progress is not None:
        progress(0, n)
    given = embeddings is not None
    if not given:
        embeddings = np.zeros((n, 256), np.float32)
    female = np.full(n, np.nan)
    features: dict[int, np.ndarray] = {}
    failures: dict[int, Prediction] = {}
    speech: dict[int, float | None] = {}
    for start in range(0, n, batch_size):
        batch = list(range(start, min(n, start + batch_size)))
        if not given:
            embeddings[batch] = embed_segments(encoder, y, [regions[i] for i in batch], batch=batch_size)
        prepared = {}
        for i in batch:
            item = cascade.featurise_signal(y[regions[i].samples()], SAMPLE_RATE)
            if item.failure is not None:
                failures[i] = item.failure
            else:
                prepared[i] = item.audio.samples
                features[i] = item.features
                speech[i] = item.audio.speech_duration_s
        if prepared:
            try:
                # a fused gender stage reuses the segments' GE2E embeddings instead of computing them again
                probs = cascade.gender.predict_proba_batch(list(prepared.values()), embeddings=embeddings[list(prepared)])
                female[list(prepared)] = probs[:, GENDER_LABELS.index("female")]
            except Exception as exc:
                for i in prepared:
                    failures[i] = Prediction.failure(exc)
                    features.pop(i)
        del prepared
        if progress is not None:
            progress(batch[-1] + 1, n)

    durations = np.array([r.duration_s for r in regions])
    if labels is None:
        labels = cluster_voices(embeddings, durations, threshold=threshold)
    genders = voice_genders(labels, durations, female)
    voices = summarise_voices(regions, labels, genders)
    predictions = _emotions(cascade, regions, labels, genders, features, failures, speech)
    segments = [SegmentResult(r.start_s, r.end_s, voice_label(int(labels[i])), predictions[i],
                              {} if np.isnan(female[i]) else {"male": 1.0 - float(female[i]), "female": float(female[i])})
                for i, r in enumerate(regions)]
    return Recording(duration_s=duration_s, segments=segments, voices=voices, file=name)


def _emotions(cascade: Models, regions, labels, genders, features, failures, speech) -> list[Prediction]:
    """One :class:`Prediction` per segment; emotion from the model(s) of the segment's voice's gender."""
    out: list[Prediction] = []
    for i, r in enumerate(regions):
        if i in failures:
            bad = failures[i]
            out.append(Prediction(status=bad.status, error=bad.error, duration_s=r.duration_s))
        else:
            probs = genders[int(labels[i])]
            out.append(Prediction(duration_s=r.duration_s, speech_duration_s=speech[i], gender_probabilities=dict(probs),
                                  gender=max(GENDER_LABELS, key=lambda g: probs[g])))
    ok = sorted(features)
    if not ok:
        return out
    X = np.stack([features[i] for i in ok])
    needed = set(GENDER_LABELS) if cascade.routing == "soft" else {out[i].gender for i in ok}
    try:
        emotion = {g: cascade.emotion_models[g].predict_proba(X) for g in needed}
    except Exception as exc:
        for i in ok:
            out[i] = Prediction.failure(exc, duration_s=regions[i].duration_s)
        return out
    for row, i in enumerate(ok):
        out[i].set_emotion({name: probs[row] for name, probs in emotion.items()}, routing=cascade.routing,
                           labels=EMOTION_LABELS)
    return out

