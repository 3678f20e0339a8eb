# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 2. Training the gender-specific emotion model
#
# One notebook, run once per gender by `make notebooks` (`2a_training_male`, `2b_training_female`).
# It reads what `python -m pipeline.train` saved beside the weights (`config.json`,
# `training_history.json`) and what `python -m pipeline.experiments` measured
# (`reports/experiments.json`); nothing here is typed in.
#
# Code that does the work:
# * `pipeline/train_emotion.py`: `TrainConfig` (the hyper-parameters below), `train_family`
#   (pooled pre-training, then per-gender fine-tuning, an ensemble of seeds);
# * `pipeline/emotion.py`: `build_cnn` (the Conv1D network), `EmotionModel` (the saved folder);
# * `pipeline/augment.py`: `DEFAULT_AUGMENTATIONS` (speed x0.9 / x1.1, pink noise at 15 dB);
# * `pipeline/features.py`: the 483 named statistics the network reads.

# %% tags=["parameters"]
GENDER = "male"

# %%
import json
import sys
from pathlib import Path

ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from pipeline.features import feature_groups

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
folder = ROOT / f"{GENDER}_models"
config = json.loads((folder / "config.json").read_text())
history = json.loads((folder / "training_history.json").read_text())["members"]
pooled_history = json.loads((ROOT / "pooled_model" / "training_history.json").read_text())["members"]
training = config["training"]
display(Markdown(f"**Model folder:** `{folder.relative_to(ROOT)}/`, {len(history)} ensemble members, "
                 f"{config['n_features']} input features, feature configuration v{config['feature_config']['version']}."))

# %% [markdown]
# ## Hyper-parameters, and why
#
# | choice | why |
# |---|---|
# | all four emotional corpora | RAVDESS alone has 8 (male) or 8 (female) training actors; more speakers generalise better to unseen voices (measured below: *RAVDESS only* loses on everything except the RAVDESS test actors) |
# | augmentation (speed x0.9 / x1.1, pink noise 15 dB) | triples the clips per speaker and adds level and channel variety; measured below |
# | pooled pre-training, then fine-tuning on one gender | female emotional speech is scarce; the shared network learns emotion cues from both genders first; measured below |
# | class weights | `calm` and `surprised` are rare, ASED has only five classes |
# | early stopping on `val` loss (patience, best weights restored), label smoothing 0.1, dropout | small data: stop before the network memorises speakers; keep probabilities soft |
# | an ensemble of seeds averaged in one Keras model | lowers the variance of a network trained on few speakers at almost no inference cost (the CNN is ~1 ms of the ~40 ms per clip) |
#
# The values the shipped model was trained with, read from its `config.json`:

# %%
shown = {k: v for k, v in training.items() if k not in ("train_speakers", "val_speakers")}
display(pd.Series({k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in shown.items()},
                  name="value").to_frame())
speakers = pd.Series(training["train_speakers"]).str.split("_").str[0].value_counts().rename("train speakers")
val_speakers = pd.Series(training["val_speakers"]).str.split("_").str[0].value_counts().rename("val speakers")
display(pd.concat([speakers, val_speakers], axis=1).fillna(0).astype(int))

# %% [markdown]
# ## Training curves
#
# Each ensemble member is first trained on both genders (left: the pooled network, which is also
# the shipped `pooled_model/` comparison), then fine-tuned on this gender (right). The dashed
# line marks the epoch whose weights were kept (lowest `val` loss: early stopping restores it).

# %%
fig, axes = plt.subplots(2, 2, figsize=(14, 7), sharex="col")
for column, (title, runs) in enumerate((("pre-training on both genders", pooled_history),
                                        (f"fine-tuning on {GENDER} voices", history))):
    for k, member in enumerate(runs):
        epochs = np.arange(1, len(member["loss"]) + 1)
        color = plt.cm.tab10(k)
        axes[0, column].plot(epochs, member["loss"], color=color, alpha=0.5)
        axes[0, column].plot(epochs, member["val_loss"], color=color, linestyle="-", marker=".", label=f"member {k}")
        axes[1, column].plot(epochs, member["accuracy"], color=color, alpha=0.5)
        axes[1, column].plot(epochs, member["val_accuracy"], color=color, marker=".")
        axes[1, column].axvline(member["best_epoch"], color=color, linestyle="--", alpha=0.6)
    axes[0, column].set_title(f"{title}\nloss (thin line: train; line with dots: val)")
    axes[1, column].set_title("accuracy (thin line: train; line with dots: val)")
    axes[1, column].set_xlabel("epoch")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()

best = pd.DataFrame([{"member": k, "best epoch": m["best_epoch"], "epochs run": len(m["loss"]),
                      "val accuracy at best": m["val_accuracy"][m["best_epoch"] - 1],
                      "train accuracy at best": m["accuracy"][m["best_epoch"] - 1],
                      "epoch of highest val accuracy": int(np.argmax(m["val_accuracy"])) + 1,
                      "highest val accuracy": max(m["val_accuracy"])} for k, m in enumerate(history)])
display(best.round(3))
first = int((best["best epoch"] == 1).sum())
display(Markdown(
    f"{first} of {len(best)} members kept their **first** fine-tuning epoch: for those, fine-tuning on {GENDER} "
    "voices did not lower `val` loss below its first epoch, so the shipped member is "
    "essentially the pooled network after one low-learning-rate epoch on this gender."
    if first else f"Every member improved on `val` during fine-tuning on {GENDER} voices."))

# %% [markdown]
# Early stopping watches `val` *loss*. With label smoothing and a small, mostly-ASED `val` set, loss
# can turn up while accuracy still climbs; the last two columns show how much `val` accuracy the
# loss criterion left on the table for each member (a lead for the recipe, to be checked on
# speakers outside `val`).
#
# Train accuracy is measured on augmented clips with dropout active, so it is not directly
# comparable with `val`. The gap between the two, and how early the best `val` epoch comes, show
# how quickly the network starts to learn the training speakers rather than emotion.

# %% [markdown]
# ## What the recipe's parts bought (measured)
#
# `python -m pipeline.experiments` trains each variant (one seed) and routes clips by their true
# gender. Choices were made on `val`; the `test` columns are shown so the effect on unseen
# speakers is visible, never used to choose.

# %%
experiments = json.loads((ROOT / "reports" / "experiments.json").read_text())
columns = ["val/all", "val/ravdess", "test/all", "test/ravdess", f"test/{GENDER}"]
table = pd.DataFrame({variant: {c: result[c]["accuracy"] * 100 for c in columns if result[c].get("n")}
                      for variant, result in experiments.items()}).T
display(table.round(1).rename(columns=lambda c: f"{c} acc %"))
shipped = next(iter(experiments))
delta = table.drop(index=shipped).rsub(table.loc[shipped], axis=1)
display(Markdown("Points the shipped recipe gains over each variant (positive = the recipe's part helps):"))
display(delta.round(1))
ax = table[["val/all", f"test/{GENDER}"]].plot.barh(figsize=(9, 3.6), title=f"emotion accuracy by recipe ({GENDER} test column)")
ax.set_xlabel("accuracy (%)")
ax.invert_yaxis()

# %% [markdown]
# ## Which inputs the network reads
#
# The 483 statistics by group (names in `pipeline/features.py`, `feature_names`). Which groups the
# trained models actually rely on is measured in notebook 3 (permutation importance).

# %%
groups = feature_groups()
display(pd.Series({g: len(idx) for g, idx in groups.items()}, name="dimensions").to_frame().T)
