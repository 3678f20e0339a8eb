"""Every input answered, nothing lost: odd files, vanishing files, kill and resume."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import script
from pipeline.batch import discover, score

from pipeline.testing import SR, speech_like

from pipeline.paths import PROJECT_ROOT as ROOT  # noqa: E402


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def zoo(tmp_path) -> Path:
    """A folder of awkward inputs, nested, with odd names."""
    root = tmp_path / "zoo"
    (root / "nested" / "deeper").mkdir(parents=True)
    y = speech_like(2.0)
    sf.write(root / "u8.wav", y, SR, subtype="PCM_U8")
    sf.write(root / "pcm24.wav", y, SR, subtype="PCM_24")
    sf.write(root / "float32.wav", y, SR, subtype="FLOAT")
    sf.write(root / "rate8k.wav", speech_like(2.0, sr=8000), 8000)
    sf.write(root / "rate96k.wav", speech_like(2.0, sr=96000), 96000)
    sf.write(root / "six channels.wav", np.tile(y[:, None], (1, 6)), SR)
    sf.write(root / "nested" / "clip.flac", y, SR)
    sf.write(root / "nested" / "clip.ogg", y, SR, format="OGG", subtype="VORBIS")
    sf.write(root / "nested" / "deeper" / "clip.mp3", y, SR, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(root / "nested" / "ÜPPER ñame.WAV", y, SR)
    sf.write(root / "quiet.wav", y * 10 ** (-55 / 20) / 0.5, SR)
    sf.write(root / "header_only.wav", np.zeros(0, dtype=np.float32), SR)
    sf.write(root / "short50ms.wav", speech_like(0.05), SR)
    sf.write(root / "silence.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(root / "nan.wav", np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("hello, I am a text file")
    (root / "random.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    good = (root / "u8.wav").read_bytes()
    (root / "truncated.wav").write_bytes(good[:30])
    os.symlink("loop_b.wav", root / "loop_a.wav")
    os.symlink("loop_a.wav", root / "loop_b.wav")
    os.symlink(root, root / "nested" / "dir_loop")  # a folder link back to the top
    return root


EXPECTED = {
    "u8.wav": "ok", "pcm24.wav": "ok", "float32.wav": "ok", "rate8k.wav": "ok", "rate96k.wav": "ok",
    "six channels.wav": "ok", "nested/clip.flac": "ok", "nested/clip.ogg": "ok", "nested/deeper/clip.mp3": "ok",
    "nested/ÜPPER ñame.WAV": "ok", "quiet.wav": "ok", "header_only.wav": "empty", "short50ms.wav": "too_short",
    "silence.wav": "silent", "nan.wav": "non_finite", "empty.wav": "empty", "text.wav": "unreadable",
    "random.mp3": "unreadable", "truncated.wav": "unreadable", "loop_a.wav": "not_found", "loop_b.wav": "not_found",
}


def test_zoo_gets_one_row_each_with_the_right_status(zoo, tmp_path, tiny_models):
    out = tmp_path / "zoo.csv"
    args = [str(zoo), "-o", str(out), "--recursive", "-q", "--gender-model", str(tiny_models["female_gender"]),
            "--male-model", str(tiny_models["male"]), "--female-model", str(tiny_models["female"])]
    assert script.main(args) == 1
    rows = rows_of(out)
    assert sorted(r["file"] for r in rows) == sorted(EXPECTED)
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows)  # stable order
    for row in rows:
        assert row["status"] == EXPECTED[row["file"]], (row["file"], row["error"])
        assert (row["error"] == "") == (row["status"] == "ok")
    assert not (zoo / "zoo.csv").exists()


def test_file_vanishing_between_listing_and_reading(tmp_path, tiny_cascade, wav_file):
    keep = wav_file("in/keep.wav")
    gone = wav_file("in/gone.wav")
    files = discover([keep.parent])
    gone.unlink()
    results = {f.name: p for f, p in score(tiny_cascade, files)}
    assert results["keep.wav"].ok
    assert results["gone.wav"].status == "not_found" and "gone.wav" in results["gone.wav"].error + str(results["gone.wav"].file)


def test_unreadable_file_permission(tmp_path, tiny_cascade, wav_file, monkeypatch):
    path = wav_file("secret.wav")
    real_open = open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    result = tiny_cascade.predict_file(path)
    assert result.status == "not_found" and "permission" in result.error.lower()


def test_long_recording_is_scored(tiny_cascade):
    y = np.tile(speech_like(10.0), 30)  # five minutes
    result = tiny_cascade.predict_signal(y, SR)
    assert result.ok and result.duration_s == pytest.approx(300.0, abs=0.01)


def _script_cmd(folder: Path, out: Path, tiny_models, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "script.py"), str(folder), "-o", str(out), "-q", "--batch-size", "2",
            "--gender-model", str(tiny_models["female_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), *extra]


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory, tiny_models):
    """40 clips (one broken) and the CSV of an uninterrupted run over them."""
    root = tmp_path_factory.mktemp("many")
    folder = root / "many"
    folder.mkdir()
    for i in range(40):
        sf.write(folder / f"clip{i:02d}.wav", speech_like(1.0 + (i % 3) * 0.5, seed=i), SR)
    (folder / "clip07.wav").write_bytes(b"broken")
    full = root / "full.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run(_script_cmd(folder, full, tiny_models), env=env).returncode == 1
    return folder, full


def _processes_writing(out: Path, *, within_s: float) -> list[int]:
    """Pids whose command line names ``out`` (a killed run's forked workers share it), once they had
    ``within_s`` seconds to end."""
    deadline = time.time() + within_s
    while True:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if str(out).encode() in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        if not pids or time.time() > deadline:
            return pids
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_interrupted_run_resumes_to_the_same_csv(many_clips, tmp_path, tiny_models, sig):
    folder, full = many_clips
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    partial = tmp_path / "partial.csv"
    proc = subprocess.Popen(_script_cmd(folder, partial, tiny_models), env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if partial.exists() and len(partial.read_text(encoding="utf-8").splitlines()) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    if sig == signal.SIGINT:
        assert code == 130  # script.py's documented exit for Ctrl-C
    assert _processes_writing(partial, within_s=10) == [], "feature workers outlived the killed run"
    done = len(rows_of(partial))
    assert 0 < done < 40, "the interruption should land mid-run"
    code = subprocess.run(_script_cmd(folder, partial, tiny_models, "--resume"), env=env).returncode
    assert code == 1
    assert partial.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


def test_soak_two_thousand_clips_memory_flat(tmp_path, tiny_cascade):
    """2,000 clips (repeats of a few files): every row present, resident memory flat."""
    from pipeline.batch import CsvSink, InputFile, prediction_row

    folder = tmp_path / "soak"
    folder.mkdir()
    sources = []
    for i in range(8):
        path = folder / f"s{i}.wav"
        sf.write(path, speech_like(1.0, seed=i), SR)
        sources.append(path)
    (folder / "bad.wav").write_bytes(b"not audio")
    sources.append(folder / "bad.wav")
    files = [InputFile(sources[i % len(sources)], f"{i:04d}_{sources[i % len(sources)].name}") for i in range(2000)]

    def rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    out = tmp_path / "soak.csv"
    marks = {}
    with CsvSink(out) as sink:
        for n, (item, prediction) in enumerate(score(tiny_cascade, files, batch_size=32), start=1):
            sink.write(prediction_row(prediction, name=item.name))
            if n in (500, 1000, 2000):
                marks[n] = rss_mb()
    rows = rows_of(out)
    assert [r["file"] for r in rows] == [f.name for f in files]
    assert sum(r["status"] == "unreadable" for r in rows) == 2000 // 9 + (2000 % 9 > 8)
    assert marks[2000] - marks[500] < 40, marks  # MB; a leak of ~1 KB per clip would show
