# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 5. Noise reduction: does spectral gating before feature extraction help?
#
# `noisereduce` (spectral gating) estimates a noise floor per frequency and attenuates what lies
# below it. `pipeline` can apply it to every input before preparation and feature extraction
# (`pipeline/denoise.py`; `Cascade.load(denoise=True)`, `script.py --denoise`). Whether that helps
# the shipped models is an empirical question, answered here on `test` speakers:
#
# * clean clips, and the same clips with **pink noise** (stationary: the case spectral gating is
#   built for) and **babble** (six LibriSpeech training readers at once: speech-like, non-stationary)
#   at 20, 10, 5 and 0 dB SNR, measured against the speech part of each clip;
# * each scored by the shipped cascade as is and with noise reduction.
#
# The code is `studies/noise_study/study.py` (`python -m studies.noise_study` writes
# `studies/noise_study/report.md`; this notebook rewrites it with the same numbers).

# %% tags=["parameters"]
N_CLIPS = 240
REPORT_DIR = None  # folder for the report.{json,md} this notebook writes (None: studies/noise_study/)

# %%
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

from studies.noise_study import study as noise_study

plt.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
start = time.perf_counter()
summary, frame = noise_study.study(n_clips=N_CLIPS)
print(f"{frame.path.nunique()} clips from {frame.speaker.nunique()} test speakers x {frame.condition.nunique()} "
      f"conditions in {time.perf_counter() - start:.0f} s")
display(frame.drop_duplicates("path").corpus.value_counts().rename("clips per corpus").to_frame().T)

# %% [markdown]
# ## An example: what the noise and the gating do to a spectrogram

# %%
import librosa
import librosa.display
import soundfile as sf

from pipeline.denoise import reduce_noise

clip = noise_study.select_clips(noise_study.read_manifest(), N_CLIPS)[0]
y, sr = sf.read(clip.path, dtype="float32")
babble = noise_study.make_babble(noise_study.babble_talkers(noise_study.read_manifest()), seconds=30.0)
versions = {"clean": y}
for kind in ("pink", "babble"):
    noisy = noise_study.corrupt(y, noise_study.Condition(kind, 5.0, False), babble=babble, seed=0)
    versions[f"{kind} 5 dB"] = noisy
    versions[f"{kind} 5 dB, denoised"] = reduce_noise(noisy, sr)
fig, axes = plt.subplots(1, len(versions), figsize=(4 * len(versions), 3.4), sharey=True)
for ax, (title, signal) in zip(axes, versions.items()):
    S = librosa.amplitude_to_db(np.abs(librosa.stft(signal, n_fft=512, hop_length=160)), ref=np.max, top_db=80)
    librosa.display.specshow(S, sr=sr, hop_length=160, x_axis="time", y_axis="hz", ax=ax)
    ax.set_title(title, fontsize=10)
fig.suptitle(f"{clip.relpath} ({clip.emotion}, {clip.gender})")
fig.tight_layout()

# %% [markdown]
# ## Accuracy with and without noise reduction

# %%
results = pd.DataFrame(summary)
results["SNR"] = results.snr_db.map(lambda s: "clean" if s != s or s is None else f"{s:g} dB")
pivot = results.pivot_table(index=["noise", "SNR"], columns="denoise",
                            values=["gender_accuracy", "emotion_accuracy", "emotion_macro_f1"], sort=False)
pivot.columns = [f"{metric} {'denoised' if d else 'as is'}" for metric, d in pivot.columns]
for metric in ("gender_accuracy", "emotion_accuracy", "emotion_macro_f1"):
    pivot[f"{metric} change"] = pivot[f"{metric} denoised"] - pivot[f"{metric} as is"]
display((pivot * 100).round(1).rename(columns=lambda c: c.replace("_", " ") + (" (pts)" if "change" in c else " %")))

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
clean = results[results.noise == "clean"].set_index("denoise")
for ax, metric, title in ((axes[0], "emotion_accuracy", "emotion accuracy (8 classes)"),
                          (axes[1], "gender_accuracy", "gender accuracy")):
    for kind, color in (("pink", "tab:pink"), ("babble", "tab:brown")):
        for denoise, style in ((False, "-"), (True, "--")):
            part = results[(results.noise == kind) & (results.denoise == denoise)].sort_values("snr_db")
            ax.plot(part.snr_db, part[metric] * 100, style, marker="o", color=color,
                    label=f"{kind}, {'denoised' if denoise else 'as is'}")
    for denoise, style in ((False, "-"), (True, "--")):
        ax.axhline(clean.loc[denoise, metric] * 100, color="k", linestyle=style, alpha=0.6,
                   label=f"clean, {'denoised' if denoise else 'as is'}")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("%")
    ax.set_title(title)
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Verdict
#
# Computed from the table above: the default stays whatever the numbers support.

# %%
clean_change = float(clean.loc[True, "emotion_accuracy"] - clean.loc[False, "emotion_accuracy"])
noisy = results[results.noise != "clean"].pivot_table(index=["noise", "snr_db"], columns="denoise", values="emotion_accuracy")
noisy_change = (noisy[True] - noisy[False]) * 100
helped = noisy_change[noisy_change > 0]
lines = [f"- On clean clips, noise reduction changes emotion accuracy by **{100 * clean_change:+.1f} points**."]
lines.append(f"- On noisy clips it changes emotion accuracy by {noisy_change.min():+.1f} to {noisy_change.max():+.1f} "
             f"points (mean {noisy_change.mean():+.1f}); it helps in {len(helped)} of {len(noisy_change)} noisy conditions"
             + (f": {', '.join(f'{k} {s:g} dB' for k, s in helped.index)}." if len(helped) else "."))
default_on = clean_change >= 0 and noisy_change.mean() > 0
lines.append("- `pipeline`'s default is **off** (`Cascade.load(denoise=None)`); "
             + ("these numbers say it should be **on**: it helps on average and does not hurt clean speech."
                if default_on else
                "these numbers support that. Gating removes or smears exactly the spectral statistics the "
                "emotion models read (they were trained on un-denoised audio), so it costs more than the noise "
                "it removes. The option stays available (`script.py --denoise`, the app's sidebar) for "
                "experiments, for example with models retrained on denoised audio."))
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## The report file

# %%
display(Markdown(noise_study.write_report(summary, frame, **({"stem": Path(REPORT_DIR) / "report"} if REPORT_DIR else {}),
                                          command="python notebooks/run.py 5_noise_reduction")))
