# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 1. The data: what the models learned from
#
# Every number and plot below is computed from `../shared/data/manifest.csv` by this notebook
# (`make notebooks` re-runs it). The split is **by speaker**: no speaker appears in two of
# `train`, `val` and `test`, so test accuracy is accuracy on voices the models never heard.
# Loading code: `training/corpus.py`.

# %%
import sys
from pathlib import Path

ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from training.corpus import data_dir, read_manifest
from pipeline.emotion import EMOTION_LABELS

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
rows = read_manifest()
df = pd.DataFrame([{**u.__dict__, "path": u.relpath} for u in rows])
df["emotion"] = df.emotion.replace("", "(none)")
print(f"{len(df)} clips, {df.speaker.nunique()} speakers, {df.duration_s.sum() / 3600:.2f} hours, from {data_dir()}")

# %% [markdown]
# ## Corpora: clips, speakers, hours

# %%
summary = df.groupby("corpus").agg(
    language=("language", "first"),
    clips=("path", "size"),
    speakers=("speaker", "nunique"),
    female_speakers=("speaker", lambda s: df.loc[s.index][df.loc[s.index].gender == "female"].speaker.nunique()),
    male_speakers=("speaker", lambda s: df.loc[s.index][df.loc[s.index].gender == "male"].speaker.nunique()),
    hours=("duration_s", lambda s: round(s.sum() / 3600, 2)),
    emotions=("emotion", lambda s: len(set(s) - {"(none)"})),
)
summary.loc["total"] = ["", len(df), df.speaker.nunique(), df[df.gender == "female"].speaker.nunique(),
                        df[df.gender == "male"].speaker.nunique(), round(df.duration_s.sum() / 3600, 2), 8]
display(summary)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
per = df.groupby("corpus")
per.size().plot.bar(ax=axes[0], color="tab:blue", title="clips")
per.duration_s.sum().div(3600).plot.bar(ax=axes[1], color="tab:orange", title="hours")
df.drop_duplicates("speaker").groupby(["corpus", "gender"]).size().unstack(fill_value=0).plot.bar(
    ax=axes[2], stacked=True, title="speakers by gender", color={"female": "tab:red", "male": "tab:blue"})
for ax in axes:
    ax.set_xlabel("")
fig.tight_layout()

# %% [markdown]
# ## The speaker-independent split
#
# Clips and speakers per split. The assertion is the guarantee every reported number rests on.

# %%
speakers_per_split = df.groupby("speaker").split.nunique()
assert (speakers_per_split == 1).all(), "a speaker appears in two splits"
display(pd.crosstab(df.corpus, df.split, margins=True).rename_axis(None, axis=1))
display(df.drop_duplicates("speaker").pipe(lambda d: pd.crosstab([d.corpus, d.gender], d.split, margins=True))
        .rename_axis(None, axis=1))

# %% [markdown]
# ## Emotions by gender
#
# Female emotional speech is the scarce part (the female model has fewer clips, and EMOVO and ASED
# carry no `calm`; SAVEE is male only). Emotion labels exist for every corpus except LibriSpeech,
# which only trains the gender model.

# %%
emotional = df[df.emotion != "(none)"]
counts = pd.crosstab([emotional.split, emotional.gender], emotional.emotion).reindex(columns=EMOTION_LABELS, fill_value=0)
display(counts)

fig, axes = plt.subplots(1, 2, figsize=(14, 3.8), sharey=True)
for ax, gender in zip(axes, ("male", "female")):
    part = emotional[(emotional.gender == gender) & (emotional.split == "train")]
    pd.crosstab(part.emotion, part.corpus).reindex(EMOTION_LABELS, fill_value=0).plot.bar(
        ax=ax, stacked=True, title=f"{gender}: train clips per emotion and corpus")
    ax.set_xlabel("")
fig.tight_layout()

# %% [markdown]
# Class balance per gender as shares of that gender's training clips: the loss uses class weights
# (`training/emotion_train.py`, `_class_weights`) so that rare classes (`calm`, `surprised`) count.

# %%
train = emotional[emotional.split == "train"]
share = pd.crosstab(train.emotion, train.gender, normalize="columns").reindex(EMOTION_LABELS).mul(100).round(1)
display(share.rename(columns=lambda g: f"{g} (% of train)"))
ax = share.plot.barh(figsize=(7, 4), color={"female": "tab:red", "male": "tab:blue"}, title="class balance per gender (train)")
ax.set_xlabel("% of the gender's training clips")
ax.invert_yaxis()

# %% [markdown]
# ## Durations
#
# The emotion models read clip-level statistics, so duration matters little to them; the gender
# model is trained on random 1.5-3 s crops. RAVDESS clips carry about 1 s of silence at each end,
# which `pipeline/audio.py` trims identically at training and inference.

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 3.6))
bins = np.logspace(np.log10(df.duration_s.min()), np.log10(df.duration_s.max()), 40)
for corpus, part in df.groupby("corpus"):
    axes[0].hist(part.duration_s, bins=bins, histtype="step", linewidth=1.6, label=corpus)
axes[0].set_xscale("log")
axes[0].set_xlabel("duration (s, log scale)")
axes[0].set_ylabel("clips")
axes[0].legend()
df.boxplot(column="duration_s", by="corpus", ax=axes[1])
axes[1].set_title("duration per corpus")
axes[1].set_ylabel("s")
fig.suptitle("")
fig.tight_layout()
display(df.groupby("corpus").duration_s.describe(percentiles=[0.05, 0.5, 0.95]).round(2))
