"""training.reporting: every report records the run that made it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.reporting import command_line, gender_training, pct, write_report


def test_write_report_records_command_config_and_commit(tmp_path):
    args = argparse.Namespace(out=tmp_path / "r", clips=4, kinds=("pink",))
    payload = {"figure": 0.5}
    md = write_report(tmp_path / "r", payload, "# R\n", command="python -m studies.x --clips 4", config=args)
    assert md.read_text() == "# R\n" and payload == {"figure": 0.5}  # the payload is not modified
    data = json.loads((tmp_path / "r.json").read_text())
    run = data.pop("run")
    assert data == payload
    assert run["command"] == "python -m studies.x --clips 4"
    assert run["config"] == {"out": str(tmp_path / "r"), "clips": 4, "kinds": ["pink"]}
    assert set(run["git"]) == {"commit", "dirty"}
    assert run["git"]["commit"] is None or len(run["git"]["commit"]) == 40  # None outside a git checkout
    assert run["date"] and run["versions"]["python"]


def test_write_report_keeps_dots_in_the_stem(tmp_path):
    write_report(tmp_path / "a.v2", {}, "x")
    assert (tmp_path / "a.v2.json").is_file() and (tmp_path / "a.v2.md").is_file()


def test_command_line_and_pct():
    assert command_line("studies.noise_study", ["--clips", "8", "--out", "a b"]) == \
        "python -m studies.noise_study --clips 8 --out 'a b'"
    assert command_line("pipeline.bench", []) == "python -m pipeline.bench"
    assert pct(0.98256) == "98.3%" and pct(None) == "n/a" and pct(None, missing="–") == "–"


def test_gender_training_reads_metadata(tmp_path):
    assert gender_training(tmp_path) == {} and gender_training("hub/id") == {}
    (tmp_path / "metadata.json").write_text(json.dumps({"training": {
        "noise_kinds": ["white", "pink"], "fit_splits": ["train", "val"], "seed": 1, "best_epoch": 80, "epochs": 80}}))
    got = gender_training(Path(tmp_path))
    assert got["noise"] == "white + pink" and got["fitted on"] == "train + val" and got["epoch kept"] == "80 of 80"
