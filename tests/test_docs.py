"""The README is for users and short; docs/results.md is generated from reports/metrics.json."""
from __future__ import annotations

import json
import re

from pipeline.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
METRICS = PROJECT_ROOT / "reports" / "metrics.json"


def test_readme_is_short_and_keeps_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 8000
    assert "    make app\n" in text and "    make test\n" in text


def test_results_doc_is_generated_from_the_committed_metrics(tmp_path):
    """docs/results.md is exactly what `python -m pipeline.evaluate` writes for reports/metrics.json."""
    from training.metrics_report import write_results_doc

    out = tmp_path / "results.md"
    write_results_doc(json.loads(METRICS.read_text(encoding="utf-8")), out)
    assert (DOCS / "results.md").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_readme_headline_figures_match_the_metrics():
    """The few `test` figures the README quotes are the ones evaluate computed."""
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    g, cascade = metrics["gender"], metrics["emotion"]["cascade"]
    seen = g["seen_corpora"]
    assert f"**gender: {pct(seen['accuracy'])}** of {seen['n']} clips of the six corpora" in text
    assert len(seen["corpora"]) == 6 and set(g["never_seen"]) <= {"nemo"}  # nEMO: emotion-only training corpus
    iv = seen["interval"]
    assert f"over the\n  {iv['n_groups']} speakers: {pct(iv['low'])}-{pct(iv['high'])}" in text
    others = [c["accuracy"] for k, c in g["per_corpus"].items() if k != "speechocean"]
    assert f"{pct(min(others))}-100% per corpus, {pct(g['per_corpus']['speechocean']['accuracy'])} on speechocean" in text
    assert max(others) == 1.0
    # corpora never seen: the six leave-one-corpus-out folds of the shipped gender stage (studies/gender_fusion's rule)
    rule = json.loads((PROJECT_ROOT / "studies/gender_fusion/rule_report.json").read_text())
    held = [f["candidates"][rule["decision"]["shipped"]]["accuracy"]["estimate"] for f in rule["folds"].values()]
    assert f"**gender: {pct(min(held))} to {pct(max(held))}** on a corpus never seen (mean {pct(sum(held) / 6)} over six" in text
    degraded = [c["accuracy"] for k, c in metrics["gender_robustness"]["conditions"].items() if k != "clean"]
    assert f"with noise at 10 dB SNR: {pct(min(degraded))}-{pct(max(degraded))}" in text
    assert f"**emotion, 8 classes: {pct(cascade['overall']['accuracy'])}**" in text
    assert f"**{pct(cascade['ravdess']['accuracy'])}** on the RAVDESS test actors" in text


def test_relative_links_in_readme_and_docs_resolve():
    missing = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                missing.append(f"{page.relative_to(PROJECT_ROOT)} -> {target}")
    assert not missing, missing
