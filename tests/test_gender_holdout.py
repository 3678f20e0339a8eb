"""Held-out-corpus gender check: training without a corpus, and the report's known answers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.corpus import Utterance
from studies.gender_holdout.study import main, speaker_interval, speaker_view
from pipeline.testing import TINY_GENDER_WIDTHS as TINY_WIDTHS, make_gender_model
from training.testing import write_two_corpora


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_corpora")
    write_two_corpora(root)
    return root


def _rows(spec: dict[str, str]) -> list[Utterance]:
    return [Utterance(Path(f"{s}.wav"), "c", s, g, "", "", "xx", "test", 1.0) for s, g in spec.items()]


def test_speaker_view_known_answer():
    metrics = {"per_speaker": {
        "a": {"n": 10, "correct": 10, "accuracy": 1.0},
        "b": {"n": 10, "correct": 9, "accuracy": 0.9},   # exactly at the threshold: not weak
        "c": {"n": 10, "correct": 4, "accuracy": 0.4},   # mostly wrong
        "d": {"n": 4, "correct": 3, "accuracy": 0.75},
    }}
    view = speaker_view(metrics, _rows({"a": "male", "b": "female", "c": "male", "d": "female"}))
    assert view.n_speakers == 4 and view.mostly_right == 3
    assert [(w.speaker, w.gender, w.n) for w in view.weak] == [("c", "male", 10), ("d", "female", 4)]
    assert view.share_of_errors_in_weak == pytest.approx(7 / 8)
    low, high = speaker_interval(metrics, n_boot=500)
    assert low <= 26 / 34 <= high and 0.4 <= low and high <= 1.0
    from studies.gender_holdout.study import MAX_NAMED, _weak_list
    many = {"per_speaker": {f"s{i:02d}": {"n": 2, "correct": 0, "accuracy": 0.0} for i in range(MAX_NAMED + 3)}}
    text = _weak_list(speaker_view(many, _rows({f"s{i:02d}": "female" if i % 2 else "male"
                                                 for i in range(MAX_NAMED + 3)})))
    assert text.count(" of 2)") == MAX_NAMED and text.endswith("and 3 more (1 female, 2 male)")
    perfect = {"per_speaker": {"a": {"n": 3, "correct": 3, "accuracy": 1.0}}}
    assert speaker_interval(perfect, n_boot=50) == [1.0, 1.0]
    assert speaker_view(perfect, _rows({"a": "male"})).share_of_errors_in_weak == 0.0


def test_train_gender_without_a_corpus(corpus_dir, tmp_path, monkeypatch):
    from training.gender_train import train_gender

    monkeypatch.setenv("SER_DATA_DIR", str(corpus_dir))
    meta = train_gender(tmp_path / "m", second_opinion=None, epochs=1, samples_per_epoch=16, batch_size=8, widths=TINY_WIDTHS,
                        speed_factors=(1.0,), exclude_corpora=("other",), noise_kinds=("white",))  # no readers for babble
    tr = meta["training"]
    assert tr["excluded_corpora"] == ["other"] and tr["corpora"] == ["syn"]
    assert tr["n_train"] == 24 and set(tr["train_rows"]) == {"syn/female", "syn/male"}
    # the test metrics still score the held-out corpus's test rows
    assert meta["test_metrics"]["per_corpus"]["other"]["n"] == 8
    assert meta["test_metrics"]["overall"]["n"] == 16
    assert set(meta["test_metrics"]["per_speaker"]) == {
        f"{c}_test_{g}_{s}" for c in ("syn", "other") for g in ("male", "female") for s in range(2)}
    with pytest.raises(ValueError, match="not in the manifest"):
        train_gender(tmp_path / "x", second_opinion=None, epochs=1, exclude_corpora=("nonesuch",))
    with pytest.raises(ValueError, match="babble"):
        train_gender(tmp_path / "x", second_opinion=None, epochs=1, noise_kinds=("babble",), exclude_corpora=("librispeech", "other"))


def test_holdout_report_known_answers(corpus_dir, tmp_path, monkeypatch, capsys):
    # held-out model: always female (softmax([0, 4])), trained "without" corpus other;
    # reference: always male (softmax([0, -4])), trained on everything
    monkeypatch.setenv("SER_DATA_DIR", str(corpus_dir))
    held = make_gender_model(tmp_path / "held", female_logit=4.0)
    (held / "metadata.json").write_text(json.dumps({"training": {"excluded_corpora": ["other"]}}))
    ref = make_gender_model(tmp_path / "ref", female_logit=-4.0)
    stem = tmp_path / "reports" / "holdout"
    assert main(["--models", str(held), "--reference", str(ref), "--out", str(stem)]) == 0
    data = json.loads(stem.with_suffix(".json").read_text())
    by = {(r["model"], r["corpus"], r["rows"]): r for r in data["results"]}
    every = by[(str(held), "other", "all")]
    # corpus other: 8 speakers x 2 clips, half female -> 50%; female 8/8, male 0/8
    assert every["metrics"]["overall"] == {"n": 16, "correct": 8, "accuracy": 0.5}
    assert every["metrics"]["per_gender"]["female"]["accuracy"] == 1.0
    assert every["metrics"]["per_gender"]["male"]["accuracy"] == 0.0
    assert every["metrics"]["arousal"]["male_high_arousal"] == {"n": 4, "correct": 0, "accuracy": 0.0}
    assert every["speakers"]["mostly_right"] == 4 and len(every["speakers"]["weak"]) == 4
    assert {w["gender"] for w in every["speakers"]["weak"]} == {"male"}
    assert every["speakers"]["share_of_errors_in_weak"] == 1.0
    assert by[(str(held), "other", "test")]["metrics"]["overall"]["n"] == 8
    assert by[(str(ref), "other", "test")]["metrics"]["overall"]["correct"] == 4  # the 4 male test clips
    assert by[(str(ref), "other", "test")]["held_out"] is False
    whole = by[(str(ref), "all", "test")]
    assert whole["metrics"]["overall"]["n"] == 16 and whole["speakers"]["mostly_right"] == 4
    report = stem.with_suffix(".md").read_text()
    assert "| other |" in report and "50.0%" in report and "4 of 8" in report
    assert "| 8 | 4 | 50.0% (4/8) | 50.0% (4/8) |" in report  # seen vs never seen on the same test rows
    assert report.rstrip("\n") in capsys.readouterr().out  # printed as well as written


def test_holdout_refuses_a_model_that_saw_every_corpus(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SER_DATA_DIR", str(corpus_dir))
    full = make_gender_model(tmp_path / "full", female_logit=0.0)
    with pytest.raises(SystemExit) as exc:
        main(["--models", str(full), "--reference", "none"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--models", str(tmp_path / "missing"), "--reference", "none"])
    assert exc.value.code == 2
