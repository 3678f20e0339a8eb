# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 3. Evaluation of the shipped models on speakers they never heard
#
# This notebook calls `training.evaluate.evaluate()`, the same function that writes
# `reports/metrics.json`, the model cards' tables and `docs/results.md`, so every number
# here agrees with them (checked at the end of the first section). Everything is on the `test`
# split: 44 speakers in three languages that no model saw in training or model selection.
#
# `LIMIT` evaluates about that many clips (the test suite runs this notebook on a small fixed
# subset); `None` is the full test split.

# %% tags=["parameters"]
LIMIT = None
ROBUSTNESS_CLIPS = 120
N_REPEATS = 5
N_AUDIO = 3

# %%
import json
import sys
import warnings
from pathlib import Path

ROOT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import soundfile as sf
from IPython.display import Audio, Markdown, display
from sklearn.metrics import ConfusionMatrixDisplay, classification_report, roc_auc_score, roc_curve

from pipeline.cascade import Cascade
from training.corpus import data_dir
from pipeline.emotion import EMOTION_LABELS
from training.evaluate import evaluate
from training.metrics_report import to_markdown
from pipeline.features import feature_groups
from training.stats import binary_reliability, group_permutation_importance, reliability

plt.rcParams.update({"figure.dpi": 90})
cascade = Cascade.load()
features = {}  # relpath -> the feature vector the emotion models read, kept for the feature view
# the gender robustness table (seven passes of the gender model over the split) is read from the committed report below
metrics, frame = evaluate(cascade=cascade, limit=LIMIT, robustness_clips=ROBUSTNESS_CLIPS, gender_conditions=False,
                          features_out=features)
scored = frame[frame.status == "ok"]
emotional = scored[scored.emotion != ""].copy()
print(f"{metrics['n_clips']} test clips from {metrics['n_speakers']} speakers; {len(scored)} scored, "
      f"{len(emotional)} with an emotion label; gender model: {metrics['gender_model']}")

# %% [markdown]
# Agreement with the committed reports (only for the full split):

# %%
if LIMIT is None:
    committed = json.loads((ROOT / "reports" / "metrics.json").read_text())
    pairs = [("gender accuracy", metrics["gender"]["overall"]["accuracy"], committed["gender"]["overall"]["accuracy"])]
    for method in metrics["emotion"]:
        for subset in ("overall", "ravdess"):
            pairs.append((f"emotion {method} {subset}", metrics["emotion"][method][subset]["accuracy"],
                          committed["emotion"][method][subset]["accuracy"]))
    check = pd.DataFrame(pairs, columns=["metric", "this notebook", "reports/metrics.json"])
    check["agree"] = np.isclose(check["this notebook"], check["reports/metrics.json"], atol=1e-9)
    display(check)
    assert check.agree.all(), "re-run `python -m pipeline.evaluate`: the committed reports are stale"
else:
    print(f"subset run (LIMIT={LIMIT}): not compared with reports/metrics.json")

# %% [markdown]
# ## Gender
#
# Accuracy overall and per corpus, the confusion matrix, and where the errors are. The data README
# warns that gender models trained on few emotional speakers call high-arousal male speech female
# and sad female speech male; the per-emotion table checks exactly that.

# %%
g = metrics["gender"]
table = pd.DataFrame({k: {"clips": v["n"], "accuracy %": 100 * v["accuracy"]}
                      for k, v in {"all": g["overall"], **g["per_corpus"], **{f"true {x}": y for x, y in g["per_gender"].items()}}.items()}).T
display(table.round(1))
if g.get("overall_interval"):
    iv = g["overall_interval"]
    print(f"accuracy {100 * iv['estimate']:.1f}%, 95% bootstrap interval over the {iv['n_groups']} test speakers "
          f"(clips of a speaker resampled together): {100 * iv['low']:.1f}-{100 * iv['high']:.1f}%")
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
ConfusionMatrixDisplay.from_predictions(scored.gender, scored.pred_gender, labels=["male", "female"], ax=axes[0],
                                        colorbar=False)
axes[0].set_title("gender confusion (counts)")
pd.Series({k: 100 * v["accuracy"] for k, v in g["per_corpus"].items()}).plot.bar(ax=axes[1], color="tab:blue")
axes[1].axhline(98, color="tab:red", linestyle="--", label="target 98%")
axes[1].set_ylim(80, 100.5)
axes[1].set_title("gender accuracy per corpus (%)")
axes[1].legend()
for gender, color in (("male", "tab:blue"), ("female", "tab:red")):
    axes[2].hist(scored[scored.gender == gender].p_female, bins=np.linspace(0, 1, 41), alpha=0.6, color=color,
                 label=f"true {gender}")
axes[2].axvline(0.5, color="k", linestyle=":")
axes[2].set_yscale("log")
axes[2].set_xlabel("p(female)")
axes[2].set_title("predicted probability by true gender")
axes[2].legend()
fig.tight_layout()

per_emotion = pd.DataFrame([{"gender": k.split("/")[0], "emotion": k.split("/")[1], "accuracy %": 100 * v["accuracy"],
                             "clips": v["n"]} for k, v in g["per_gender_emotion"].items()])
display(per_emotion.pivot(index="gender", columns="emotion", values="accuracy %")
        .reindex(columns=[e for e in EMOTION_LABELS if e in set(per_emotion.emotion)]).round(1))

# %% [markdown]
# The errors, with their probabilities. Paths are relative to `../shared/data`; the first few can be
# played here.

# %%
errors = pd.DataFrame(g["errors"])
if errors.empty:
    print("no gender errors")
else:
    errors["confidence in the wrong answer"] = np.where(errors.gender == "male", errors.p_female, 1 - errors.p_female)
    display(errors.sort_values("confidence in the wrong answer", ascending=False).reset_index(drop=True).round(3))
    for path in errors.sort_values("p_female").path.head(N_AUDIO):
        y, sr = sf.read(data_dir() / path, dtype="float32")
        display(Markdown(f"`{path}`"), Audio(y, rate=sr))

# %% [markdown]
# ### How long the gender model trains
#
# The shipped gender model is fitted on `train` + `val` for a fixed number of epochs and keeps its last
# one, so nothing is selected on the speakers it is scored on. The length was checked on a run with the same
# recipe fitted on `train` alone and scored on the `val` speakers after every epoch
# (`studies/gender_recipe/length.json`, from `python -m training.gender_train --fit-splits train --no-test
# --length-report studies/gender_recipe/length`). Training accuracy is on augmented crops (noise, SpecAugment,
# speed perturbation), validation on whole clean clips.

# %%
length = json.loads((ROOT / "studies" / "gender_recipe" / "length.json").read_text())
curve = pd.DataFrame(length["history"]).set_index("epoch")
shipped_gender = json.loads((ROOT / "gender_model" / "metadata.json").read_text())["training"]
fig, ax = plt.subplots(figsize=(9, 3.5))
(100 * curve[["train_accuracy", "val_accuracy"]]).plot(ax=ax, marker=".")
ax.axvline(shipped_gender["epochs"], color="k", linestyle=":", label="shipped length")
ax.set_ylim(70, 100)
ax.set_ylabel("accuracy %")
ax.set_title(f"gender model fitted on train ({length['n_train']} clips), scored on val ({length['n_val']} clips)")
ax.legend()
fig.tight_layout()
tail = curve.val_accuracy.tail(15)
print(f"shipped model: fitted on {' + '.join(shipped_gender.get('fit_splits', ['train']))} for "
      f"{shipped_gender['epochs']} epochs; on the train-only run, val accuracy over the last 15 epochs: "
      f"mean {100 * tail.mean():.2f}%, range {100 * tail.min():.2f}-{100 * tail.max():.2f}%")

# %% [markdown]
# ## Emotion: what users get (the cascade: predicted gender, hard routing)

# %%
print(classification_report(emotional.emotion, emotional.cascade_pred, labels=EMOTION_LABELS, digits=3,
                            zero_division=0))
summary = {}
for method, m in metrics["emotion"].items():
    summary[method] = {"all: acc %": 100 * m["overall"]["accuracy"], "all: macro-F1": m["overall"]["macro_f1"],
                       "RAVDESS test actors: acc %": 100 * m["ravdess"].get("accuracy", np.nan),
                       "RAVDESS: macro-F1": m["ravdess"].get("macro_f1", np.nan)}
display(pd.DataFrame(summary).T.round(3))


# %%
def confusion(ax, part, title, normalize=None):
    labels = [e for e in EMOTION_LABELS if e in set(part.emotion)]
    ConfusionMatrixDisplay.from_predictions(part.emotion, part.cascade_pred, labels=labels, normalize=normalize,
                                            ax=ax, colorbar=False, xticks_rotation=60,
                                            values_format=".2f" if normalize else "d")
    ax.set_title(f"{title} (n={len(part)})")


def counts_and_recall(parts: dict, width: float = 5.2):
    """One column per (title -> rows): counts on top, row-normalised recall below."""
    fig, axes = plt.subplots(2, len(parts), figsize=(width * len(parts), 10), squeeze=False)
    for column, (title, part) in enumerate(parts.items()):
        confusion(axes[0, column], part, f"{title}: counts")
        confusion(axes[1, column], part, f"{title}: recall", normalize="true")
    fig.tight_layout()


counts_and_recall({f"{g} voices": emotional[emotional.gender == g] for g in ("male", "female")}, 6.5)

# %% [markdown]
# Per corpus and, for RAVDESS, per intensity: counts, and normalised by row (= per-class recall).
# The corpora differ in language and style; the models are weakest where the training data
# are thinnest (SAVEE: two training speakers; EMOVO: two per gender).

# %%
counts_and_recall({corpus: part for corpus, part in emotional.groupby("corpus", sort=True)})
ravdess = emotional[emotional.corpus == "ravdess"]
if len(ravdess):
    counts_and_recall({f"RAVDESS, {i} intensity": part for i, part in ravdess.groupby("intensity", sort=True)}, 5.5)
    display(pd.DataFrame({k: {"clips": v["n"], "accuracy %": 100 * v["accuracy"]}
                          for k, v in metrics["emotion"]["cascade"]["ravdess_per_intensity"].items()}).T.round(1))

# %% [markdown]
# ## ROC curves (one-vs-rest) and calibration
#
# ROC: how well each emotion's probability separates it from the rest, whatever the threshold.
# Reliability: among clips where the model says "70% sure", is it right 70% of the time?
# ECE (expected calibration error) is the average gap, weighted by clips per bin.

# %%
probs = emotional[[f"cascade_prob_{e}" for e in EMOTION_LABELS]].to_numpy()
fig, axes = plt.subplots(1, 3, figsize=(17, 5))
aucs = {}
for j, label in enumerate(EMOTION_LABELS):
    positive = (emotional.emotion == label).to_numpy()
    if positive.any() and not positive.all():
        fpr, tpr, _ = roc_curve(positive, probs[:, j])
        aucs[label] = roc_auc_score(positive, probs[:, j])
        axes[0].plot(fpr, tpr, label=f"{label} (AUC {aucs[label]:.2f})")
axes[0].plot([0, 1], [0, 1], "k:")
axes[0].set_xlabel("false positive rate")
axes[0].set_ylabel("true positive rate")
axes[0].set_title(f"cascade, one-vs-rest ROC (macro AUC {np.mean(list(aucs.values())):.3f})")
axes[0].legend(fontsize=8)

y_index = emotional.emotion.map({e: i for i, e in enumerate(EMOTION_LABELS)}).to_numpy()
for method, color in (("cascade", "tab:blue"), ("pooled", "tab:green")):
    if f"{method}_prob_neutral" not in emotional:
        continue
    r = reliability(emotional[[f"{method}_prob_{e}" for e in EMOTION_LABELS]].to_numpy(), y_index)
    centres = (r.bin_edges[:-1] + r.bin_edges[1:]) / 2
    filled = r.count > 0
    axes[1].plot(r.confidence[filled], r.accuracy[filled], marker="o", color=color, label=f"{method} (ECE {r.ece:.3f})")
    axes[2].bar(centres + (0.02 if method == "pooled" else -0.02), r.count, width=0.04, color=color, label=method)
axes[1].plot([0, 1], [0, 1], "k:", label="perfect calibration")
axes[1].set_xlabel("confidence (top probability)")
axes[1].set_ylabel("accuracy")
axes[1].set_title("emotion reliability diagram")
axes[1].legend()
axes[2].set_xlabel("confidence bin")
axes[2].set_ylabel("clips")
axes[2].set_title("clips per confidence bin")
axes[2].legend()
fig.tight_layout()

gender_probs = np.stack([1 - scored.p_female.to_numpy(), scored.p_female.to_numpy()], axis=1)
gr = reliability(gender_probs, (scored.gender == "female").astype(int).to_numpy())
print(f"gender: ECE {gr.ece:.3f} over {len(scored)} clips; "
      f"clips with confidence < 0.9: {int((gender_probs.max(axis=1) < 0.9).sum())}, "
      f"their accuracy {np.mean((scored.pred_gender == scored.gender)[gender_probs.max(axis=1) < 0.9]):.3f}")

# %% [markdown]
# ## Are the gender probabilities calibrated?
#
# The app marks a gender answer *uncertain* below 0.80 (`pipeline/confidence.py`). That mark means
# something only if the probabilities do: of the clips given P(female) near 0.7, about 70% should be
# women. The reliability diagram bins P(female) into 10 equal-width bins and plots the share of female
# voices in each against the mean P(female) there; ECE (expected calibration error) is the gap to the
# diagonal averaged over clips. It reads the committed `reports/test_predictions.csv` (the whole `test`
# split, written by `python -m pipeline.evaluate` with `reports/metrics.json`), whatever `LIMIT` is.

# %%
committed_metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
test_predictions = pd.read_csv(ROOT / "reports" / "test_predictions.csv")
answered = test_predictions[test_predictions.status == "ok"]
p_female = answered.p_female.to_numpy()
is_female = (answered.gender == "female").to_numpy()
gender_cal = binary_reliability(p_female, is_female)
gender_top = reliability(np.stack([1 - p_female, p_female], axis=1), is_female.astype(int))
if "gender_calibration" in committed_metrics:
    assert np.isclose(gender_cal.ece, committed_metrics["gender_calibration"]["p_female"]["ece"]), "stale reports"

fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
filled = gender_cal.count > 0
ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
ax.plot(gender_cal.confidence[filled], gender_cal.accuracy[filled], "o-", color="tab:red",
        label=f"shipped gender model (ECE {gender_cal.ece:.3f})")
for x, y, n in zip(gender_cal.confidence[filled], gender_cal.accuracy[filled], gender_cal.count[filled]):
    ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(6, -12) if x < 0.85 else (-44, -4), fontsize=8)
ax.set_xlim(0, 1)
ax.set_ylim(-0.02, 1.02)
ax.set_ylabel("share of female voices in the bin")
ax.set_title(f"gender reliability diagram, test split ({len(answered)} clips)")
ax.legend(loc="upper left")
centres = (gender_cal.bin_edges[:-1] + gender_cal.bin_edges[1:]) / 2
ax_n.bar(centres, gender_cal.count, width=0.09, color="tab:gray")
for x, n in zip(centres, gender_cal.count):
    ax_n.annotate(str(n), (x, n), ha="center", va="bottom", fontsize=8)
ax_n.set_yscale("log")
ax_n.set_ylim(0.8, gender_cal.count.max() * 4)
ax_n.set_xticks(gender_cal.bin_edges)
ax_n.set_xlabel("predicted P(female) (10 equal-width bins)")
ax_n.set_ylabel("clips (log)")
fig.tight_layout()
display(pd.DataFrame({"clips": gender_cal.count, "mean P(female)": gender_cal.confidence,
                      "share female": gender_cal.accuracy},
                     index=[f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(gender_cal.bin_edges[:-1], gender_cal.bin_edges[1:])])
        .round(3))
print(f"ECE of P(female): {gender_cal.ece:.3f}; of the confidence in the predicted gender: {gender_top.ece:.3f} "
      f"({len(answered)} clips)")

# %% [markdown]
# ## Does routing by gender help?
#
# Four ways to answer the same clips, side by side: **cascade** (predicted gender, hard routing:
# what users get), **true_gender** (routing by the true gender: the ceiling of a perfect gender
# model), **pooled** (one gender-agnostic network trained the same way), **soft** (both gender
# models weighted by the gender probabilities). Differences come with a 95% bootstrap interval that
# resamples *speakers* (`training/stats.py`, `speaker_bootstrap`); an interval that contains 0 means
# the test speakers cannot tell the two methods apart. With only four RAVDESS test actors that
# subset's interval is coarse (a resample can hold the same actor four times); the "all" row
# resamples 19 emotional test speakers.

# %%
rows = []
for method, m in metrics["emotion"].items():
    for subset, part in (("all", m["overall"]), ("RAVDESS test actors", m["ravdess"]),
                         *[(f"gender {k}", v) for k, v in m["per_gender"].items()],
                         *[(f"corpus {k}", v) for k, v in m["per_corpus"].items()]):
        if part.get("n"):
            rows.append({"method": method, "subset": subset, "accuracy %": 100 * part["accuracy"]})
side = pd.DataFrame(rows).pivot(index="subset", columns="method", values="accuracy %")
display(side[[m for m in ("cascade", "true_gender", "pooled", "soft") if m in side]].round(1))

intervals = pd.DataFrame([{"subset": subset, "contrast": name, **iv}
                          for subset, contrasts in metrics["routing_comparison"].items() for name, iv in contrasts.items()])
display(intervals.assign(**{c: intervals[c] * 100 for c in ("estimate", "low", "high")})
        [["subset", "contrast", "estimate", "low", "high", "n_groups"]].round(1)
        .rename(columns={"estimate": "difference (pts)", "low": "95% low", "high": "95% high", "n_groups": "speakers"}))
fig, ax = plt.subplots(figsize=(8, 3.5))
labels = [f"{r.subset}: {r.contrast}" for r in intervals.itertuples()]
ax.errorbar(intervals.estimate * 100, np.arange(len(intervals)),
            xerr=[(intervals.estimate - intervals.low) * 100, (intervals.high - intervals.estimate) * 100],
            fmt="o", capsize=4)
ax.axvline(0, color="k", linestyle=":")
ax.set_yticks(np.arange(len(intervals)), labels)
ax.invert_yaxis()
ax.set_xlabel("accuracy difference (points), 95% speaker-bootstrap interval")
fig.tight_layout()

# %% [markdown]
# ## Which features matter, and what the feature space looks like
#
# Permutation importance by group: shuffle all columns of one feature group together across the
# test clips and measure how much accuracy the male and female emotion models (each clip routed by
# its true gender) lose
# (`training/stats.py`, `group_permutation_importance`). Then a PCA projection of the standardised
# features coloured by emotion, by gender and by corpus.

# %%
X = np.stack([features[p] for p in emotional.path])
genders = emotional.gender.to_numpy()


def predict_routed(rows_features):
    out = np.empty(len(rows_features), dtype=int)
    for gender, model in cascade.emotion_models.items():
        rows_ = genders == gender
        if rows_.any():
            out[rows_] = model.predict_proba(rows_features[rows_]).argmax(axis=1)
    return out


base_accuracy = np.mean(predict_routed(X) == y_index)
importance = group_permutation_importance(predict_routed, X, y_index, feature_groups(), n_repeats=N_REPEATS, seed=0)
imp = pd.DataFrame(importance, index=["drop", "std"]).T.mul(100).sort_values("drop")
ax = imp["drop"].plot.barh(xerr=imp["std"], figsize=(8, 4.5), color="tab:purple")
ax.set_xlabel(f"accuracy lost when the group is shuffled (points; base {100 * base_accuracy:.1f}%)")
ax.set_title(f"permutation importance by feature group ({N_REPEATS} shuffles, {len(X)} test clips)")
ax.axvline(0, color="k", linewidth=0.8)
display(imp.sort_values("drop", ascending=False).round(2).T)

# %%
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

Z = PCA(n_components=2, random_state=0)
P = Z.fit_transform(StandardScaler().fit_transform(X))
fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
for ax, (title, values) in zip(axes, (("emotion", emotional.emotion.to_numpy()), ("gender", genders),
                                       ("corpus", emotional.corpus.to_numpy()))):
    for k, value in enumerate(sorted(set(values), key=lambda v: EMOTION_LABELS.index(v) if v in EMOTION_LABELS else v)):
        rows_ = values == value
        ax.scatter(P[rows_, 0], P[rows_, 1], s=7, alpha=0.6, color=plt.cm.tab10(k), label=value)
    ax.set_title(f"PCA of the test features, by {title}")
    ax.set_xlabel(f"PC1 ({100 * Z.explained_variance_ratio_[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * Z.explained_variance_ratio_[1]:.1f}%)")
    ax.legend(fontsize=8, markerscale=2)
fig.tight_layout()

# %% [markdown]
# ## Robustness to recording level
#
# Share of RAVDESS test clips whose prediction is unchanged after scaling the waveform
# (the pipeline normalises level before features, so this should be close to 100%).

# %%
if metrics["level_robustness"]:
    display(pd.DataFrame(metrics["level_robustness"]).T)
else:
    print("skipped (ROBUSTNESS_CLIPS = 0)")

# %% [markdown]
# ## Gender under degraded recordings
#
# The gender answer should not change when the same clip arrives as 8-bit PCM, through a telephone
# band, as low-rate MP3 or Opus, or with pink noise or babble at 10 dB SNR (SNR against the speech
# part). Target: at most 2 points below clean under each condition. `python -m pipeline.evaluate`
# scores every gender-labelled `test` clip under each condition (`training/gender_conditions.py`; the
# slowest part of the evaluation, skipped by `--no-robustness`); this reads its table from
# `reports/metrics.json`.

# %%
robustness = committed_metrics.get("gender_robustness")
if robustness:
    conditions = robustness["conditions"]
    corpora = list(conditions["clean"]["per_corpus"])
    robust_table = pd.DataFrame([{"condition": c["description"], "clips": c["n"], "accuracy %": 100 * c["accuracy"],
                                  "vs clean (pts)": c["change_pts"], "answers changed %": 100 * c["flipped"],
                                  **{k: 100 * c["per_corpus"][k]["accuracy"] for k in corpora}}
                                 for c in conditions.values()]).set_index("condition")
    display(robust_table.round(1))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    change = robust_table["vs clean (pts)"].iloc[1:]
    ax.barh(change.index, change, color=["tab:green" if v >= -robustness["target_pts"] else "tab:red" for v in change])
    ax.axvline(-robustness["target_pts"], color="k", linestyle="--", label=f"target: -{robustness['target_pts']:g} pts")
    ax.axvline(0, color="k", linewidth=0.8)
    ax.bar_label(ax.containers[0], fmt="%+.1f", padding=3)
    ax.set_xlim(min(change.min(), -robustness["target_pts"]) * 1.2, 2)
    ax.invert_yaxis()
    ax.set_xlabel("gender accuracy minus clean accuracy (points)")
    ax.set_title(f"gender model under degraded recordings ({conditions['clean']['n']} test clips)")
    ax.legend()
    fig.tight_layout()
else:
    print("reports/metrics.json has no gender robustness table: run `python -m pipeline.evaluate`")

# %% [markdown]
# ## The full report
#
# The Markdown that `python -m pipeline.evaluate` writes to `reports/metrics.md` for these numbers.

# %%
display(Markdown(to_markdown(metrics)))
