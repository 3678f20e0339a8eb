"""Conversations in one room (training/room_conversations.py) and their scoring (studies/room_conversations)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from training.testing import write_gender_corpus


@pytest.fixture
def speakers(tmp_path, monkeypatch):
    """Speaker -> utterances of a synthetic corpus (8 speakers of each gender over the splits)."""
    from collections import defaultdict

    from training.corpus import read_manifest

    write_gender_corpus(tmp_path)
    monkeypatch.setenv("SER_DATA_DIR", str(tmp_path))
    out = defaultdict(list)
    for u in read_manifest():
        out[u.speaker].append(u)
    return dict(out)


def test_room_conversation_is_seeded_and_shares_one_room(speakers):
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    a = make_room_conversation(np.random.default_rng(3), speakers, ClipCache(), k=3, seconds=12.0)
    b = make_room_conversation(np.random.default_rng(3), speakers, ClipCache(), k=3, seconds=12.0)
    assert np.array_equal(a.samples, b.samples) and a.turns == b.turns and a.room == b.room
    assert a.n_voices == 3 and {s for _, _, s in a.turns} == set(a.genders)
    assert a.samples.dtype == np.float32 and 0.3 < float(np.max(np.abs(a.samples))) <= 1.0
    assert a.samples.size / 16000 >= max(e for _, e, _ in a.turns)        # the reference fits in the audio
    assert [t[0] for t in a.turns] == sorted(t[0] for t in a.turns)
    assert len(a.room["distances_m"]) == 3 and 0.2 <= a.room["rt60_s"] <= 0.8
    assert a.room["noise"] in ("none", "pink", "babble") and a.room["codec"] in ("none", "mp3", "opus")
    assert 0.0 <= a.overlap_share < 1.0


def test_one_speaker_and_same_gender_conversations(speakers):
    from training.conversations import ClipCache
    from training.room_conversations import make_room_conversation

    cache = ClipCache()
    one = make_room_conversation(np.random.default_rng(1), speakers, cache, k=1, seconds=8.0)
    assert one.n_voices == 1 and not one.same_gender and one.overlap_share == 0.0
    same = make_room_conversation(np.random.default_rng(2), speakers, cache, k=2, same_gender=True, seconds=8.0)
    assert len(set(same.genders.values())) == 1 and same.same_gender


def test_overlap_share_known_answers():
    from training.room_conversations import overlap_share

    assert overlap_share([(0.0, 1.0, "a"), (2.0, 3.0, "b")]) == 0.0
    assert overlap_share([(0.0, 2.0, "a"), (1.0, 3.0, "b")]) == pytest.approx(1 / 3, abs=0.01)
    assert overlap_share([]) == 0.0


def _recording(segments, genders):
    segs = [SimpleNamespace(start_s=s, end_s=e, voice=v) for s, e, v in segments]
    voices = [SimpleNamespace(label=v, gender=g) for v, g in genders.items()]
    return SimpleNamespace(segments=segs, voices=voices, status="ok")


def test_score_with_pyannote_known_answers():
    """DER from pyannote.metrics: perfect (whatever the voice names), one voice for two, gender per mapped voice."""
    from studies.room_conversations.study import score, summarise

    ref = [(0.0, 4.0, "s1"), (5.0, 9.0, "s2")]
    genders = {"s1": "female", "s2": "male"}
    perfect = score(ref, genders, _recording([(0.0, 4.0, "B"), (5.0, 9.0, "A")], {"A": "male", "B": "female"}))
    assert perfect["der"] == pytest.approx(0.0) and perfect["voices"] == perfect["speakers"] == 2
    assert perfect["gender_per_voice"] == pytest.approx(1.0)
    ref = [(0.0, 4.0, "s1"), (5.0, 11.0, "s2")]
    merged = score(ref, genders, _recording([(0.0, 4.0, "A"), (5.0, 11.0, "A")], {"A": "male"}))
    # collar 0.25 s each side: 0.5 s of each turn is not scored; s1's 3.5 s scored go to s2's voice
    assert merged["confusion"] == pytest.approx(3.5 / 9.0, abs=0.01) and merged["voices"] == 1
    assert merged["gender_per_voice"] == pytest.approx(0.6)  # s2 (male, 6 of 10 s) mapped to A (male); s1 has no voice
    s = summarise([perfect, merged])
    assert s["count_right"] == 0.5 and s["count_within_one"] == 1.0
    assert s["der"] == pytest.approx(3.5 / (7.0 + 9.0), abs=0.01)  # pooled over the scored time of both


def test_read_rttm(tmp_path):
    from studies.room_conversations.study import read_rttm

    path = tmp_path / "r.rttm"
    path.write_text("SPEAKER f1 1 0.50 1.25 <NA> <NA> spk1 <NA> <NA>\nSPEAKER f1 1 2.00 1.00 <NA> <NA> spk2 <NA> <NA>\n")
    assert read_rttm(path) == {"f1": [(0.5, 1.75, "spk1"), (2.0, 3.0, "spk2")]}
