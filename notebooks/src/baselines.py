# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 4. Classic baselines and unsupervised structure
#
# Are the shipped networks better than textbook classifiers on the *same* 483 features and the
# *same* speaker-independent split? And is there structure in the features that matches gender or
# emotion without any labels? The code is `studies/baselines/study.py` (also `python -m studies.baselines`,
# which writes `studies/baselines/report.md`; this notebook rewrites that report with the same numbers).
#
# Protocol: for each model family, hyper-parameters are chosen by 5-fold cross-validation
# **grouped by speaker** over `train` + `val` (a speaker's clips never sit on both sides of a fold),
# the best setting is refitted on `train` + `val`, and it is scored once on the `test` speakers.
# Features are standardised inside each fold. The shipped CNNs are fitted on the same `train` + `val`
# speakers (their training length chosen by the same kind of speaker-grouped cross-validation,
# `python -m studies.recipe_cv`); the baselines see clean clips only, the CNNs also augmented copies.

# %% tags=["parameters"]
N_JOBS = 2
REPORT_DIR = None  # folder for the report.{json,md} this notebook writes (None: studies/baselines/)

# %%
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from studies.baselines import study as baselines
from pipeline.emotion import EMOTION_LABELS

plt.rcParams.update({"figure.dpi": 90})
start = time.perf_counter()
table = baselines.feature_table()
print(f"features of {int(table.ok.sum())} clips ({table.X.shape[1]} dimensions) in {time.perf_counter() - start:.0f} s "
      "(cached in cache/features after the first run)")
shipped = json.loads((ROOT / "reports" / "metrics.json").read_text())  # written by `python -m pipeline.evaluate`

# %% [markdown]
# ## Supervised baselines

# %%
start = time.perf_counter()
results = baselines.run_classifiers(table, n_jobs=N_JOBS)
print(f"grid searches done in {time.perf_counter() - start:.0f} s")

# %%
gender_rows = [{"model": name, "chosen setting": json.dumps(r["best_params"]), "CV accuracy %": 100 * r["cv_accuracy"],
                "CV std": 100 * r["cv_accuracy_std"], "test accuracy %": 100 * r["test"]["accuracy"]}
               for name, r in results["gender"].items()]
gender_rows.append({"model": "shipped ECAPA-TDNN (log-mel input, not these features)", "chosen setting": "",
                    "CV accuracy %": np.nan, "CV std": np.nan,
                    "test accuracy %": 100 * shipped["gender"]["overall"]["accuracy"]})
display(Markdown("### Gender (every gender-labelled clip, LibriSpeech included)"))
display(pd.DataFrame(gender_rows).set_index("model").round(1))

# %%
emotion_rows = []
for name, r in results["emotion"].items():
    routed = r["routed_by_true_gender"]
    emotion_rows.append({
        "model": name,
        "male setting": json.dumps(r["male"]["best_params"]), "male CV acc %": 100 * r["male"]["cv_accuracy"],
        "female setting": json.dumps(r["female"]["best_params"]), "female CV acc %": 100 * r["female"]["cv_accuracy"],
        "test acc %": 100 * routed["all"]["accuracy"], "test macro-F1": routed["all"]["macro_f1"],
        "RAVDESS test acc %": 100 * routed["ravdess"]["accuracy"]})
cnn = shipped["emotion"]["true_gender"]
emotion_rows.append({"model": "shipped CNN ensembles (augmented training)", "test acc %": 100 * cnn["overall"]["accuracy"],
                     "test macro-F1": cnn["overall"]["macro_f1"], "RAVDESS test acc %": 100 * cnn["ravdess"]["accuracy"]})
display(Markdown("### Emotion (8 classes, one model per gender, test clips routed by their true gender)"))
emotion_frame = pd.DataFrame(emotion_rows).set_index("model")
display(emotion_frame.round(3))

fig, axes = plt.subplots(1, 2, figsize=(14, 4))
pd.DataFrame(gender_rows).set_index("model")["test accuracy %"].plot.barh(ax=axes[0], color="tab:blue")
axes[0].set_xlim(80, 100)
axes[0].set_title("gender, test accuracy (%)")
emotion_frame[["test acc %", "RAVDESS test acc %"]].plot.barh(ax=axes[1])
axes[1].set_title("emotion, test accuracy (%)")
for ax in axes:
    ax.invert_yaxis()
    ax.set_ylabel("")
fig.tight_layout()

# %% [markdown]
# ## Unsupervised structure
#
# The emotional `train` clips, standardised and reduced to 20 principal components, clustered by
# k-means, a Gaussian mixture (full covariance) and Ward agglomerative clustering into 2, 4 and 10
# clusters. Homogeneity (each cluster holds one class) and normalised mutual information compare
# clusters with gender and with emotion; silhouette (higher is better, at most 1) and Davies-Bouldin
# (lower is better) judge the clusters' shape without labels.

# %%
train = table.select(lambda u: u.split == "train" and bool(u.emotion))
truth = {k: train.labels(k) for k in ("gender", "emotion", "corpus")}
projection, clusters = baselines.cluster_structure(train.X, truth)
scores = pd.DataFrame([{"algorithm": c.algorithm, "k": c.k, **c.scores} for c in clusters]).set_index(["algorithm", "k"])
display(scores.round(3))

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, metric in zip(axes, ("nmi_gender", "nmi_emotion", "nmi_corpus")):
    scores[metric].unstack(0).plot(ax=ax, marker="o")
    ax.set_title(f"NMI with {metric.split('_')[1]}")
    ax.set_xticks(baselines.CLUSTER_COUNTS)
    ax.set_ylim(0, None)
fig.tight_layout()
best = {t: scores[f"nmi_{t}"].idxmax() for t in ("gender", "emotion", "corpus")}
top = {t: scores.loc[best[t], f"nmi_{t}"] for t in best}
display(Markdown("Best NMI: " + "; ".join(f"{t}: {a} with k={k} ({top[t]:.3f})" for t, (a, k) in best.items()) + ". "
                 + (f"Clusters follow the **corpus** (language, microphone, room) more than gender or emotion: "
                    "the unsupervised structure of these statistics is mostly recording conditions, which is why "
                    "emotion needs supervised training and evaluation on unseen speakers and corpora."
                    if top["corpus"] > max(top["gender"], top["emotion"]) else
                    "Clusters follow gender or emotion at least as much as the corpus.")))

# %% [markdown]
# The clusters drawn on the first two principal components, next to the true labels.

# %%
fig, axes = plt.subplots(4, 3, figsize=(15, 18))
for ax, (name, values) in zip(axes[0], truth.items()):
    for k, value in enumerate(sorted(set(values))):
        rows_ = values == value
        ax.scatter(projection[rows_, 0], projection[rows_, 1], s=4, alpha=0.5, color=plt.cm.tab10(k % 10), label=value)
    ax.set_title(f"true {name}")
    ax.legend(fontsize=7, markerscale=3)
algorithms = list(dict.fromkeys(c.algorithm for c in clusters))
for c in clusters:
    ax = axes[1 + algorithms.index(c.algorithm), list(baselines.CLUSTER_COUNTS).index(c.k)]
    ax.scatter(projection[:, 0], projection[:, 1], s=4, alpha=0.5, c=c.labels, cmap="tab10")
    ax.set_title(f"{c.algorithm}, k={c.k}\nNMI gender {c.scores['nmi_gender']:.2f}, emotion {c.scores['nmi_emotion']:.2f}")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %% [markdown]
# ## The report file

# %%
text = baselines.write_report(results, clusters, **({"stem": Path(REPORT_DIR) / "report"} if REPORT_DIR else {}),
                              command="python notebooks/run.py 4_baselines_and_clusters")
display(Markdown(text))
