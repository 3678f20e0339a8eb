"""The shipped models on real clips from ../shared/data, and the batch scorer around them."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

import script
from training.corpus import read_manifest


@pytest.fixture(scope="module")
def test_clips(shared_data):
    """Two clips per (corpus, gender) of the speaker-independent test split, emotional corpora."""
    rows = [u for u in read_manifest(shared_data) if u.split == "test"]
    picked = []
    for corpus in ("ravdess", "savee", "ased", "emovo", "librispeech"):
        for gender in ("male", "female"):
            group = [u for u in rows if u.corpus == corpus and u.gender == gender]
            picked += group[:: max(1, len(group) // 2)][:2]
    return picked


def test_shipped_cascade_on_real_test_clips(shipped_cascade, test_clips):
    results = shipped_cascade.predict_files([u.path for u in test_clips])
    assert all(r.status == "ok" for r in results), [(r.file, r.error) for r in results if not r.ok]
    correct_gender = sum(r.gender == u.gender for r, u in zip(results, test_clips))
    assert correct_gender >= len(test_clips) - 2
    for r in results:
        assert r.emotion_model == r.gender
        assert sum(r.emotion_probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_shipped_emotion_models_beat_chance_on_ravdess_test_actors(shipped_cascade, shared_data):
    rows = [u for u in read_manifest(shared_data) if u.split == "test" and u.corpus == "ravdess"][::4]
    results = shipped_cascade.predict_files([u.path for u in rows])
    accuracy = np.mean([r.emotion == u.emotion for r, u in zip(results, rows)])
    assert accuracy > 0.3  # chance is 0.125; the full figure is in reports/metrics.md


def test_odd_formats_of_a_real_clip_agree(shipped_cascade, test_clips, tmp_path):
    clip = next(u for u in test_clips if u.corpus == "ravdess")
    y, sr = sf.read(clip.path, dtype="float32")
    reference = shipped_cascade.predict_file(clip.path)
    variants = {
        "stereo.wav": (np.stack([y, y], axis=1), sr, {}),
        "loud_24bit.wav": (np.clip(y * 1.9, -1, 1), sr, {"subtype": "PCM_24"}),
    }
    import soxr

    variants["rate44k.wav"] = (soxr.resample(y, sr, 44100), 44100, {})
    variants["quiet_float.wav"] = (y * 0.05, sr, {"subtype": "FLOAT"})
    quantised = tmp_path / "quiet_16bit.flac"  # 26 dB quieter *and* re-quantised: the noise floor changes
    sf.write(quantised, y * 0.05, sr)
    result = shipped_cascade.predict_file(quantised)
    assert result.ok and result.gender == reference.gender
    top2 = sorted(reference.emotion_probabilities, key=reference.emotion_probabilities.get)[-2:]
    assert result.emotion in top2
    for name, (data, rate, kwargs) in variants.items():
        path = tmp_path / name
        sf.write(path, data, rate, **kwargs)
        result = shipped_cascade.predict_file(path)
        assert result.ok, result.error
        assert result.gender == reference.gender, name
        assert result.gender_probabilities["female"] == pytest.approx(reference.gender_probabilities["female"], abs=0.05)
        assert result.emotion == reference.emotion, name


def test_script_on_real_folder_with_bad_files(test_clips, tmp_path, shipped_cascade):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for u in test_clips[:3]:
        shutil.copy(u.path, folder / u.path.name)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "image.wav").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    sf.write(folder / "silence.wav", np.zeros(32000, dtype=np.float32), 16000)
    out = tmp_path / "results.csv"
    assert script.main([str(folder), "-o", str(out), "-q"]) == 1
    with open(out, newline="") as handle:
        rows = {r["file"]: r for r in csv.DictReader(handle)}
    assert len(rows) == 6
    assert rows["empty.wav"]["status"] == "empty"
    assert rows["image.wav"]["status"] == "unreadable"
    assert rows["silence.wav"]["status"] == "silent"
    for u in test_clips[:3]:
        row = rows[u.path.name]
        direct = shipped_cascade.predict_file(folder / u.path.name)
        assert row["status"] == "ok"
        assert (row["gender"], row["emotion"]) == (direct.gender, direct.emotion)
        assert float(row["emotion_confidence"]) == pytest.approx(direct.emotion_confidence, abs=1e-4)
