"""script.py --segments: one CSV row per speech segment, a bad file still one row, resume."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import script
from pipeline.emotion import EMOTION_LABELS
from pipeline.segments_csv import SEGMENT_COLUMNS, read_segments_done
from pipeline.testing import silence

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> np.ndarray:
    return sf.read(EXAMPLES / f"{name}.flac", dtype="float32")[0]


def conversation(names: tuple[str, ...]) -> np.ndarray:
    """Real speech clips from examples/ with 0.8 s pauses (the VAD ignores synthetic tones)."""
    parts = []
    for name in names:
        parts += [example(name), silence(0.8)]
    return np.concatenate(parts)


@pytest.fixture
def models_args(tiny_models) -> list[str]:
    return ["--gender-model", str(tiny_models["female_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q", "--segments"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segments_in")
    sf.write(root / "a_talk.wav", conversation(("man_calm", "woman_angry", "man_sad")), 16000)
    sf.write(root / "b_one.flac", conversation(("woman_sad",)), 16000)
    (root / "c_broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    sf.write(root / "d_noise.wav", silence(2.0), 16000)
    return root


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def full_run(folder, tiny_models, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("segments_out") / "segments.csv"
    args = ["--gender-model", str(tiny_models["female_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q", "--segments"]
    return script.main([str(folder), "-o", str(out), *args]), out


def test_one_row_per_segment_in_time_order_and_one_row_per_bad_file(full_run):
    code, out = full_run
    header, rows = read_rows(out)
    assert code == 1  # the broken and the silent file; the CSV still has a row for each
    assert header == ["file", "start_s", "end_s", "voice", "status", "error", "gender", "gender_confidence",
                      "emotion", "emotion_confidence", "emotion_model", *[f"prob_{e}" for e in EMOTION_LABELS]]
    assert tuple(header) == SEGMENT_COLUMNS
    files = [r["file"] for r in rows]
    assert list(dict.fromkeys(files)) == ["a_talk.wav", "b_one.flac", "c_broken.wav", "d_noise.wav"]
    assert files == sorted(files)  # the rows of a file stay together
    talk = [r for r in rows if r["file"] == "a_talk.wav"]
    assert len(talk) >= 3
    starts = [float(r["start_s"]) for r in talk]
    assert starts == sorted(starts) and all(float(r["end_s"]) > float(r["start_s"]) for r in talk)
    assert talk[0]["voice"] == "A"
    for r in talk:  # tiny models: always female (0.982), whose emotion model says angry
        assert (r["status"], r["gender"], r["emotion"], r["emotion_model"]) == ("ok", "female", "angry", "female")
        assert float(r["gender_confidence"]) == pytest.approx(0.982, abs=0.01)
        assert sum(float(r[f"prob_{e}"]) for e in EMOTION_LABELS) == pytest.approx(1.0, abs=1e-3)
    [broken] = [r for r in rows if r["file"] == "c_broken.wav"]
    assert broken["status"] == "unreadable" and broken["error"] and broken["start_s"] == broken["voice"] == ""
    [hush] = [r for r in rows if r["file"] == "d_noise.wav"]
    assert hush["status"] == "silent" and hush["emotion"] == ""


def test_resume_after_a_partial_write_redoes_only_the_cut_file(full_run, folder, models_args, tmp_path,
                                                               monkeypatch):
    _, out = full_run
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    _, rows = read_rows(out)
    n_talk = sum(r["file"] == "a_talk.wav" for r in rows)
    partial = tmp_path / "partial.csv"
    # Killed while writing b_one.flac: a_talk.wav complete, then half a line of b_one.flac.
    partial.write_text("".join(lines[:1 + n_talk]) + lines[1 + n_talk][:12], encoding="utf-8")
    assert list(read_segments_done(partial)) == ["a_talk.wav"]
    # Killed after a_talk.wav's first rows: nothing is kept (the last file may be incomplete).
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(lines[:2]), encoding="utf-8")
    assert read_segments_done(cut) == {}

    import pipeline.recording

    analysed = []
    real = pipeline.recording.analyse_recording

    def counting(cascade, source, *args, **kwargs):
        analysed.append(kwargs.get("name"))
        return real(cascade, source, *args, **kwargs)

    monkeypatch.setattr(pipeline.recording, "analyse_recording", counting)
    assert script.main([str(folder), "-o", str(partial), "--resume", *models_args]) == 1
    assert "a_talk.wav" not in analysed and "b_one.flac" in analysed
    assert partial.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_usage_errors(folder, models_args, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert script.main([str(folder), "-o", str(out), "--group", "voice", *models_args]) == 2
    assert "--segments" in capsys.readouterr().err
    per_file = tmp_path / "per_file.csv"
    per_file.write_text("file,status\nx.wav,ok\n", encoding="utf-8")
    assert script.main([str(folder), "-o", str(per_file), "--resume", *models_args]) == 2
    assert "columns differ" in capsys.readouterr().err
    assert script.main([str(folder), "-o", str(per_file), *models_args]) == 2  # exists, no --overwrite


def test_ctrl_c_exits_130_with_whole_files_and_resume_finishes(full_run, folder, models_args, tmp_path,
                                                                monkeypatch):
    import pipeline.recording

    real = pipeline.recording.analyse_recording

    def interrupted(cascade, source, *args, **kwargs):
        if kwargs.get("name") == "b_one.flac":
            raise KeyboardInterrupt
        return real(cascade, source, *args, **kwargs)

    out = tmp_path / "out.csv"
    monkeypatch.setattr(pipeline.recording, "analyse_recording", interrupted)
    assert script.main([str(folder), "-o", str(out), *models_args]) == 130
    assert {r["file"] for r in read_rows(out)[1]} == {"a_talk.wav"}
    monkeypatch.setattr(pipeline.recording, "analyse_recording", real)
    assert script.main([str(folder), "-o", str(out), "--resume", *models_args]) == 1
    assert out.read_text(encoding="utf-8") == full_run[1].read_text(encoding="utf-8")


def test_room_voices_give_every_file_its_rows(folder, models_args, tmp_path, capsys):
    """``--voices room`` (a conversation in one room): the same columns, a row or more for every input, bad ones
    one status row; the option needs --segments."""
    out = tmp_path / "room.csv"
    assert script.main([str(folder), "-o", str(out), "--voices", "room", *models_args]) == 1  # some files failed
    columns, rows = read_rows(out)
    assert columns == list(SEGMENT_COLUMNS)
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row)
    assert set(by_file) == {"a_talk.wav", "b_one.flac", "c_broken.wav", "d_noise.wav"}
    assert [r["status"] for r in by_file["c_broken.wav"]] == ["unreadable"]
    assert [r["status"] for r in by_file["d_noise.wav"]] != ["ok"] and len(by_file["d_noise.wav"]) == 1
    talk = by_file["a_talk.wav"]
    assert all(r["voice"] for r in talk) and all(r["status"] == "ok" for r in talk)
    starts = [float(r["start_s"]) for r in talk]
    assert starts == sorted(starts)
    plain = [a for a in models_args if a != "--segments"]
    assert script.main([str(folder), "-o", str(tmp_path / "x.csv"), "--voices", "room", *plain]) == 2
    assert "--voices is for --segments" in capsys.readouterr().err
