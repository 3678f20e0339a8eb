"""pipeline.diarize: windows, the spectral voice count and re-segmentation on embeddings with known answers."""
import json

import numpy as np
import pytest

from pipeline.diarize import (ONE_VOICE_FEATURES, ONE_VOICE_MODEL, ONE_VOICE_MODEL_NO_LENGTH, DiarizationConfig,
                              load_one_voice_model,
                              merge_similar, more_than_one_probability, one_voice, one_voice_features, spectral_groups,
                              speech_windows, voice_path, window_voices)
from pipeline.resegment import Window, resegment
from pipeline.vad import SpeechRegion


def voices_around(centres: np.ndarray, counts: list[int], *, spread: float, seed: int = 0) -> np.ndarray:
    """Unit vectors scattered around each row of ``centres`` (``counts[i]`` of voice i), in that order."""
    rng = np.random.default_rng(seed)
    rows = [c + spread * rng.standard_normal((n, centres.shape[1])) for c, n in zip(centres, counts)]
    X = np.concatenate(rows)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def distinct_centres(k: int, d: int = 64, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))
    return q.T  # k orthonormal directions


def test_windows_cover_each_region_and_end_at_its_end():
    windows = speech_windows([SpeechRegion(0.0, 4.0), SpeechRegion(5.0, 6.0)], window_s=1.5, hop_s=0.75)
    first = [w for w in windows if w.region == 0]
    assert [round(w.start_s, 2) for w in first] == [0.0, 0.75, 1.5, 2.25, 2.5]
    assert all(w.duration_s == pytest.approx(1.5) for w in first)
    assert windows[-1] == Window(5.0, 6.0, 1)  # a short region is one window


@pytest.mark.parametrize("k", [2, 3, 5])
def test_spectral_finds_the_number_of_distinct_voices(k):
    X = voices_around(distinct_centres(k), [30] * k, spread=0.08)
    groups = spectral_groups(X, np.full(len(X), 1.5))
    truth = np.repeat(np.arange(k), 30)
    assert groups.max() + 1 == k
    # each true voice maps to one group
    assert all(len(set(groups[truth == v])) == 1 for v in range(k))


def test_one_voice_stays_one_voice():
    """Stray windows k-means puts apart are merged back or folded in (under min_voice_s of speech)."""
    X = voices_around(distinct_centres(1), [80], spread=0.08, seed=3)
    windows = [Window(i * 0.75, i * 0.75 + 1.5, 0) for i in range(80)]
    assert window_voices(X, windows).max() == 0


def test_merge_joins_only_groups_more_similar_than_the_bound():
    centres = distinct_centres(2)
    close = centres[0] + 0.2 * centres[1]
    X = voices_around(np.stack([centres[0], close, centres[1]]), [10, 10, 10], spread=0.01)
    groups = merge_similar(X, np.ones(30), np.repeat([0, 1, 2], 10), similarity=0.9)
    assert list(np.unique(groups[:20])) == [0] and set(groups[20:]) == {1}


def test_many_windows_cluster_on_a_subset_and_all_get_a_voice():
    X = voices_around(distinct_centres(2), [400, 400], spread=0.08)
    windows = [Window(i * 0.75, i * 0.75 + 1.5, 0) for i in range(800)]
    labels = window_voices(X, windows, DiarizationConfig(max_cluster_windows=200))
    assert labels.shape == (800,) and set(labels[:400]) == {0} and set(labels[400:]) == {1}


def test_resegmentation_cuts_at_the_change_of_voice():
    """A 10 s region: voice A for 6 s then voice B; windows of 1.5 s every 0.75 s labelled by their centre."""
    region = SpeechRegion(0.0, 10.0)
    windows = speech_windows([region])
    centres = distinct_centres(2)
    labels = np.array([0 if 0.5 * (w.start_s + w.end_s) < 6.0 else 1 for w in windows])
    X = centres[labels] + 0.01 * np.random.default_rng(0).standard_normal((len(windows), centres.shape[1]))
    segments = resegment([region], windows, X, labels)
    assert [s.voice for s in segments] == [0, 1]
    assert segments[0].start_s == 0.0 and segments[-1].end_s == 10.0
    assert abs(segments[0].end_s - 6.0) <= 0.8


def test_short_runs_join_a_neighbour():
    """One stray window of another voice inside a long turn leaves no run under min_run_s."""
    region = SpeechRegion(0.0, 8.0)
    windows = speech_windows([region])
    centres = distinct_centres(2)
    labels = np.zeros(len(windows), int)
    X = np.repeat(centres[:1], len(windows), axis=0)
    X[4] = 0.45 * centres[0] + 0.55 * centres[1]  # frames covered by it alone lean to voice 1
    labels[4] = 1
    segments = resegment([region], windows, X, labels, min_run_s=0.5)
    assert all(s.end_s - s.start_s >= 0.5 - 1e-9 for s in segments)


def hop_windows(n: int) -> list[Window]:
    return [Window(i * 0.75, i * 0.75 + 1.5, 0) for i in range(n)]


def test_one_voice_features_tell_one_voice_from_two():
    one = one_voice_features(1, voices_around(distinct_centres(1), [60], spread=0.08), hop_windows(60), 45.0)
    two = one_voice_features(2, voices_around(distinct_centres(2), [30, 30], spread=0.08), hop_windows(60), 45.0)
    assert one.shape == two.shape == (len(ONE_VOICE_FEATURES),)
    named = {name: (a, b) for name, a, b in zip(ONE_VOICE_FEATURES, one, two)}
    assert named["first_cut_more"] == (0.0, 1.0) and named["speech_s"] == (45.0, 45.0)
    assert named["max_centroid_similarity"][0] > 0.9 > 0.2 > named["max_centroid_similarity"][1]
    assert named["similarity_p10"][0] > 0.5 > named["similarity_p10"][1]  # half the pairs of two voices are apart
    assert named["eigenvalue_2"][1] < 0.05 < named["eigenvalue_2"][0]  # two voices: a second zero eigenvalue
    assert one_voice_features(2, np.eye(3, 8), hop_windows(3), 3.0) is None  # under 4 windows


def test_learnt_one_voice_decision_reads_its_model_as_data(tmp_path):
    """A hand-made model that says "more" when the median window similarity is low."""
    model = {"features": list(ONE_VOICE_FEATURES), "mean": [0.0] * 10, "scale": [1.0] * 10,
             "coef": [0.0] * 6 + [-20.0, 0.0, 0.0, 0.0], "intercept": 10.0, "threshold": 0.5}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    config = DiarizationConfig(one_voice_model=str(path))
    one = voices_around(distinct_centres(1), [60], spread=0.08)
    two = voices_around(distinct_centres(2), [30, 30], spread=0.08)
    # the first cut's answer carries no weight here: the model decides
    assert one_voice(2, one, hop_windows(60), 45.0, config)
    assert not one_voice(1, two, hop_windows(60), 45.0, config)
    assert one_voice(2, two[:3], hop_windows(3), 3.0, config)  # under 4 windows: one voice
    assert not one_voice(2, None, [], 0.0, DiarizationConfig()) and one_voice(1, None, [], 0.0, DiarizationConfig())
    assert more_than_one_probability(np.zeros(10), {**model, "intercept": 0.0}) == pytest.approx(0.5)
    for bad in (["speech_s"], ["speech_s", "eigengap"], list(ONE_VOICE_FEATURES[:9]) + ["loudness"]):
        path.write_text(json.dumps({**model, "features": bad}))  # too few values, wrong order, unknown name
        load_one_voice_model.cache_clear()
        with pytest.raises(ValueError, match="features"):
            one_voice(1, one, hop_windows(60), 45.0, config)
    load_one_voice_model.cache_clear()


def test_a_model_of_some_features_uses_only_those(tmp_path):
    """Round 7's L names nine of the ten features: the tenth (seconds of speech) changes nothing."""
    names = [f for f in ONE_VOICE_FEATURES if f != "speech_s"]
    model = {"features": names, "mean": [0.0] * 9, "scale": [1.0] * 9, "coef": [0.0] * 6 + [-20.0, 0.0, 0.0],
             "intercept": 10.0, "threshold": 0.5}
    features = np.zeros(10)
    features[6] = 0.3  # median window similarity
    p = more_than_one_probability(features, model)
    features[9] = 1e6  # seconds of speech: not in the model
    assert more_than_one_probability(features, model) == p
    shipped = load_one_voice_model(ONE_VOICE_MODEL_NO_LENGTH)
    assert shipped["features"] == names and all(len(shipped[k]) == 9 for k in ("mean", "scale", "coef"))


def test_three_voices_heard_overrule_one_voice_only_when_asked(tmp_path):
    """``three_voices``: a first cut of three voices or more is never one voice; of two it still can be."""
    model = {"features": list(ONE_VOICE_FEATURES), "mean": [0.0] * 10, "scale": [1.0] * 10,
             "coef": [0.0] * 10, "intercept": -10.0, "threshold": 0.5}  # always "one voice"
    path = tmp_path / "one.json"
    path.write_text(json.dumps(model))
    X = voices_around(distinct_centres(3), [20, 20, 20], spread=0.08)
    plain = DiarizationConfig(one_voice_model=str(path), keep_first_cut=True)
    three = DiarizationConfig(one_voice_model=str(path), keep_first_cut=True, three_voices=True)
    assert voice_path(3, X, hop_windows(60), 45.0, plain) == "one"
    assert voice_path(3, X, hop_windows(60), 45.0, three) == "segments"
    assert voice_path(2, X, hop_windows(60), 45.0, three) == "one"
    load_one_voice_model.cache_clear()


def test_overlap_marking_is_refused_for_recordings():
    """The HMM can mark overlaps for the study, but a recording's segments carry one voice: the config says so."""
    from pipeline.resegment import HmmConfig

    with pytest.raises(ValueError, match="overlap"):
        DiarizationConfig(hmm=HmmConfig(overlap_posterior=0.2))
    assert DiarizationConfig(hmm=HmmConfig()).hmm.overlap_posterior is None


def test_room_conversation_is_a_complete_choice():
    """The "room" way of finding voices names files that ship and the HMM re-segmentation of both routes."""
    from pathlib import Path

    from pipeline.diarize import ROOM_CONVERSATION
    from pipeline.recording import VOICE_MODES

    assert VOICE_MODES["room"] is ROOM_CONVERSATION and VOICE_MODES["auto"] is None
    assert Path(ROOM_CONVERSATION.one_voice_model).is_file() and ROOM_CONVERSATION.keep_first_cut
    assert ROOM_CONVERSATION.hmm is not None and ROOM_CONVERSATION.segments_hmm


def test_shipped_one_voice_model_is_complete():
    model = load_one_voice_model(ONE_VOICE_MODEL)
    assert all(len(model[k]) == len(ONE_VOICE_FEATURES) for k in ("mean", "scale", "coef"))
    assert 0.0 < model["threshold"] < 1.0


def test_hybrid_keeps_the_default_voices_when_the_first_cut_splits(tmp_path):
    """Round 5's keep_first_cut: one voice as the model says; else segments when the first cut finds two, else windows."""
    model = {"features": list(ONE_VOICE_FEATURES), "mean": [0.0] * 10, "scale": [1.0] * 10,
             "coef": [0.0] * 6 + [-20.0, 0.0, 0.0, 0.0], "intercept": 10.0, "threshold": 0.5}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    load_one_voice_model.cache_clear()
    hybrid = DiarizationConfig(one_voice_model=str(path), keep_first_cut=True)
    one = voices_around(distinct_centres(1), [60], spread=0.08)
    two = voices_around(distinct_centres(2), [30, 30], spread=0.08)
    assert voice_path(2, one, hop_windows(60), 45.0, hybrid) == "one"
    assert voice_path(2, two, hop_windows(60), 45.0, hybrid) == "segments"
    assert voice_path(1, two, hop_windows(60), 45.0, hybrid) == "windows"
    # without keep_first_cut (round 4) the windows whenever the model says more
    assert voice_path(2, two, hop_windows(60), 45.0, DiarizationConfig(one_voice_model=str(path))) == "windows"
