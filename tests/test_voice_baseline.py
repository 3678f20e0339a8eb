"""Known-answer checks of the voice-baseline study's transforms and voice groups (no shared data)."""
from __future__ import annotations

import numpy as np
import pytest

from studies.voice_baseline.contexts import (chunk_contexts, context_features, emotion_contexts, featurise,
                                             lowest_mean, pair_contexts, shrunk_mean, shrunk_std, voice_contexts)
from studies.voice_baseline.study import minimum_clips

SPEAKERS = np.array(["a", "a", "a", "a", "b", "b", "b"])
EMOTIONS = np.array(["angry", "sad", "angry", "happy", "sad", "sad", "calm"])


def _table(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(SPEAKERS), 5)) + np.arange(len(SPEAKERS))[:, None]


def test_voice_contexts_group_rows_by_speaker_in_order():
    assert [c.tolist() for c in voice_contexts(SPEAKERS)] == [[0, 1, 2, 3], [4, 5, 6]]


def test_mean_subtraction_gives_zero_mean_voices():
    Z = _table()
    F, rows = featurise("sub", Z, voice_contexts(SPEAKERS))
    assert sorted(rows.tolist()) == list(range(len(SPEAKERS)))
    for c in voice_contexts(SPEAKERS):
        block = F[np.isin(rows, c)]
        np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(block, Z[c] - Z[c].mean(axis=0))


def test_shrunk_mean_known_answers():
    Zc = np.array([[2.0, 4.0], [4.0, 8.0]])  # mean (3, 6), n = 2
    np.testing.assert_allclose(shrunk_mean(Zc, 2.0), [1.5, 3.0])  # weight n/(n+k) = 1/2
    np.testing.assert_allclose(shrunk_mean(Zc, 0.0), [3.0, 6.0])  # no shrinkage: the plain mean
    np.testing.assert_allclose(shrunk_mean(np.zeros((0, 2)), 8.0), [0.0, 0.0])  # n = 0: the population mean


def test_shrinkage_with_no_clips_leaves_features_unchanged():
    z = np.array([[0.5, -1.0, 2.0]])
    np.testing.assert_allclose(z - shrunk_mean(np.zeros((0, 3)), 4.0), z)
    # and a huge k keeps the relative half of raw+shrunk equal to the raw features
    F = context_features("raw+shrunk", z, k=1e12)
    np.testing.assert_allclose(F[:, 3:], z, atol=1e-9)


def test_shrunk_std_pulls_toward_one():
    one = np.array([[3.0, -2.0]])  # a single clip has no spread: (0 + 2)/(1 + 2) of the population's 1
    np.testing.assert_allclose(shrunk_std(one), np.sqrt([2 / 3, 2 / 3]))
    np.testing.assert_allclose(shrunk_std(np.zeros((0, 2))), [1.0, 1.0])  # no clips: the population's 1
    Zc = np.array([[0.0], [2.0]])  # variance 1 -> (2*1 + 2)/(2+2) = 1
    np.testing.assert_allclose(shrunk_std(Zc), [1.0])
    Zc = np.array([[0.0], [4.0]])  # variance 4 -> (8 + 2)/4 = 2.5
    np.testing.assert_allclose(shrunk_std(Zc), [np.sqrt(2.5)])


def test_calm_baseline_averages_the_lowest_arousal_third():
    Zc = np.arange(12.0).reshape(6, 2)
    scores = np.array([5.0, 0.1, 3.0, 0.0, 4.0, 2.0])  # lowest two: rows 3 and 1
    np.testing.assert_allclose(lowest_mean(Zc, scores), Zc[[3, 1]].mean(axis=0))
    np.testing.assert_allclose(lowest_mean(Zc[:1], scores[:1]), Zc[0])


def test_steady_mood_groups_are_speaker_by_emotion():
    groups = [c.tolist() for c in emotion_contexts(SPEAKERS, EMOTIONS)]
    assert groups == [[0, 2], [1], [3], [4, 5], [6]]
    for g in groups:
        assert len(set(SPEAKERS[g])) == 1 and len(set(EMOTIONS[g])) == 1


def test_two_emotion_groups_all_pairs():
    groups = [c.tolist() for c in pair_contexts(SPEAKERS, EMOTIONS, all_pairs=True)]
    # speaker a: angry/sad/happy -> 3 pairs; speaker b: sad/calm -> 1 pair
    assert groups == [[0, 1, 2], [0, 2, 3], [1, 3], [4, 5, 6]]
    for g in groups:
        assert len(set(SPEAKERS[g])) == 1 and len(set(EMOTIONS[g])) == 2


def test_two_emotion_groups_shuffled_pairing_covers_every_row():
    groups = pair_contexts(SPEAKERS, EMOTIONS, all_pairs=False, rng=np.random.default_rng(3))
    covered = np.concatenate(groups)
    assert set(covered.tolist()) == set(range(len(SPEAKERS)))
    for g in groups:
        assert len(set(SPEAKERS[g])) == 1 and len(set(EMOTIONS[g])) == 2


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_chunks_partition_each_voice(n):
    chunks = chunk_contexts(SPEAKERS, n, np.random.default_rng(0))
    rows = np.concatenate(chunks)
    assert sorted(rows.tolist()) == list(range(len(SPEAKERS)))
    for c in chunks:
        assert 1 <= c.size <= n and len(set(SPEAKERS[c])) == 1


def test_raw_features_ignore_the_context_and_groups_add_size_and_spread():
    Z = _table(1)
    np.testing.assert_allclose(context_features("raw", Z[:4]), Z[:4])
    F = context_features("groups", Z[:4], k=2.0)
    assert F.shape == (4, 2 * Z.shape[1] + 2)
    np.testing.assert_allclose(F[:, -2], np.log(4))
    np.testing.assert_allclose(F[:, -1], Z[:4].std(axis=0).mean())
    with pytest.raises(ValueError):
        context_features("nope", Z)


def test_minimum_clips_picks_the_smallest_qualifying_n():
    curve = {"1": 0.5, "2": 0.6, "4": 0.7, "8": 0.8, "all": 0.9}
    assert minimum_clips(curve, 0.65) == 4
    assert minimum_clips(curve, 0.55) == 2
    assert minimum_clips(curve, 0.85) is None
