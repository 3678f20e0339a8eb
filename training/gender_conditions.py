"""Degraded copies of a clip, and the gender model's accuracy on each (the gender robustness table).

The gender stage should give the same answer on a clip however it reaches the app. Each
condition of :data:`CONDITIONS` turns a decoded 16 kHz mono float32 signal into another one of
the same rate and length, as a user's degraded file would decode; :func:`score_conditions`
then prepares every version exactly as the evaluation prepares a file
(:func:`pipeline.audio.decode_audio` with ``mono=True``, then :func:`pipeline.audio.prepare_signal`)
and counts right answers and answers that changed from the clean clip's.

* ``pcm_u8``: 8-bit unsigned PCM, written with libsndfile (WAV, ``PCM_U8``) and read back:
  at most 256 levels, quantisation noise about 48 dB below full scale.
* ``telephone_8k``: resampled to 8 kHz (soxr, :func:`pipeline.audio.resample`), band-passed
  to the 300-3400 Hz telephone band (4th-order Butterworth, causal, at 8 kHz), resampled back to 16 kHz.
* ``mp3_32k`` / ``opus_16k``: encoded with PyAV (FFmpeg's libmp3lame at 32 kbit/s CBR in an MP3
  file, libopus at 16 kbit/s in an Ogg file) and decoded by the runtime's own
  :func:`pipeline.audio.decode_audio`. :mod:`training.channel`'s codec path (libsndfile) sets a
  quality level, not a bit rate, so it cannot make these two files. The decoded MP3 is aligned;
  the decoded Opus lags by 6.5 ms (libsndfile does not drop the encoder's 312-sample pre-skip
  at 16 kHz), which a user's Opus file would too.
* ``pink_10db`` / ``babble_10db``: pink noise or babble at 10 dB SNR against the speech part of the
  clip, by :func:`training.noise.corrupt` (the project's one mixer,
  :func:`training.noise.mix_at_snr` with ``reference="speech"``). The babble is
  :func:`study_babble`: the six LibriSpeech ``train`` readers the gender robustness study uses
  and gender training never uses as noise (:func:`training.noise.study_babble_rows`).

Every condition is deterministic for a given ``seed`` (only the noisy ones use it).
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SR = 16000
"""Sample rate of every signal here, Hz."""

CONDITIONS = ("clean", "pcm_u8", "telephone_8k", "mp3_32k", "opus_16k", "pink_10db", "babble_10db")
"""The conditions of the robustness table, ``clean`` first."""

DESCRIPTIONS = {
    "clean": "as recorded",
    "pcm_u8": "8-bit unsigned PCM WAV (level kept)",
    "telephone_8k": "8 kHz, 300-3400 Hz band",
    "mp3_32k": "MP3 32 kbit/s CBR",
    "opus_16k": "Opus 16 kbit/s",
    "pink_10db": "pink noise, 10 dB SNR",
    "babble_10db": "6-talker babble, 10 dB SNR",
}
"""One-line description of each condition, for the report tables."""

CODEC_SETTINGS = {"mp3_32k": ("mp3", "libmp3lame", "fltp", 32000), "opus_16k": ("ogg", "libopus", "flt", 16000)}
"""Codec conditions: (PyAV container, encoder, sample format, bit rate in bit/s)."""

SNR_DB = 10.0


def apply_condition(y: np.ndarray, condition: str, *, seed: int = 0, babble: np.ndarray | None = None) -> np.ndarray:
    """``y`` (float ``[shape=(n,)]``, 16 kHz mono) under ``condition``: float32 ``[shape=(n,)]`` at 16 kHz.

    ``babble`` (float ``[shape=(m,)]``, 16 kHz, see :func:`study_babble`) is needed for ``babble_10db``;
    ``seed`` picks the pink noise and the babble stretch. ``clean`` returns ``y`` as float32.
    """
    from training.channel import fit_length, pcm_u8_roundtrip, telephone_band
    from training.noise import NoiseCondition, corrupt

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono signal [n], got shape {y.shape}")
    if condition == "clean":
        return y
    if condition == "pcm_u8":
        return pcm_u8_roundtrip(y, SR)
    if condition == "telephone_8k":
        return telephone_band(y, SR)
    if condition in CODEC_SETTINGS:
        return fit_length(codec_roundtrip(y, condition), y.size)
    if condition in ("pink_10db", "babble_10db"):
        if condition == "babble_10db" and babble is None:
            raise ValueError("babble_10db needs the babble signal (study_babble)")
        noise = condition.split("_")[0]
        empty = np.zeros(1, dtype=np.float32)
        return corrupt(y, NoiseCondition(noise, SNR_DB), babble=babble if babble is not None else empty, seed=seed)
    raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")


def codec_roundtrip(y: np.ndarray, condition: str) -> np.ndarray:
    """``y`` (16 kHz) encoded as :data:`CODEC_SETTINGS` ``[condition]`` in memory and decoded, float32 at 16 kHz.

    The decoded length is what the decoder gives (within a codec frame of ``len(y)``);
    :func:`apply_condition` cuts or pads it to ``len(y)``.
    """
    import av

    from pipeline.audio import decode_audio, resample

    container, encoder, sample_format, bit_rate = CODEC_SETTINGS[condition]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(encoder, rate=SR, layout="mono")
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y, dtype=np.float32)[None, :], format=sample_format,
                                           layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    decoded = decode_audio(buffer.getvalue(), mono=True)
    return np.asarray(resample(decoded.samples, decoded.sample_rate, SR), dtype=np.float32)


def study_babble(manifest: Sequence, *, scored: Sequence = (), seconds: float = 30.0) -> np.ndarray:
    """The babble of :mod:`studies.gender_robustness`: 6 LibriSpeech ``train`` readers at once, float32 ``[seconds * 16000]``.

    Raises ValueError if one of its readers speaks in a row of ``scored`` (the clips it will be added to).
    """
    from training.noise import babble_talkers, make_babble, study_babble_rows

    shared = {u.speaker for u in study_babble_rows(manifest)} & {u.speaker for u in scored}
    if shared:
        raise ValueError(f"babble readers {sorted(shared)} are among the scored speakers")
    return make_babble(babble_talkers(manifest), seconds=seconds, sr=SR)


@dataclass(frozen=True)
class CorpusScore:
    """Right answers of one corpus under one condition: ``correct`` of ``n`` clips."""

    n: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass(frozen=True)
class ConditionScore:
    """The gender model under one condition, on the clips whose clean version it could score.

    Attributes:
        condition: a name of :data:`CONDITIONS`.
        n: clips scored (those :func:`pipeline.audio.prepare_signal` accepted when clean).
        correct: right answers; a clip refused under this condition counts as wrong.
        flipped: answers different from the clean clip's (refused clips included).
        failed: clips refused under this condition.
        per_corpus: corpus -> :class:`CorpusScore`.
    """

    condition: str
    n: int
    correct: int
    flipped: int
    failed: int
    per_corpus: dict[str, CorpusScore] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass(frozen=True)
class RobustnessTable:
    """:class:`ConditionScore` per condition (``clean`` first) of one gender model on one set of clips."""

    scores: dict[str, ConditionScore]

    def change_pts(self, condition: str, corpus: str | None = None) -> float | None:
        """Accuracy under ``condition`` minus clean accuracy, in percentage points (of ``corpus`` if given)."""
        a, b = self.scores[condition], self.scores["clean"]
        if corpus is not None:
            a, b = a.per_corpus.get(corpus), b.per_corpus.get(corpus)
        if a is None or b is None or a.accuracy is None or b.accuracy is None:
            return None
        return 100.0 * (a.accuracy - b.accuracy)

    def to_dict(self) -> dict:
        """JSON form: per condition ``n``, ``accuracy``, ``change_pts``, ``flipped`` (share), ``failed``, ``per_corpus``."""
        out = {}
        for name, s in self.scores.items():
            out[name] = {
                "description": DESCRIPTIONS.get(name, name), "n": s.n, "accuracy": s.accuracy,
                "change_pts": self.change_pts(name), "flipped": s.flipped / s.n if s.n else None, "failed": s.failed,
                "per_corpus": {c: {"n": cs.n, "accuracy": cs.accuracy, "change_pts": self.change_pts(name, c)}
                               for c, cs in sorted(s.per_corpus.items())},
            }
        return out


def condition_batches(rows: Sequence, *, conditions: Sequence[str] = CONDITIONS, babble: np.ndarray | None = None,
                      audio_config=None, seed: int = 0, batch_size: int = 16):
    """Yield ``(indices, prepared)`` per batch of ``rows``: every clip under every condition, prepared.

    ``indices`` lists the positions in ``rows`` of the clips whose clean version could be decoded
    and prepared (the others are left out of every condition); ``prepared[condition]`` holds, in
    the same order, each clip's prepared float32 signal ``[n]`` (16 kHz) under ``condition``, or
    ``None`` where preparation refused it. ``clean`` comes first. Each clip is decoded once; a clip
    that is not at 16 kHz is resampled to 16 kHz (soxr) before a condition other than ``clean`` is
    applied; clip ``i`` of ``rows`` gets noise seed ``seed + i``. ``audio_config``: the
    :class:`pipeline.audio.AudioConfig` to prepare with (default the pipeline's).
    """
    from pipeline.audio import DEFAULT_AUDIO_CONFIG, decode_audio, prepare_signal, resample
    from pipeline.errors import AudioError

    config = audio_config or DEFAULT_AUDIO_CONFIG
    names = ["clean", *[c for c in conditions if c != "clean"]]
    for start in range(0, len(rows), batch_size):
        indices: list[int] = []
        prepared: dict[str, list] = {c: [] for c in names}
        for i in range(start, min(start + batch_size, len(rows))):
            try:
                decoded = decode_audio(rows[i].path, mono=True, max_seconds=config.max_duration_s)
                clean = prepare_signal(decoded.samples, decoded.sample_rate, config=config).samples
            except AudioError:
                continue
            indices.append(i)
            prepared["clean"].append(clean)
            y = resample(decoded.samples, decoded.sample_rate, SR)
            for c in names[1:]:
                try:
                    prepared[c].append(prepare_signal(apply_condition(y, c, seed=seed + i, babble=babble), SR,
                                                      config=config).samples)
                except AudioError:
                    prepared[c].append(None)
        yield indices, prepared


def score_conditions(classifier, rows: Sequence, *, conditions: Sequence[str] = CONDITIONS,
                     babble: np.ndarray | None = None, audio_config=None, seed: int = 0,
                     batch_size: int = 16) -> RobustnessTable:
    """Gender accuracy of ``classifier`` on ``rows`` under each of ``conditions`` (``clean`` is always scored).

    Args:
        classifier: has ``predict_proba_batch(list of prepared signals) -> [n, 2]`` ``[p_male, p_female]``
            (:class:`pipeline.gender.GenderClassifier`).
        rows: manifest rows (:class:`training.corpus.Utterance`: ``path``, ``corpus``, ``gender``).
        babble: for ``babble_10db`` (:func:`study_babble`).
        audio_config, seed, batch_size: as :func:`condition_batches` prepares the clips.

    Clips whose clean version cannot be decoded or prepared are left out of every condition; a
    clip refused under another condition counts as wrong there.
    """
    from pipeline.gender import GENDER_LABELS

    names = ["clean", *[c for c in conditions if c != "clean"]]
    answers = {c: [] for c in names}  # per clip: predicted label, or None when refused
    kept: list[int] = []
    for indices, prepared in condition_batches(rows, conditions=names, babble=babble, audio_config=audio_config,
                                               seed=seed, batch_size=batch_size):
        kept += indices
        for c, signals in prepared.items():
            good = [s for s in signals if s is not None]
            probs = iter(classifier.predict_proba_batch(good)) if good else iter(())
            answers[c] += [None if s is None else GENDER_LABELS[int(np.argmax(next(probs)))] for s in signals]
    return table_from_answers(rows, kept, answers)


def table_from_answers(rows: Sequence, kept: Sequence[int], answers: dict[str, list]) -> RobustnessTable:
    """The :class:`RobustnessTable` of ``answers[condition]`` (a label or ``None`` per clip of ``kept``, the
    positions in ``rows``); ``answers`` holds ``clean``."""
    truth = [rows[i].gender for i in kept]
    corpora = [rows[i].corpus for i in kept]
    scores = {}
    for c, given in answers.items():
        right = [a == t for a, t in zip(given, truth)]
        per_corpus = {k: CorpusScore(sum(1 for x in corpora if x == k), sum(r for r, x in zip(right, corpora) if x == k))
                      for k in sorted(set(corpora))}
        scores[c] = ConditionScore(c, len(kept), int(sum(right)),
                                   sum(a != b for a, b in zip(given, answers["clean"])),
                                   sum(a is None for a in given), per_corpus)
    return RobustnessTable(scores)
