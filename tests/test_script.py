"""script.py: one CSV row per audio file, exit codes, overwrite and resume."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import script
from pipeline.batch import CSV_COLUMNS
from pipeline.emotion import EMOTION_LABELS


@pytest.fixture
def models_args(tiny_models) -> list[str]:
    return ["--gender-model", str(tiny_models["female_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q"]


@pytest.fixture
def folder(tmp_path, wav_file) -> Path:
    root = tmp_path / "in"
    wav_file("in/b clip.wav")
    wav_file("in/A.WAV", sr=8000)
    wav_file("in/c.flac", format="FLAC")
    wav_file("in/sub/deep.wav")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    (root / "notes.txt").write_text("not scored: not an audio extension")
    return root


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_folder_to_csv(folder, tmp_path, models_args):
    out = tmp_path / "out.csv"
    code = script.main([str(folder), "-o", str(out), *models_args])
    header, rows = read_rows(out)
    assert code == 1  # broken.wav failed; the CSV is still complete
    assert header[:18] == ["file", "voice", "status", "error", "duration_s", "gender", "gender_confidence", "emotion",
                           "emotion_confidence", "emotion_model", *[f"prob_{e}" for e in EMOTION_LABELS]]
    assert tuple(header) == CSV_COLUMNS
    assert [r["file"] for r in rows] == ["A.WAV", "b clip.wav", "broken.wav", "c.flac"]
    by_name = {r["file"]: r for r in rows}
    assert by_name["broken.wav"]["status"] == "unreadable" and by_name["broken.wav"]["error"]
    assert by_name["broken.wav"]["gender"] == ""
    for name in ("A.WAV", "b clip.wav", "c.flac"):
        row = by_name[name]
        assert row["status"] == "ok" and row["error"] == ""
        assert (row["gender"], row["emotion"], row["emotion_model"]) == ("female", "angry", "female")
        assert float(row["duration_s"]) == pytest.approx(2.0, abs=0.01)
        assert sum(float(row[f"prob_{e}"]) for e in EMOTION_LABELS) == pytest.approx(1.0, abs=1e-3)
    assert not any(p.suffix == ".csv" for p in folder.rglob("*"))  # nothing written into the input


def test_recursive_and_relative_names(folder, tmp_path, models_args):
    out = tmp_path / "out.csv"
    script.main([str(folder), "-o", str(out), "--recursive", *models_args])
    _, rows = read_rows(out)
    assert [r["file"] for r in rows] == ["A.WAV", "b clip.wav", "broken.wav", "c.flac", "sub/deep.wav"]


def test_all_ok_exits_zero_and_matches_python_api(tmp_path, wav_file, models_args, tiny_models):
    path = wav_file("x.wav")
    out = tmp_path / "out.csv"
    assert script.main([str(path), "-o", str(out), *models_args]) == 0
    _, rows = read_rows(out)
    from pipeline.cascade import Cascade

    cascade = Cascade.load(tiny_models["female_gender"], male_dir=tiny_models["male"], female_dir=tiny_models["female"])
    direct = cascade.predict_file(path)
    assert rows[0]["file"] == str(path)
    assert rows[0]["emotion"] == direct.emotion
    assert float(rows[0]["emotion_confidence"]) == pytest.approx(direct.emotion_confidence, abs=1e-4)


def test_usage_errors_exit_two(tmp_path, folder, models_args, capsys):
    out = tmp_path / "out.csv"
    assert script.main([str(tmp_path / "nope"), "-o", str(out), *models_args]) == 2
    assert script.main([]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert script.main([str(empty), "-o", str(out), *models_args]) == 2
    out.write_text("keep me")
    assert script.main([str(folder), "-o", str(out), *models_args]) == 2
    assert out.read_text() == "keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert script.main([str(folder), "-o", str(out), "--routing", "maybe", *models_args]) == 2
    assert script.main([str(folder), "-o", str(out), "--overwrite", "--male-model", str(tmp_path),
                        "--gender-model", models_args[1], "-q"]) == 2
    assert script.main(["--help"]) == 0


def test_overwrite_replaces(tmp_path, folder, models_args):
    out = tmp_path / "out.csv"
    out.write_text("old")
    assert script.main([str(folder), "-o", str(out), "--overwrite", *models_args]) == 1
    assert len(read_rows(out)[1]) == 4


def test_resume_finishes_an_interrupted_run(tmp_path, folder, models_args):
    full = tmp_path / "full.csv"
    script.main([str(folder), "-o", str(full), "--recursive", *models_args])
    partial = tmp_path / "partial.csv"
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    # Interrupted after two rows, in the middle of writing the third.
    partial.write_text("".join(lines[:3]) + lines[3][:10], encoding="utf-8")
    assert script.main([str(folder), "-o", str(partial), "--recursive", "--resume", *models_args]) == 1
    assert partial.read_text(encoding="utf-8") == full.read_text(encoding="utf-8")


def test_soft_routing_flag(tmp_path, wav_file, tiny_models):
    out = tmp_path / "out.csv"
    args = [str(wav_file("x.wav")), "-o", str(out), "--routing", "soft", "--gender-model",
            str(tiny_models["even_gender"]), "--male-model", str(tiny_models["male"]),
            "--female-model", str(tiny_models["female"]), "-q"]
    assert script.main(args) == 0
    row = read_rows(out)[1][0]
    assert row["emotion_model"] == "blended"
    assert float(row["prob_sad"]) == pytest.approx(float(row["prob_angry"]), abs=1e-3)
    assert np.isclose(float(row["gender_prob_female"]), 0.5, atol=1e-3)


def test_jobs_give_the_same_rows(folder, tmp_path, models_args):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert script.main([str(folder), "-o", str(one), "--recursive", *models_args]) == 1
    assert script.main([str(folder), "-o", str(two), "--recursive", "--jobs", "2", "--batch-size", "2",
                        *models_args]) == 1
    rows1, rows2 = read_rows(one)[1], read_rows(two)[1]
    assert [r["file"] for r in rows1] == [r["file"] for r in rows2]
    for a, b in zip(rows1, rows2):
        assert (a["status"], a["gender"], a["emotion"]) == (b["status"], b["gender"], b["emotion"])
        if a["status"] == "ok":
            for label in EMOTION_LABELS:
                assert float(a[f"prob_{label}"]) == pytest.approx(float(b[f"prob_{label}"]), abs=2e-4)
