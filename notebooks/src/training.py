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
# `training_history.json`) and what `python -m studies.experiments` measured
# (`studies/experiments/report.json`); nothing here is typed in.
#
# Code that does the work:
# * `training/recipes/emotion.yaml`: the hyper-parameters below, read into `TrainConfig`;
# * `training/emotion_train.py`: `train_family`
#   (pooled pre-training, then per-gender fine-tuning, an ensemble of seeds);
# * `pipeline/emotion.py`: `build_cnn` (the Conv1D network), `EmotionModel` (the saved folder);
# * `training/augment.py`: the augmentations the recipe names (speed x0.9 / x1.1, pink noise at 15 dB);
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
# | fitted on `train` + `val` for a fixed number of epochs, chosen by cross-validation over speakers | `val` holds one RAVDESS actor per gender and is two-thirds ASED: as an early-stopping set it is noisy, and as training data those speakers are worth more. The training length is chosen below on every `train` + `val` speaker, each scored by a network that never heard them |
# | label smoothing 0.1, dropout | small data: keep probabilities soft and stop the network memorising speakers |
# | an ensemble of seeds averaged in one Keras model | lowers the variance of a network trained on few speakers at almost no inference cost (the CNN is ~1 ms of the ~40 ms per clip) |
#
# The values the shipped model was trained with, read from its `config.json`:

# %%
shown = {k: v for k, v in training.items() if k not in ("train_speakers", "val_speakers")}
display(pd.Series({k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in shown.items()},
                  name="value").to_frame())
speakers = pd.Series(training["train_speakers"]).str.split("_").str[0].value_counts().rename("speakers fitted on")
display(speakers.to_frame().T)

# %% [markdown]
# ## How long to train: cross-validation over speakers
#
# `python -m studies.recipe_cv` (`studies/recipe_cv/report.md`) splits the `train` + `val` speakers into
# five folds, pre-trains one network per fold on the other folds and scores the held-out speakers after
# every epoch; then fine-tunes each fold's network (at the chosen pre-training length) on one gender,
# again scoring after every epoch (epoch 0 = no fine-tuning). The chosen length maximises accuracy
# averaged over corpora (smoothed over 3 epochs), so Amharic, half of the clips, does not decide alone.
# `test` is not used.

# %%
cv = json.loads((ROOT / "studies" / "recipe_cv" / "report.json").read_text())
stages = [("pre-training on both genders", cv["pretrain"])]
if "finetune" in cv:
    stages.append((f"fine-tuning (this notebook: {GENDER})", cv["finetune"]))
fig, axes = plt.subplots(1, len(stages), figsize=(7 * len(stages), 4), squeeze=False)
for ax, (title, stage) in zip(axes[0], stages):
    c = stage["curve"]
    epochs = np.arange(c["first_epoch"], c["first_epoch"] + len(c["overall"]))
    ax.plot(epochs, 100 * np.array(c["balanced"]), color="black", linewidth=2.5, label="mean over corpora")
    for corpus, values in c["per_corpus"].items():
        ax.plot(epochs, 100 * np.array(values), alpha=0.7, label=corpus)
    ax.plot(epochs, 100 * np.array(c["per_gender"][GENDER]), linestyle=":", color="grey", label=f"{GENDER} clips")
    ax.axvline(stage["chosen_epochs"], color="red", linestyle="--", label=f"chosen: {stage['chosen_epochs']}")
    ax.set_title(f"{title}\nheld-out speakers' accuracy after each epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
axes[0, -1].legend(fontsize=8)
fig.tight_layout()
display(pd.DataFrame({title: {k: round(100 * v, 1) for k, v in stage["at_chosen"].items()}
                      for title, stage in stages}).rename_axis("held-out accuracy % at the chosen length"))
display(Markdown(
    f"Shipped: **{training['epochs']}** pre-training epochs and **{training['finetune_epochs']}** fine-tuning epochs "
    f"on {' + '.join(training.get('fit_splits', ['train']))}, "
    + ("early stopping on `val`." if training.get("early_stopping", True) else "no early stopping.")))

# %% [markdown]
# ## Training curves of the shipped members
#
# Each ensemble member is first trained on both genders (left: the pooled network, which is also
# the shipped `pooled_model/` comparison), then fine-tuned on this gender (right). Loss and accuracy
# are measured on the augmented training rows with dropout active; no speaker is held out here
# (the held-out view is the cross-validation above).

# %%
fig, axes = plt.subplots(2, 2, figsize=(14, 7), sharex="col")
for column, (title, runs) in enumerate((("pre-training on both genders", pooled_history),
                                        (f"fine-tuning on {GENDER} voices", history))):
    for k, member in enumerate(runs):
        if not member["loss"]:
            continue
        epochs = np.arange(1, len(member["loss"]) + 1)
        color = plt.cm.tab10(k)
        axes[0, column].plot(epochs, member["loss"], color=color, label=f"member {k}")
        axes[1, column].plot(epochs, member["accuracy"], color=color)
        if "val_loss" in member:
            axes[0, column].plot(epochs, member["val_loss"], color=color, linestyle="--")
            axes[1, column].plot(epochs, member["val_accuracy"], color=color, linestyle="--")
    axes[0, column].set_title(f"{title}\nloss (solid: training rows" + (", dashed: val)" if "val_loss" in runs[0] else ")"))
    axes[1, column].set_title("accuracy")
    axes[1, column].set_xlabel("epoch")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## What the recipe's parts bought (measured)
#
# `python -m studies.experiments` trains each variant (one seed) on `train` only and routes clips by
# their true gender, so `val` can score them. Choices were made on `val`; the `test` columns are shown
# so the effect on unseen speakers is visible, never used to choose.

# %%
experiments = json.loads((ROOT / "studies" / "experiments" / "report.json").read_text())
experiments.pop("run", None)  # how the report was made, not a variant
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
