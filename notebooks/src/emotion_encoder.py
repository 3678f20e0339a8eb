# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 7. Emotion with a pretrained speech encoder
#
# The emotion models read librosa statistics of a clip (pitch, energy, spectral shape, MFCCs
# and their spreads). Those numbers describe *this* microphone, room and voice as much as
# the emotion, and an emotion model trained on them falls close to chance on a corpus it never
# heard ([notebook 6](6_new_corpora.ipynb)). The question of this notebook: does a **pretrained
# speech encoder**, the audio encoder of Whisper tiny.en (trained by OpenAI to transcribe speech,
# frozen here), read beside the librosa statistics, make emotion carry to **new speakers** and to
# **whole corpora never seen**? And should nEMO (Polish acted speech) be among the training
# corpora?
#
# The study is `studies/emotion_encoder/` (`python -m studies.emotion_encoder`). Its protocol and
# its decision rule are in `studies/emotion_encoder/plan.md`, written before any candidate was
# fitted. Each candidate is fitted with one seed by the shipped emotion recipe (pooled
# pre-training, then one model per gender), without the augmented copies (plan amendment 1), and
# scored two ways, clips routed to the model of the speaker's true gender so that the figures are
# about emotion alone:
#
# * **leave one corpus out (LOCO)**: fit on `train` + `val` of the other emotional corpora, score
#   every clip of the one left out;
# * **`val`**: fit on `train` of every corpus, score the `val` speakers (new speakers of known
#   corpora).
#
# The fits take hours on this 2-core machine, so this notebook reads what they wrote: the report
# `studies/emotion_encoder/report.json` (`python -m studies.emotion_encoder report`) and the
# per-clip probabilities in `studies/emotion_encoder/preds/<candidate>/<fold>.csv.gz`. Intervals
# are 95% bootstrap intervals over speakers.

# %% tags=["parameters"]
REPORT_DIR = None  # a folder laid out like studies/ to read the report and the predictions from (None: the repository's studies/)
METRICS_FILE = None  # the evaluation's metrics to read the shipped models' robustness from (None: reports/metrics.json)

# %%
import json
import sys
import textwrap
from pathlib import Path

ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from pipeline.emotion import EMOTION_LABELS
from studies.emotion_encoder.study import CANDIDATES, CORPORA, LATE, NONEMO, SHIPPABLE, base_name
from training.emotion_conditions import EMOTION_CONDITIONS
from training.gender_conditions import DESCRIPTIONS

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
pd.set_option("display.max_colwidth", None)
studies = Path(REPORT_DIR) if REPORT_DIR else ROOT / "studies"
preds_dir = studies / "emotion_encoder" / "preds"
metrics_file = Path(METRICS_FILE) if METRICS_FILE else ROOT / "reports" / "metrics.json"


def load(stem: str) -> dict | None:
    """The report ``studies/STEM.json`` (e.g. ``emotion_encoder/report``), None when it is missing."""
    path = studies / f"{stem}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


PROB = [f"p_{label}" for label in EMOTION_LABELS]


def load_preds(name: str, fold: str) -> pd.DataFrame | None:
    """A fold's per-clip probabilities (a ``late_*`` candidate: the mean of its two parts), None when missing."""
    if base_name(name) in LATE:
        parts = [load_preds(p + (NONEMO if name.endswith(NONEMO) else ""), fold) for p in LATE[base_name(name)]]
        if any(p is None for p in parts):
            return None
        merged = parts[0].copy()
        merged[PROB] = (parts[0][PROB].to_numpy() + parts[1].set_index("path").loc[parts[0]["path"], PROB].to_numpy()) / 2
        return merged
    path = preds_dir / name / f"{fold}.csv.gz"
    if not path.is_file() and name.endswith(NONEMO) and fold == "nemo":
        path = preds_dir / base_name(name) / "nemo.csv.gz"  # nEMO's fold never trains on nEMO: the same fit
    return pd.read_csv(path) if path.is_file() else None


report = load("emotion_encoder/report")
if report is None:
    raise FileNotFoundError(f"{studies / 'emotion_encoder' / 'report.json'} is missing: "
                            "run the fits (studies/emotion_encoder/queue.sh), then python -m studies.emotion_encoder report")
print(report["run"]["command"], "-", report["run"]["date"][:10], "- commit", report["run"]["git"]["commit"][:7])
candidates = report["candidates"]
done = {name: s for name, s in candidates.items() if s is not None}
missing = [name for name, s in candidates.items() if s is None]
print(f"{len(done)} of {len(candidates)} candidates have every fold"
      + (f"; not (yet) complete, left out below: {', '.join(missing)}" if missing else ""))

# %% [markdown]
# ## The candidates
#
# `librosa` is today's network on the librosa statistics alone: the reference. `enc_last` reads
# the encoder alone; it is measured to see what the encoder carries, but cannot ship (the design
# keeps the librosa input). The `both_*` networks have two branches, today's network on the
# librosa statistics and a small dense network on the encoder's hidden states (each averaged over
# time, mean and standard deviation), joined before the last layers. `late_last` is no new fit: the
# mean of the `librosa` and `enc_last` probabilities. A `_nonemo` name is the same candidate
# trained without nEMO. The encoder has five hidden states: after its input stem (state 0) and
# after each of its four blocks (the last one, 4, is what Whisper's decoder reads).

# %%
WORDS = {
    "librosa": "librosa statistics only (today's network)",
    "enc_last": "encoder only, last state",
    "both_last": "librosa + encoder, last state",
    "both_all": "librosa + encoder, all five states concatenated",
    "both_wsum": "librosa + encoder, a learnt weighted sum of the five states",
    "both_last_mean": "librosa + encoder, last state, mean only (no standard deviation)",
    "late_last": "mean of the librosa and the encoder-only model's probabilities",
}


def encoder_dims(name: str) -> int:
    """Width of the encoder input a candidate reads (384 values per state and statistic)."""
    from pipeline.whisper_encoder import WIDTH

    if base_name(name) in LATE:
        return max(encoder_dims(part) for part in LATE[base_name(name)])
    keys = CANDIDATES[base_name(name)]
    layers = keys.get("encoder_layers", ())
    return len(layers) * WIDTH * (1 if keys.get("encoder_pooling") == "mean" else 2)


about = pd.DataFrame([{
    "candidate": name,
    "input": WORDS.get(base_name(name), base_name(name)) + (", without nEMO" if name.endswith(NONEMO) else ""),
    "encoder values": encoder_dims(name),
    "may ship (keeps librosa)": "yes" if base_name(name) in SHIPPABLE else "no",
    "in the report": "yes" if candidates[name] is not None else "not complete yet",
} for name in candidates]).set_index("candidate")
display(about)

# %% [markdown]
# ## Corpora never seen, and new speakers
#
# Left: accuracy on each corpus left out of training, every clip of it, for every candidate with
# all its folds; the black dash is the share of the corpus's commonest emotion (what always
# answering that label would score). Right: accuracy on the `val` speakers of the known corpora.

# %%
names = list(done)
first = done.get("librosa") or next(iter(done.values()))
fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3.2, 1]}, sharey=True)
x = np.arange(len(CORPORA))
width = 0.8 / len(names)
for k, name in enumerate(names):
    folds = done[name]["folds"]
    acc = np.array([folds[c]["accuracy"] for c in CORPORA])
    low = np.array([folds[c]["interval"][0] for c in CORPORA])
    high = np.array([folds[c]["interval"][1] for c in CORPORA])
    ax.bar(x - 0.4 + (k + 0.5) * width, acc, width, yerr=[acc - low, high - acc], capsize=2,
           color=f"C{k}", label=name, error_kw={"lw": 0.8})
    v = folds["val"]
    ax2.bar(k, v["accuracy"], 0.8, yerr=[[v["accuracy"] - v["interval"][0]], [v["interval"][1] - v["accuracy"]]],
            capsize=3, color=f"C{k}", error_kw={"lw": 0.8})
for i, c in enumerate(CORPORA):
    ax.hlines(first["folds"][c]["chance"], i - 0.45, i + 0.45, colors="k", lw=2,
              label="chance (commonest label)" if i == 0 else None)
ax2.axhline(first["folds"]["val"]["chance"], color="k", lw=2)
ax.set_xticks(x, CORPORA)
ax.set_ylabel("emotion accuracy (95% CI over speakers)")
ax.set_title("Corpus left out of training (LOCO)")
ax.set_ylim(0, min(1.0, max(s["folds"][f]["interval"][1] for s in done.values() for f in s["folds"]) + 0.08))
ax.legend(fontsize=8, ncol=2, loc="upper left")
ax2.set_xticks(range(len(names)), names, rotation=35, ha="right")
ax2.set_title("New speakers of known corpora (val)")
plt.tight_layout()
plt.show()

summary = pd.DataFrame({name: {"LOCO mean": s["loco_mean"], "val": s["val"], "score S": s["score"],
                               **{f"LOCO {c}": s["folds"][c]["accuracy"] for c in CORPORA}}
                        for name, s in done.items()}).T.rename_axis("candidate")
summary.loc["chance"] = [np.mean([first["folds"][c]["chance"] for c in CORPORA]), first["folds"]["val"]["chance"],
                         np.nan, *[first["folds"][c]["chance"] for c in CORPORA]]
display(summary.style.format("{:.1%}", na_rep="–"))

# %% [markdown]
# S = 0.5 x (mean LOCO accuracy over the five corpora) + 0.5 x (`val` accuracy): corpora never
# seen weigh as much as new speakers. The `chance` row is always answering each fold's commonest
# label (its LOCO mean is the mean of the five corpora's chance levels).
#
# ## The decision
#
# The rule of `plan.md`: among the candidates that keep the librosa input, the highest S wins if
# its LOCO mean is at least 3 points above `librosa`'s and its `val` accuracy at most 2 points
# below; within 0.5 points of S the one reading fewer encoder values wins. Then the winner is
# refitted without nEMO, and nEMO leaves training only if that raises S by more than 0.5 points.

# %%
MIN_LOCO_GAIN_PTS, MAX_VAL_DROP_PTS = 3.0, 2.0  # plan.md, rule 1 (studies.emotion_encoder.study.decide)
decision = report["decision"]
checks = pd.DataFrame(decision["checks"]).T.rename_axis("candidate")
if checks.empty:
    print("no candidate that keeps the librosa input has all its folds yet: the rule has not been applied")
else:
    checks = checks.astype({"score": float, "loco_gain_pts": float, "val_drop_pts": float})
    checks["passes"] = checks["passes"].map({True: "yes", False: "no"})
    display(checks.rename(columns={"score": "S", "loco_gain_pts": "LOCO mean vs librosa, pts",
                                   "val_drop_pts": "val below librosa, pts", "passes": "passes rule 1"})
            .style.format({"S": "{:.1%}", "LOCO mean vs librosa, pts": "{:+.1f}", "val below librosa, pts": "{:+.1f}"}))

winner = decision["winner"]
if winner is not None:
    c = decision["checks"][winner]
    ref = done["librosa"]
    text = (f"**Winner: `{winner}`** ({WORDS.get(base_name(winner), winner)}): S {c['score']:.1%}, LOCO mean "
            f"{done[winner]['loco_mean']:.1%} against `librosa`'s {ref['loco_mean']:.1%} ({c['loco_gain_pts']:+.1f} points), "
            f"`val` {done[winner]['val']:.1%} against {ref['val']:.1%} ({-c['val_drop_pts']:+.1f} points). ")
    nemo = decision["nemo"]
    if nemo is None:
        text += (f"nEMO: the winner's fits without nEMO (`{winner}{NONEMO}`) are not in the report yet, so nEMO "
                 "stays in training for now.")
    else:
        text += (f"nEMO **{'stays in' if nemo['keep_nemo'] else 'leaves'} training**: S without nEMO minus S with it is "
                 f"{nemo['score_without_minus_with_pts']:+.1f} points.")
elif not checks.empty:
    text = "**No candidate passes rule 1: nothing ships.** Short of the rule by: " + "; ".join(
        f"`{n}` LOCO {max(0.0, MIN_LOCO_GAIN_PTS - c['loco_gain_pts']):.1f} points, "
        f"val {max(0.0, c['val_drop_pts'] - MAX_VAL_DROP_PTS):.1f} points"
        for n, c in decision["checks"].items())
else:
    text = "No decision yet."
display(Markdown(text))

# %% [markdown]
# What the nEMO comparison is made of. The fits without nEMO are scored on the same clips as those
# with it, so the `val` clips of a `_nonemo` candidate include nEMO's own `val` speakers, from a
# corpus it never heard; the columns below split `val` by corpus, and the last one leaves nEMO's
# clips out. The nEMO fold is the same fit in both (it never trains on nEMO).

# %%
if winner is not None and done.get(winner + NONEMO) is not None:
    pair = {name: done[name] for name in (winner, winner + NONEMO)}
    rows = {}
    for name, s in pair.items():
        val = load_preds(name, "val")
        right = (np.asarray(EMOTION_LABELS, dtype=object)[val[PROB].to_numpy().argmax(1)] == val.emotion.to_numpy())
        rows[name] = {**{f"LOCO {c}": s["folds"][c]["accuracy"] for c in CORPORA}, "LOCO mean": s["loco_mean"],
                      **{f"val {c}": a for c, a in s["folds"]["val"]["per_corpus"].items()}, "val": s["val"],
                      "val without nEMO's clips": right[(val.corpus != "nemo").to_numpy()].mean(), "S": s["score"]}
    display(pd.DataFrame(rows).T.rename_axis("candidate").style.format("{:.1%}", na_rep="–"))
else:
    print("no winner, or its fits without nEMO are not in the report yet: nothing to compare")

# %% [markdown]
# ## What the winner gets right, and what it confuses
#
# Every LOCO clip of the five folds pooled (each scored by the model that never heard its corpus),
# the label with the highest probability against the true one. Rows are true labels, each row
# sums to 100%. A label that only some corpora have is scored only on those; when its only corpus
# is the one left out, no training corpus had it and it cannot be right (printed below). Left the
# winner (or, while the rule has no winner, the candidate with the highest S), right `librosa`.

# %%
def loco_pooled(name: str) -> pd.DataFrame:
    frame = pd.concat([load_preds(name, c) for c in CORPORA], ignore_index=True)
    frame["predicted"] = np.asarray(EMOTION_LABELS, dtype=object)[frame[PROB].to_numpy().argmax(1)]
    return frame


def confusion(frame: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab(pd.Categorical(frame.emotion, EMOTION_LABELS), pd.Categorical(frame.predicted, EMOTION_LABELS),
                         dropna=False)
    return counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)


if winner is not None:
    shown = winner
elif decision["checks"]:
    shown = max(decision["checks"], key=lambda n: decision["checks"][n]["score"])
else:
    shown = max((n for n in done if n != "librosa"), key=lambda n: done[n]["score"], default="librosa")
print(f"shown: {shown}" + ("" if shown == winner else " (no winner yet: the highest S)"))
pooled = {name: loco_pooled(name) for name in dict.fromkeys([shown, "librosa"])}
having = pooled["librosa"].groupby("emotion").corpus.unique()
for label in EMOTION_LABELS:
    if label in having and len(having[label]) < len(CORPORA):
        print(f"{label}: only in {', '.join(sorted(having[label]))}")

fig, axes = plt.subplots(1, len(pooled), figsize=(5.6 * len(pooled), 5))
for ax, (name, frame) in zip(np.atleast_1d(axes), pooled.items()):
    cm = confusion(frame)
    ax.imshow(cm.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Blues")
    for i in range(len(EMOTION_LABELS)):
        for j in range(len(EMOTION_LABELS)):
            value = cm.iat[i, j]
            if not np.isnan(value) and value >= 0.005:
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7,
                        color="w" if value > 0.55 else "k")
    ax.set_xticks(range(len(EMOTION_LABELS)), EMOTION_LABELS, rotation=40, ha="right")
    ax.set_yticks(range(len(EMOTION_LABELS)), EMOTION_LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    right = (frame.predicted == frame.emotion).mean()
    ax.set_title(f"{name}: {len(frame)} LOCO clips, {right:.1%} right")
fig.suptitle("Corpus left out, five folds pooled: share of each true label's clips given each answer", fontsize=10)
plt.tight_layout()
plt.show()

recall = pd.DataFrame({name: np.diag(confusion(frame).to_numpy(dtype=float)) for name, frame in pooled.items()},
                      index=EMOTION_LABELS)
recall.insert(0, "clips", pd.Series(pooled[shown].emotion.value_counts()).reindex(EMOTION_LABELS).fillna(0).astype(int))
if shown != "librosa":
    recall["change, pts"] = 100 * (recall[shown] - recall["librosa"])
display(recall.rename_axis("true label").style.format(
    {**{name: "{:.1%}" for name in pooled}, "change, pts": "{:+.1f}"}, na_rep="–"))

# %% [markdown]
# ## The shipped models under degraded recordings
#
# Once the winner ships, the evaluation (`python -m training.evaluate`) scores the emotional `test`
# clips (speakers never seen) as recorded and under pink noise and 6-talker babble at 10 dB SNR and
# the telephone band (`training/emotion_conditions.py`), routed by the speaker's true gender, and
# writes the table to `reports/metrics.json`. `studies/emotion_encoder/robustness.json`
# (`python -m training.emotion_conditions`), when it exists, holds the same table for the shipped
# and the previous models on identical rows.

# %%
metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
shipped_robustness = metrics.get("emotion_robustness")
if not shipped_robustness:
    print(f"{metrics_file.relative_to(ROOT) if metrics_file.is_relative_to(ROOT) else metrics_file} has no "
          "emotion_robustness table yet (written by the evaluation once the encoder model ships): nothing to plot.")
else:
    acc = pd.Series(shipped_robustness["accuracy"])
    acc = acc.reindex([c for c in EMOTION_CONDITIONS if c in acc] + [c for c in acc.index if c not in EMOTION_CONDITIONS])
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    bars = ax.bar(range(len(acc)), acc.to_numpy(), color=["C2"] + ["C1"] * (len(acc) - 1))
    ax.bar_label(bars, [f"{a:.1%}" for a in acc], fontsize=8)
    ax.set_xticks(range(len(acc)), [textwrap.fill(DESCRIPTIONS.get(c, c), 16) for c in acc.index], fontsize=8)
    ax.set_ylim(0, min(1.0, acc.max() + 0.12))
    ax.set_ylabel(f"emotion accuracy, {shipped_robustness.get('split', 'test')}")
    ax.set_title(f"Shipped emotion models, {shipped_robustness['n']} clips")
    plt.show()

robustness = load("emotion_encoder/robustness")
if robustness is None:
    print("studies/emotion_encoder/robustness.json is missing: the shipped and the previous models have not been "
          "compared under degraded recordings yet.")
else:
    tables = robustness["tables"]
    conditions = [c for c in EMOTION_CONDITIONS if all(c in t["accuracy"] for t in tables.values())]
    table = pd.DataFrame({label: {DESCRIPTIONS.get(c, c): t["accuracy"][c] for c in conditions}
                          for label, t in tables.items()})
    display(table.rename_axis("condition").style.format("{:.1%}", na_rep="–"))
    table.columns = [textwrap.fill(label, 30) for label in table.columns]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    table.plot.bar(ax=ax, rot=0, width=0.8)
    ax.set_xticks(range(len(conditions)), [textwrap.fill(DESCRIPTIONS.get(c, c), 16) for c in conditions], fontsize=8)
    ax.set_ylim(0, min(1.0, table.max().max() + 0.1))
    ax.set_xlabel("")
    ax.set_ylabel("emotion accuracy, test")
    ax.set_title(f"Emotion under degraded recordings, {next(iter(tables.values()))['n']} test clips")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.show()
