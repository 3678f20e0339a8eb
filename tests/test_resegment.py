"""pipeline.resegment: the HMM's Viterbi and posteriors against brute force, and re-segmentation with known answers."""
import itertools

import numpy as np
import pytest

from pipeline.diarize import speech_windows
from pipeline.resegment import (HmmConfig, Window, _log_transitions, carry_voices, hmm_resegment, posteriors, resegment,
                                viterbi)
from pipeline.vad import SpeechRegion


def distinct_centres(k: int, d: int = 64, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))
    return q.T


def brute_force(log_e: np.ndarray, log_t: np.ndarray, log_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every path's log-probability -> the best path and the state posteriors."""
    f, k = log_e.shape
    paths = np.array(list(itertools.product(range(k), repeat=f)))
    scores = np.array([log_i[p[0]] + log_e[0, p[0]] + sum(log_t[p[t - 1], p[t]] + log_e[t, p[t]] for t in range(1, f))
                       for p in paths])
    weights = np.exp(scores - scores.max())
    post = np.zeros((f, k))
    for p, w in zip(paths, weights):
        post[np.arange(f), p] += w
    return paths[int(np.argmax(scores))], post / post.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_viterbi_and_posteriors_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    log_e = rng.normal(size=(5, 3))
    log_t = _log_transitions(3, 0.8)
    log_i = np.log(np.array([0.5, 0.3, 0.2]))
    best, post = brute_force(log_e, log_t, log_i)
    assert list(viterbi(log_e, log_t, log_i)) == list(best)
    assert np.allclose(posteriors(log_e, log_t, log_i), post, atol=1e-10)


def turn_change(change_s: float = 6.0, length_s: float = 10.0, noise: float = 0.01, seed: int = 0):
    region = SpeechRegion(0.0, length_s)
    windows = speech_windows([region])
    centres = distinct_centres(2)
    labels = np.array([0 if 0.5 * (w.start_s + w.end_s) < change_s else 1 for w in windows])
    X = centres[labels] + noise * np.random.default_rng(seed).standard_normal((len(windows), centres.shape[1]))
    return region, windows, X, labels, centres


def test_hmm_cuts_at_the_change_of_voice():
    region, windows, X, labels, _ = turn_change()
    r = hmm_resegment([region], windows, X, labels, HmmConfig(concentration=10.0, loop=0.9))
    assert [s.voice for s in r.segments] == [0, 1]
    assert r.segments[0].start_s == 0.0 and r.segments[-1].end_s == 10.0
    assert abs(r.segments[0].end_s - 6.0) <= 0.8
    assert r.overlaps == []  # no marking unless asked for


def test_the_loop_keeps_a_turn_whole_where_frames_flicker():
    """A 20 s turn of voice 0 whose windows lean to voice 1 every few seconds: the frame-wise choice
    flickers, a sticky HMM keeps one voice, a loose one follows the frames."""
    region = SpeechRegion(0.0, 20.0)
    windows = speech_windows([region])
    c = distinct_centres(2)
    X = np.repeat(c[:1], len(windows), axis=0)
    stray = np.arange(3, len(windows), 6)
    X[stray] = c[1] - 0.1 * c[0]  # the frames it covers lean a little to voice 1
    labels = np.zeros(len(windows), int)
    labels[stray] = 1  # the clustering put the stray windows with another voice
    X = np.concatenate([X, np.repeat(c[1:], 10, axis=0)])  # voice 1 exists elsewhere in the recording
    windows = windows + [Window(30.0 + 0.75 * i, 31.5 + 0.75 * i, 1) for i in range(10)]
    labels = np.concatenate([labels, np.ones(10, int)])
    regions = [region, SpeechRegion(30.0, 30.0 + 0.75 * 9 + 1.5)]
    plain = [s for s in resegment(regions, windows, X, labels, min_run_s=0.1) if s.end_s <= 20.0]
    sticky = [s for s in hmm_resegment(regions, windows, X, labels, HmmConfig(concentration=5.0, loop=0.99),
                                       min_run_s=0.1).segments if s.end_s <= 20.0]
    assert len(plain) > 1
    assert [s.voice for s in sticky] == [0]


def test_overlap_is_marked_where_the_windows_mix_two_voices():
    """Voice 0, then 3 s where the windows are an even mix of both voices, then voice 1."""
    region = SpeechRegion(0.0, 12.0)
    windows = speech_windows([region])
    c = distinct_centres(2)
    mid = np.array([0.5 * (w.start_s + w.end_s) for w in windows])
    X = np.where((mid < 4.5)[:, None], c[0], c[1])
    mixed = (mid >= 4.5) & (mid < 7.5)
    X[mixed] = 0.5 * (c[0] + c[1])
    labels = (mid >= 6.0).astype(int)
    config = HmmConfig(concentration=5.0, loop=0.9, overlap_posterior=0.2)
    r = hmm_resegment([region], windows, X, labels, config)
    assert r.overlaps, "the mixed stretch should carry a second voice"
    assert all(3.0 <= o.start_s and o.end_s <= 9.0 for o in r.overlaps)
    # a clean change of voice: only the frames whose windows hold both voices may carry both
    pure = hmm_resegment([region], windows, np.where((mid < 6.0)[:, None], c[0], c[1]), labels, config)
    assert all(abs(o.start_s - 6.0) <= 0.8 and abs(o.end_s - 6.0) <= 0.8 for o in pure.overlaps)
    marked = lambda res: sum(o.end_s - o.start_s for o in res.overlaps)
    assert marked(r) >= 0.5 and marked(r) > marked(pure)
    assert hmm_resegment([region], windows, np.where((mid < 6.0)[:, None], c[0], c[1]), labels,
                         HmmConfig(concentration=5.0, loop=0.9)).overlaps == []


def test_centroids_are_re_estimated_between_passes():
    """One window mislabelled by the clustering: after the first pass its frames go where they belong."""
    region, windows, X, labels, _ = turn_change(noise=0.0)
    wrong = labels.copy()
    wrong[1] = 1
    r = hmm_resegment([region], windows, X, wrong, HmmConfig(concentration=20.0, loop=0.9, passes=2))
    assert [s.voice for s in r.segments] == [0, 1]


def test_carry_voices_takes_the_segment_overlapped_most_and_the_nearest_centroid_elsewhere():
    c = distinct_centres(2)
    segments = [SpeechRegion(0.0, 3.0), SpeechRegion(3.0, 6.0)]
    windows = [Window(0.0, 1.5, 0), Window(2.0, 3.5, 0), Window(4.0, 5.5, 0), Window(8.0, 9.5, 1)]
    X = np.stack([c[1], c[1], c[0], c[0]])
    labels = carry_voices(segments, np.array([1, 0]), windows, X)
    # windows 0-1 lie mostly in segment 0 (voice 1), window 2 in segment 1 (voice 0), window 3 in none: nearest voice
    assert list(labels) == [1, 1, 0, 0]
    assert list(carry_voices([], np.zeros(0, int), windows, X)) == [0, 0, 0, 0]
