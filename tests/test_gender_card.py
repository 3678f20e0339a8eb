"""The gender model card's sections of studies/gender_fusion (training.gender_cards.gender_card / write_gender_card).

One tiny model is trained for the module on the synthetic two-corpus manifest of
:func:`training.testing.write_two_corpora` (``syn``: 4 train / 2 val / 2 test speakers per gender,
``other``: 1 / 1 / 2; two clips each), fitted on ``train`` + ``val`` with one speaker left out,
so every count below is known in advance.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.testing import TINY_GENDER_WIDTHS
from training.testing import SYNTHETIC_GENDER_RECIPE

LEFT_OUT = "syn_train_male_0"


@pytest.fixture(scope="module")
def tiny_gender(tmp_path_factory) -> SimpleNamespace:
    """``data``: the two-corpus data dir; ``model``: a tiny gender model fitted on train + val without LEFT_OUT."""
    from training.gender_train import train_gender
    from training.testing import write_two_corpora

    root = tmp_path_factory.mktemp("gender_card")
    data = root / "data"
    data.mkdir()
    write_two_corpora(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SER_DATA_DIR", str(data))
        train_gender(root / "model", **SYNTHETIC_GENDER_RECIPE, widths=TINY_GENDER_WIDTHS, epochs=1, samples_per_epoch=16, batch_size=8,
                     speed_factors=(1.0,), evaluate_test=False, fit_splits=("train", "val"),
                     exclude_speakers=(LEFT_OUT,))
    return SimpleNamespace(data=data, model=root / "model")


@pytest.fixture
def model(tiny_gender, tmp_path, monkeypatch) -> Path:
    """A copy of the tiny model (tests may add files to it), with the synthetic corpus as the data dir."""
    monkeypatch.setenv("SER_DATA_DIR", str(tiny_gender.data))
    return Path(shutil.copytree(tiny_gender.model, tmp_path / "model"))


def _no_report(tmp_path: Path) -> Path:
    return tmp_path / "no_report.json"


# ----------------------------------------------------------------------------- training speakers


def test_speakers_table_counts_the_fitted_manifest_rows(model, tmp_path):
    from training.gender_cards import gender_card, model_card

    card = gender_card(model, None, _no_report(tmp_path))
    assert "## Training speakers per corpus" in card
    # corpus | female speakers | male speakers | female clips | male clips
    assert "| other | 2 | 2 | 4 | 4 |" in card
    assert "| syn | 6 | 5 | 12 | 10 |" in card       # syn male: 3 train + 2 val speakers, LEFT_OUT not counted
    assert "| **all** | 8 | 7 | 16 | 14 |" in card
    assert "The manifest lists" not in card           # 30 clips in the manifest, 30 fitted
    assert f"Left out of fitting, and not counted above: 1 speaker(s), {LEFT_OUT}" in card
    assert "They hold 2 clip(s) of the fitted splits" in card
    # the new sections come before the known limits, the training card is otherwise unchanged
    meta = json.loads((model / "metadata.json").read_text())
    assert card.index("## Training speakers per corpus") < card.index("## Known limits")
    assert (model / "README.md").read_text() == model_card(meta, model)


def test_speechocean_speakers_left_out_are_named_with_the_reason():
    from training.gender_card_sections import PITCH_REASON, speaker_section

    def row(speaker, gender, split="train", corpus="speechocean"):
        return SimpleNamespace(corpus=corpus, speaker=speaker, gender=gender, split=split)

    manifest = [row("speechocean_1", "male"), row("speechocean_1", "male"), row("speechocean_2", "male"),
                row("speechocean_3", "female"), row("speechocean_4", "female", split="test"),
                row("speechocean_5", "unknown"), row("ravdess_1", "male", corpus="ravdess")]
    meta = {"training": {"fit_splits": ["train"], "corpora": ["speechocean"], "excluded_corpora": [],
                         "excluded_speakers": ["speechocean_1"], "n_train": 2}}
    text = "\n".join(speaker_section(meta, manifest))
    assert "| speechocean | 1 | 1 | 1 | 1 |" in text   # speechocean_1's two clips are not counted
    assert f"speechocean_1 ({PITCH_REASON})" in text
    assert "robust_plan.md" in text and "They hold 2 clip(s)" in text


def test_unreadable_manifest_falls_back_to_the_clip_counts(model, tmp_path, monkeypatch):
    from training.gender_cards import gender_card

    monkeypatch.setenv("SER_DATA_DIR", str(tmp_path / "nowhere"))
    card = gender_card(model, None, _no_report(tmp_path))
    assert "Speakers: unknown" in card
    assert "| syn | ? | ? | 12 | 10 |" in card and "| **all** | ? | ? | 16 | 14 |" in card
    assert f"Left out of fitting, and not counted above: 1 speaker(s), {LEFT_OUT}" in card


# ----------------------------------------------------------------------------- leave one corpus out


def _fold(acc: float, clips: int = 100, speakers: int = 10) -> dict:
    """A fold of studies/gender_fusion/report.json where every method scores ``acc`` (GE2E-LR 1 point more)."""
    def method(a: float) -> dict:
        return {"clips": clips, "speakers": speakers, "female": a, "male": a,
                "accuracy": {"estimate": a, "low": a - 0.02, "high": min(a + 0.01, 1.0), "level": 0.95,
                             "n_boot": 2000, "n_groups": speakers}}
    return {"corpus": "x", "ecapa_weight": 0.75, "ecapa_temperature": 0.7, "ge2e_temperature": 0.9,
            "methods": {"ecapa": method(acc), "ge2e_lr": method(acc + 0.01), "fused": method(acc),
                        "fused_half": method(acc)}}


def _write_report(path: Path, accuracies: dict[str, float]) -> Path:
    from studies.gender_fusion.study import decide

    folds = {c: _fold(a) for c, a in accuracies.items()}
    path.write_text(json.dumps({"folds": folds, "summary": decide(folds)}), encoding="utf-8")
    return path


def test_loco_constants_follow_the_study():
    from studies.gender_fusion.study import CORPORA
    from training.gender_card_sections import LOCO_CORPORA

    assert LOCO_CORPORA == CORPORA


def test_loco_table_and_target_with_four_folds(model, tmp_path):
    from training.gender_cards import gender_card

    report = _write_report(tmp_path / "r.json", {"ravdess": 0.98, "librispeech": 0.90, "ased": 0.95, "emovo": 0.97})
    card = gender_card(model, None, report)
    assert "## On corpora never seen (leave-one-corpus-out)" in card
    assert "Folds in: 4 of 6 (not yet: savee, speechocean)." in card
    assert "| librispeech | 100 | 10 | 90.0% (88.0%-91.0%) | 91.0% (89.0%-92.0%) | 90.0% (88.0%-91.0%) |" in card
    assert "| **mean of 4** | | | **95.0%** | **96.0%** | **95.0%** |" in card
    assert "`studies/gender_fusion/report.md`" in card and "(`train` split only)" in card
    assert "- ECAPA (the method of this folder): **not met** (below 92%: librispeech 90.0%; mean of 4 folds 95.0%)" in card
    assert "- GE2E-LR: **not met** (below 92%: librispeech 91.0%;" in card


def test_loco_target_undecided_met_and_not_met(model, tmp_path):
    from training.gender_cards import gender_card

    four = _write_report(tmp_path / "four.json", {"ravdess": 0.98, "librispeech": 0.93, "ased": 0.95, "emovo": 0.97})
    card = gender_card(model, None, four)
    assert "- ECAPA (the method of this folder): not decided yet (every fold so far >= 92%; mean of 4 folds 95.8%; " \
           "waiting for savee, speechocean)" in card
    six = dict(ravdess=0.98, savee=0.97, librispeech=0.96, ased=0.95, emovo=0.97, speechocean=0.93)
    card = gender_card(model, None, _write_report(tmp_path / "six.json", six))
    assert "Folds in:" not in card and "| **mean of 6** |" in card
    # means: ECAPA 96.0% (met), GE2E-LR 97.0% (met); fused as ECAPA
    assert "- ECAPA (the method of this folder): **met** (every corpus >= 92%; mean of 6 folds 96.0%)" in card
    assert "- GE2E-LR: **met**" in card
    # the fusion does not beat the better single model (GE2E-LR) by a point: the ECAPA ships alone
    assert "The study's decision rule (`studies/gender_fusion/plan.md`) ships: ECAPA." in card
    six = {c: a - 0.01 for c, a in six.items()}  # every corpus still >= 92%, ECAPA mean 95.0%
    card = gender_card(model, None, _write_report(tmp_path / "low.json", six))
    assert "- ECAPA (the method of this folder): **not met** (every corpus >= 92%, but mean of 6 folds 95.0% < 96%)" in card


# ----------------------------------------------------------------------------- robustness and calibration


def _robustness_metrics() -> dict:
    from training.gender_conditions import ConditionScore, CorpusScore, RobustnessTable

    def score(name: str, correct: int, flipped: int) -> ConditionScore:
        return ConditionScore(name, n=200, correct=correct, flipped=flipped, failed=0,
                              per_corpus={"syn": CorpusScore(200, correct)})

    table = RobustnessTable({"clean": score("clean", 190, 0), "pcm_u8": score("pcm_u8", 187, 5),
                             "pink_10db": score("pink_10db", 170, 24)})
    return {"split": "test", "gender_robustness": {"split": "test", "target_pts": 2.0, "conditions": table.to_dict()},
            "gender_calibration": {"n": 200, "p_female": {"ece": 0.0384, "bins": []}, "top_label": {"ece": 0.0349},
                                   "seen_corpora": {"n": 150, "p_female_ece": 0.06, "top_label_ece": 0.0586}}}


def test_robustness_table_points_and_targets(model, tmp_path):
    from training.gender_cards import gender_card

    card = gender_card(model, _robustness_metrics(), _no_report(tmp_path))
    assert "## Robustness" in card and "at most 2 points below clean" in card
    assert "| as recorded | 200 | 95.0% | – | – | – |" in card
    assert "| 8-bit unsigned PCM WAV (level kept) | 200 | 93.5% | -1.5 pts | 2.5% | met |" in card
    assert "| pink noise, 10 dB SNR | 200 | 85.0% | -10.0 pts | 12.0% | **not met** |" in card
    assert "Target met under 1 of 2 degraded conditions." in card
    assert "## Calibration" in card and "**0.038**" in card and "0.060 and 0.059" in card
    assert card.index("## Robustness") < card.index("## Known limits")


def test_missing_data_omits_sections(model, tmp_path):
    from training.gender_cards import gender_card

    card = gender_card(model, {"split": "test"}, _no_report(tmp_path))
    for heading in ("leave-one-corpus-out", "## Robustness", "## Calibration", "GE2E"):
        assert heading not in card
    # metrics measured on another model are not put on this card
    other = {**_robustness_metrics(), "gender_model": str(tmp_path / "another_model")}
    card = gender_card(model, other, _no_report(tmp_path))
    assert "## Robustness" not in card and "## Calibration" not in card
    same = {**_robustness_metrics(), "gender_model": str(model)}
    assert "## Robustness" in gender_card(model, same, _no_report(tmp_path))


def test_fusion_json_adds_the_ge2e_licence_and_settings(model, tmp_path):
    from pipeline.gender_fusion import GE2EHead, GenderFusion
    from training.gender_cards import RESEARCH_SENTENCE, write_gender_card

    GenderFusion(GE2EHead(np.zeros(256), 0.1), ecapa_temperature=0.74, ge2e_temperature=0.92, ecapa_weight=0.75,
                 provenance={"command": "python -m training.gender_fusion"}).save(model)
    report = _write_report(tmp_path / "r.json", {"ravdess": 0.98, "librispeech": 0.90})
    path = write_gender_card(model, None, report)
    card = path.read_text()
    assert path == model / "README.md"
    assert "`pretrained.pt`, Apache-2.0; trained by its authors on LibriSpeech, VoxCeleb1 and VoxCeleb2" in card
    assert "ECAPA weight w = 0.75, temperatures T_ecapa = 0.74 and T_ge2e = 0.92" in card
    assert "command: python -m training.gender_fusion" in card
    # the paragraph follows the licences of the training data, which keep the RAVDESS sentence
    assert card.index(RESEARCH_SENTENCE) < card.index("Apache-2.0") < card.index("## Known limits")
    assert "CC BY-NC-SA 4.0 terms: non-commercial use only" in card
    assert "- fused (the method of this folder):" in card


def test_speechocean_licence_is_listed_when_fitted():
    from training.gender_cards import LICENCES

    assert LICENCES["speechocean"].startswith("speechocean762 (Zhang et al. 2021): free for commercial")


def test_rule_section_lists_the_complete_candidates_and_judges_the_shipped_one():
    """The card's never-seen table from the rule report: candidates with all six folds, the shipped one marked."""
    from training.gender_card_sections import LOCO_CORPORA, rule_section

    def acc(a: float, female: float | None = 0.9, male: float = 0.8) -> dict:
        return {"clips": 100, "accuracy": {"estimate": a, "low": a - 0.02, "high": a + 0.01}, "female": female, "male": male}

    values = dict(ravdess=0.99, savee=0.93, librispeech=0.89, ased=0.78, emovo=0.99, speechocean=0.93)
    folds = {c: {"candidates": {"E0": acc(a - 0.02), "F*(E0,Gd)": acc(a, female=None if c == "savee" else 0.95),
                                **({"R": acc(0.8)} if c == "ased" else {})}} for c, a in values.items()}
    lines = "\n".join(rule_section({"folds": folds, "decision": {"winner": "F*(E0,Gd)"}}, shipped="F*(E0,Gd)"))
    assert "R" not in [n for n in lines.split("|")]  # R has one fold only: not a column
    assert "| ased | 100 | 76.0% (74.0%-77.0%) | 78.0% (76.0%-79.0%) |" in lines
    assert "| **mean of 6** | | **89.8%** | **91.8%** |" in lines
    # the ECAPA alone, the second opinion alone (not in this report) and the shipped stage: no other column
    assert "| held out | clips | ECAPA, plain recipe | fused: ECAPA + GE2E-LR with degraded copies (this folder) |" in lines
    assert "| women / men (mean of the folds) | | 90.0% / 80.0% | 95.0% / 80.0% |" in lines  # SAVEE: no women
    assert "this folder's method: **not met** (below 88.0%: ased 78.0%; mean 91.8%)." in lines
    assert rule_section({"folds": {"ravdess": folds["ravdess"]}}, shipped="E0") == []  # a fold missing: no section
    assert rule_section({"folds": folds}, shipped="Gd") == []                           # the shipped one not in it


def test_rule_section_shows_the_robust_first_opinion_of_a_robust_fusion():
    """A fusion over the robust ECAPA: its own first opinion (R) is a column beside E0, the second and the stage."""
    from training.gender_card_sections import LOCO_CORPORA, rule_section

    def acc(a: float) -> dict:
        return {"clips": 10, "accuracy": {"estimate": a, "low": a, "high": a}, "female": a, "male": a}

    folds = {c: {"candidates": {"E0": acc(0.8), "R": acc(0.85), "Gd": acc(0.9), "F*(R,Gd)": acc(0.95),
                                "F*(E0,Gd)": acc(0.93)}} for c in LOCO_CORPORA}
    lines = "\n".join(rule_section({"folds": folds}, shipped="F*(R,Gd)"))
    assert ("| held out | clips | ECAPA, plain recipe | ECAPA, robust recipe | GE2E-LR (degraded copies) alone | "
            "fused: robust ECAPA + GE2E-LR with degraded copies (this folder) |") in lines
    assert "| **mean of 6** | | **80.0%** | **85.0%** | **90.0%** | **95.0%** |" in lines
