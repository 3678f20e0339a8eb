"""The report notebooks: committed with outputs, in step with their sources, and runnable.

The evaluation notebook is executed on a small fixed subset of the test split (about 40 clips) so
a broken notebook fails CI; the data and training notebooks are cheap enough to run whole; the noise
study runs on a handful of clips. The baselines notebook (features of the whole corpus, then grid
searches: about six minutes here) is covered by tests/test_baselines.py and by its committed outputs.
"""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("nbformat", reason="needs the full profile: the notebooks")
import nbformat  # noqa: E402

from pipeline.paths import PROJECT_ROOT as ROOT  # noqa: E402
sys.path.insert(0, str(ROOT / "notebooks"))

import run as notebook_runner  # noqa: E402  (notebooks/run.py)


def _outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _text(nb) -> str:
    parts = []
    for o in _outputs(nb):
        parts.append(o.get("text", ""))
        data = o.get("data", {})
        parts.append(data.get("text/plain", "") + data.get("text/markdown", "") + data.get("text/html", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("notebook", notebook_runner.NOTEBOOKS, ids=lambda n: n.name)
def test_committed_notebook_is_executed_and_current(notebook):
    path = ROOT / "notebooks" / f"{notebook.name}.ipynb"
    assert path.is_file(), f"run `make notebooks`: {path.name} is missing"
    committed = nbformat.read(path, as_version=4)
    expected = notebook_runner.build(notebook)
    code = [c.source for c in committed.cells if c.cell_type == "code"]
    assert code == [c.source for c in expected.cells if c.cell_type == "code"], \
        f"{path.name} is older than notebooks/src/{notebook.source}: run `python notebooks/run.py {notebook.name}`"
    assert all(c.execution_count is not None for c in committed.cells if c.cell_type == "code")
    assert not [o for o in _outputs(committed) if o.output_type == "error"]
    assert _images(committed) >= 1


def _run(name: str, tmp_path, **params):
    out = notebook_runner.execute(name, params=params, out_dir=tmp_path, timeout=600)
    nb = nbformat.read(out, as_version=4)
    assert not [o for o in _outputs(nb) if o.output_type == "error"]
    return nb


def test_evaluation_notebook_on_a_subset(tmp_path, shared_data):
    nb = _run("3_evaluation", tmp_path, LIMIT=40, ROBUSTNESS_CLIPS=2, N_REPEATS=1, N_AUDIO=1)
    text = _text(nb)
    assert "test clips from" in text and "not compared with reports/metrics.json" in text
    for heading in ("precision", "cascade - true_gender", "gender_unchanged", "# Evaluation on the `test` split"):
        assert heading in text
    assert _images(nb) >= 8  # gender, confusions, ROC/reliability, routing, importance, PCA


def test_data_and_training_notebooks(tmp_path, shared_data):
    assert _images(_run("1_data", tmp_path)) >= 4
    nb = _run("2b_training_female", tmp_path)
    assert "female" in _text(nb) and _images(nb) >= 2


def test_noise_notebook_on_a_few_clips(tmp_path, shared_data):
    nb = _run("5_noise_reduction", tmp_path, N_CLIPS=4, REPORT_DIR=str(tmp_path / "reports"))
    text = _text(nb)
    assert "pipeline`'s default is **off**" in text and "babble" in text
    assert "4 emotional `test` clips" in (tmp_path / "reports" / "report.md").read_text()  # not studies/


def test_parameters_are_injected_after_the_parameters_cell():
    nb = notebook_runner.build(notebook_runner.NOTEBOOKS[1], {"EXTRA": 3})
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1]
    assert "GENDER = 'male'" in nb.cells[at + 1].source and "EXTRA = 3" in nb.cells[at + 1].source


def test_new_corpora_notebook_reads_the_reports(tmp_path):
    """Notebook 6 recomputes its tables from the committed held-out reports, and says when one is missing."""
    import shutil

    nb = _run("6_new_corpora", tmp_path)
    text = _text(nb)
    assert "77.2%" in text and "82.5%" in text  # ASED and LibriSpeech held out (studies/gender_holdout/report.json)
    assert _images(nb) >= 3
    only_gender = tmp_path / "studies"
    (only_gender / "gender_holdout").mkdir(parents=True)
    shutil.copy(ROOT / "studies" / "gender_holdout" / "report.json", only_gender / "gender_holdout")
    nb = _run("6_new_corpora", tmp_path / "second", REPORT_DIR=str(only_gender))
    assert "emotion_holdout/report.json` is missing" in _text(nb)
