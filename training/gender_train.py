"""Train and evaluate the shipped gender model (small ECAPA-TDNN, see :mod:`pipeline.ecapa`).

Usage::

    python -m training.gender_train --out gender_model        # the shipped recipe
    python -m training.gender_train --out /tmp/g --fit-splits train --no-test \\
        --length-report studies/gender_recipe/length   # the run that checks its length
    python -m training.gender_train --out /tmp/no_ased --exclude-corpus ased --no-test
                                                               # a corpus never seen (studies.gender_holdout)
    python -m training.gender_train --out /tmp/no_ased_ch --exclude-corpus ased --channel 2
                                                               # the same with random recording channels
    python -m training.gender_train --out /tmp/g --set epochs=40 --set widths.C=256
    python -m training.gender_train --out /tmp/again --recipe /tmp/g/recipe.yaml

The recipe, every tunable setting, is ``training/recipes/gender.yaml``
(:class:`training.gender_recipe.GenderRecipe`); the flags override single keys
of it, and each run saves the resolved recipe as ``recipe.yaml`` next to the
model. Rows, clips and cached log-mels: :mod:`training.gender_signals`; noise:
:mod:`training.gender_noise`; sampling, crops, SpecAugment:
:mod:`training.gender_batches`; scores: :mod:`training.gender_eval`; model
card: :mod:`training.gender_cards`.

The shipped model is fitted on ``train`` + ``val`` for a fixed number of epochs and keeps
the last one. With ``fit_splits: [train]`` the ``val`` split is held out and selects the best
epoch (validation accuracy, ties broken by loss; then BatchNorm statistics re-estimated on
clean crops if that helps); that run's val curve (``--length-report``) checks the fixed
length. ``test`` is touched only after training, for the metrics of the model card.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from training.config import RECIPE_FILE, RecipeError, override, parse_sets, save_recipe
from training.gender_batches import make_batch, pitch_balance, sampling_weights, spec_augment, version_probs
from training.gender_cards import model_card, write_length_report
from training.gender_eval import accuracy_on_mels, evaluate_gender
from training.gender_noise import noise_bank
from training.gender_recipe import (
    FIT_SPLITS,
    NOISE_KINDS,
    GenderRecipe,
    augmentation_phrase,
    channel_recipe,
    noise_phrase,
)
from training.gender_recipe import optimiser_phrase, sampling_phrase
from training.gender_signals import Clips, gender_rows, prepare_clips, select_rows
from training.recipes import load_recipe


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's global and torch's random generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def recalibrate_batchnorm(model, mels: Sequence, rng: np.random.Generator, *, batches: int,
                          batch_size: int, crop_frames: int) -> None:
    """Re-estimate BatchNorm running statistics on clean (un-augmented) crops of ``crop_frames`` of ``mels``."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    originals = [m[0] if isinstance(m, (list, tuple)) else m for m in mels]
    with torch.no_grad():
        for _ in range(batches):
            idx = rng.choice(len(originals), size=batch_size, replace=True)
            model.forward_features(make_batch(originals, idx, crop_frames=crop_frames, noise=None,
                                              rng=rng, noise_prob=0.0))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


@dataclass
class Stream:
    """What each training step draws from: clip weights ``[n]``, version probabilities, noise, crop frames."""

    weights: np.ndarray
    version_probs: tuple[float, ...] | None
    noise: list
    crop_frames: tuple[int, int]


def train_epoch(model, optimiser, scheduler, train: Clips, stream: Stream, recipe: GenderRecipe,
                rng: np.random.Generator, steps: int) -> dict:
    """One epoch of ``steps`` mini-batches; returns its mean loss and accuracy (augmented crops) and seconds."""
    import torch
    import torch.nn.functional as F

    t0 = time.time()
    model.train()
    total_loss, total_correct, seen = 0.0, 0, 0
    for _ in range(steps):
        idx = rng.choice(len(train.rows), size=recipe.batch_size, replace=True, p=stream.weights)
        crop_frames = int(rng.integers(stream.crop_frames[0], stream.crop_frames[1] + 1))
        x = make_batch(train.mels, idx, crop_frames=crop_frames, noise=stream.noise, rng=rng,
                       noise_prob=recipe.noise_prob, snr_db=recipe.snr_db, version_probs=stream.version_probs,
                       speed_probs=recipe.speed_probs)
        if recipe.specaugment:
            spec_augment(x, rng, freq_masks=recipe.spec_freq_masks, max_freq_width=recipe.spec_max_freq_width,
                         time_masks=recipe.spec_time_masks, max_time_fraction=recipe.spec_max_time_fraction)
        y = torch.as_tensor(train.labels[idx])
        logits = model.forward_features(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        total_loss += float(loss.detach()) * len(idx)
        total_correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
    return {"train_loss": round(total_loss / seen, 4), "train_accuracy": round(total_correct / seen, 4),
            "train_seconds": round(time.time() - t0, 1)}


VAL_EVERY = 5
"""Epochs between val scores of a run that keeps its last epoch (a run choosing its best epoch scores every one)."""


def fit(model, train: Clips, val: Clips, stream: Stream, recipe: GenderRecipe,
        rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """Fit ``model`` for ``recipe.epochs`` (AdamW, one-cycle); load the kept epoch's weights.

    Returns ``(best, history)``: ``best`` holds the kept epoch and its val
    accuracy and loss (NaN when val is fitted); ``history`` one record per epoch.
    """
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = max(1, recipe.samples_per_epoch // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.lr, total_steps=recipe.epochs * steps, pct_start=recipe.warmup_share
    )
    best = {"val_accuracy": -1.0, "val_loss": float("inf"), "epoch": 0, "state": None}
    history = []
    for epoch in range(1, recipe.epochs + 1):
        record = {"epoch": epoch, **train_epoch(model, optimiser, scheduler, train, stream, recipe, rng, steps)}
        val_acc, val_loss = float("nan"), float("nan")
        # a run that keeps the last epoch only reports val: every VAL_EVERY-th epoch and the last (the weights do
        # not depend on it: scoring val draws no random numbers and changes no state)
        if recipe.select_on_val and (recipe.keep_epoch == "best" or epoch % VAL_EVERY == 0 or epoch == recipe.epochs):
            t0 = time.time()
            val_acc, val_loss = accuracy_on_mels(model, val.mels, val.labels)
            record.update(val_accuracy=round(val_acc, 4), val_loss=round(val_loss, 4),
                          val_seconds=round(time.time() - t0, 1))
        history.append(record)
        print(json.dumps(record), flush=True)
        if recipe.keep_epoch == "last":
            best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch, "state": None}
        elif (val_acc, -val_loss) > (best["val_accuracy"], -best["val_loss"]):
            best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return best, history


def keep_better_batchnorm(model, train: Clips, val: Clips, best: dict, recipe: GenderRecipe) -> tuple[bool, float]:
    """Re-estimate BatchNorm statistics on clean train crops; keep them only if val improves (accuracy, then loss).

    Runs only when the best epoch was selected on val (``keep_epoch == "best"``).
    Updates ``best`` when kept. Returns ``(used, val accuracy with them or NaN)``.
    """
    if recipe.keep_epoch != "best":
        return False, float("nan")
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, train.mels, np.random.default_rng(recipe.seed + 1), batches=recipe.bn_batches,
                          batch_size=recipe.bn_batch_size, crop_frames=recipe.bn_crop_frames)
    acc, loss = accuracy_on_mels(model, val.mels, val.labels)
    print(json.dumps({"bn_recalibrated_val_accuracy": round(acc, 4), "val_loss": round(loss, 4)}), flush=True)
    used = (acc, -loss) > (best["val_accuracy"], -best["val_loss"])
    if used:
        best["val_accuracy"], best["val_loss"] = acc, loss
    else:
        model.load_state_dict(before)
    model.eval()
    return used, acc


def training_record(recipe: GenderRecipe, train: Clips, val: Clips, stream: Stream, best: dict,
                    history: list, bn: tuple[bool, float]) -> dict:
    """The ``training`` section of ``metadata.json`` (keys and sentences as every earlier run wrote them)."""
    steps = max(1, recipe.samples_per_epoch // recipe.batch_size)
    used, recal_acc = bn
    return {
        "fit_splits": list(recipe.fit_splits),
        "keep": recipe.keep_epoch,
        "corpora": sorted({u.corpus for u in train.rows}),
        "excluded_corpora": list(recipe.excluded),
        **({"excluded_speakers": sorted(recipe.exclude_speakers)} if recipe.exclude_speakers else {}),
        "train_rows": dict(sorted(Counter(f"{u.corpus}/{u.gender}" for u in train.rows).items())),
        "val_rows": dict(sorted(Counter(f"{u.corpus}/{u.gender}" for u in val.rows).items())),
        "n_train": len(train.rows),
        "n_val": len(val.rows),
        "seed": recipe.seed,
        "threads": recipe.threads,
        "epochs": recipe.epochs,
        "best_epoch": best["epoch"],
        "samples_per_epoch": steps * recipe.batch_size,
        "batch_size": recipe.batch_size,
        "crop_s": list(recipe.crop_s),
        "optimiser": optimiser_phrase(recipe),
        "augmentation": augmentation_phrase(recipe, noise_phrase(stream.noise)),
        "channel": ({"copies": recipe.channel_copies, "share": recipe.channel_share,
                     "recipe": channel_recipe(recipe).to_dict(),
                     "drawn": dict(sorted(Counter(k for c in train.channels for k in c.effects).items()))}
                    if recipe.channel_copies else None),
        "noise_kinds": list(recipe.noise_kinds),
        "sampling": sampling_phrase(recipe),
        "pitch_balance_power": recipe.pitch_balance_power,
        "bn_recalibration": {
            "used": bool(used),
            "val_accuracy": None if math.isnan(recal_acc) else round(recal_acc, 4),
            "note": "BatchNorm statistics re-estimated on clean train crops, kept only if it improves val "
                    "(accuracy, then loss)",
        },
        "history": history,
        "wall_seconds": None,
    }


def train_gender(out_dir: str | Path, recipe: GenderRecipe | None = None, **overrides) -> dict:
    """Train a gender model with ``recipe`` (default: the shipped one) and ``overrides``; save it; return its metadata.

    ``overrides`` are recipe keys (``epochs=3``, ``widths={...}``, ``fit_splits=("train",)``;
    see ``training/recipes/gender.yaml``). ``out_dir`` receives ``config.json`` +
    ``model.safetensors`` (``save_pretrained``), ``recipe.yaml`` (the resolved
    recipe), ``metadata.json`` and ``README.md`` (model card, with the ``test``
    metrics of :func:`training.gender_eval.evaluate_gender` when ``evaluate_test``;
    held-out corpora are scored too).

    Raises:
        ValueError: inconsistent settings (:meth:`GenderRecipe.check`), or
            ``exclude_corpora`` naming a corpus the manifest lacks.
        training.config.RecipeError: an unknown key or a value of the wrong type.
    """
    import torch
    import torchaudio

    from pipeline.audio import DEFAULT_AUDIO_CONFIG
    from pipeline.ecapa import FRONTEND_PARAMS, ECAPAGender, LogMelFrontEnd
    from pipeline.gender import GENDER_LABELS, GenderClassifier
    from training.noise import study_babble_rows

    recipe = override(recipe if recipe is not None else GenderRecipe(), overrides)
    recipe.check()
    t_start = time.time()
    torch.set_num_threads(recipe.threads)
    seed_everything(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    out_dir = Path(out_dir)

    all_rows, kept_manifest, fit_rows, val_rows = select_rows(recipe, rng)
    print(f"loading {len(fit_rows)} clips to fit ({'+'.join(recipe.fit_splits)}) + {len(val_rows)} val clips",
          flush=True)
    frontend = LogMelFrontEnd()
    train = prepare_clips(fit_rows, frontend, recipe, fit=True)
    val = prepare_clips(val_rows, frontend, recipe, fit=False)
    print(f"features ready in {time.time() - t_start:.0f} s", flush=True)

    weights = sampling_weights(train.rows)
    if recipe.pitch_balance_power > 0:
        weights = pitch_balance(weights, train.f0, [u.gender for u in train.rows], power=recipe.pitch_balance_power,
                                bin_semitones=recipe.pitch_bin_semitones)
    # the noise study's babble readers never become training babble, so its babble stays unseen noise
    noise = noise_bank(recipe.noise_kinds, frontend, train.rows, seed=recipe.seed,
                       babble_tracks=recipe.babble_tracks, babble_talkers=recipe.babble_talkers,
                       babble_seconds=recipe.babble_seconds,
                       exclude={u.path for u in study_babble_rows(kept_manifest)})
    frames_per_s = frontend.sample_rate / frontend.hop_length
    stream = Stream(weights=weights,
                    version_probs=version_probs(len(recipe.speed_factors), recipe.channel_copies,
                                                speed_probs=recipe.speed_probs, channel_share=recipe.channel_share),
                    noise=noise,
                    crop_frames=tuple(int(round(s * frames_per_s)) for s in recipe.crop_s))

    model = ECAPAGender(**recipe.widths)
    best, history = fit(model, train, val, stream, recipe, rng)
    bn = keep_better_batchnorm(model, train, val, best, recipe)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    save_recipe(recipe, out_dir / RECIPE_FILE)
    metadata = {
        "model": "ECAPA-TDNN gender classifier (small), parameter names as JaesungHuh/voice-gender-classifier",
        "labels": list(GENDER_LABELS),
        "sample_rate": frontend.sample_rate,
        "frontend": FRONTEND_PARAMS,
        "architecture": dict(recipe.widths),
        "audio_config": DEFAULT_AUDIO_CONFIG.to_dict(),
        "training": training_record(recipe, train, val, stream, best, history, bn),
        "val_accuracy": None if math.isnan(best["val_accuracy"]) else round(best["val_accuracy"], 4),
        "torch_version": torch.__version__,
        "torchaudio_version": torchaudio.__version__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    stale = out_dir / "fusion.json"
    if recipe.second_opinion is None and stale.is_file():
        stale.unlink()  # a second opinion of an earlier run must not outlive the ECAPA it was fused with
    if recipe.second_opinion == "ge2e":
        from training.gender_second_opinion import fit_second_opinion, record

        metadata["second_opinion"] = record(fit_second_opinion(out_dir, recipe, fit_rows))
    metadata["training"]["wall_seconds"] = round(time.time() - t_start, 1)
    if recipe.evaluate_test:
        test_rows = gender_rows(all_rows, "test")  # held-out corpora are scored too
        if recipe.max_rows:
            test_rows = [test_rows[i] for i in rng.permutation(len(test_rows))[:recipe.max_rows]]
        metrics = evaluate_gender(GenderClassifier.load(out_dir), test_rows)
        metadata["test_metrics"] = metrics
        print(json.dumps({k: metrics[k] for k in ("overall", "per_corpus", "arousal")}, indent=1), flush=True)
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(model_card(metadata, out_dir), encoding="utf-8")
    return metadata


#: Command-line flags that set one recipe key each (flag dest -> key); ``--no-test`` and ``--widths`` are below.
FLAG_KEYS = {"seed": "seed", "epochs": "epochs", "samples_per_epoch": "samples_per_epoch", "threads": "threads",
             "max_rows": "max_rows", "fit_splits": "fit_splits", "noise": "noise_kinds", "keep": "keep",
             "channel": "channel_copies", "pitch_balance": "pitch_balance_power", "exclude_corpus": "exclude_corpora"}


def build_parser() -> argparse.ArgumentParser:
    """The CLI; help texts quote the shipped recipe's values (``training/recipes/gender.yaml``)."""
    r = GenderRecipe()
    p = argparse.ArgumentParser(prog="python -m training.gender_train", description=__doc__.split("\n\n")[0],
                                epilog="Recipe keys are set in this order: --recipe FILE (or the shipped recipe), "
                                "then the flags, then every --set.")
    p.add_argument("--out", default="gender_model", help="output folder (default: gender_model)")
    p.add_argument("--recipe", metavar="FILE", help="a complete recipe file instead of training/recipes/gender.yaml "
                   "(e.g. the recipe.yaml a run saved)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="set one recipe key (repeatable), e.g. --set lr=1e-3 --set noise_kinds=white,pink "
                   "--set widths.C=256")
    p.add_argument("--seed", type=int, help=f"key seed (recipe: {r.seed})")
    p.add_argument("--epochs", type=int, help=f"key epochs (recipe: {r.epochs})")
    p.add_argument("--samples-per-epoch", type=int, help=f"key samples_per_epoch (recipe: {r.samples_per_epoch})")
    p.add_argument("--threads", type=int, help=f"key threads: torch CPU threads (recipe: {r.threads}; "
                   "1 avoids oversubscription on a busy 2-core machine)")
    p.add_argument("--max-rows", type=int, help="key max_rows: limit rows per split (smoke test)")
    p.add_argument("--no-test", action="store_true", help="key evaluate_test=false: skip the test-split metrics")
    p.add_argument("--fit-splits", nargs="+", choices=list(FIT_SPLITS),
                   help=f"key fit_splits (recipe: {' '.join(r.fit_splits)}: exactly --epochs epochs, last kept; "
                   "train alone selects the best epoch on val)")
    p.add_argument("--noise", nargs="+", choices=list(NOISE_KINDS),
                   help=f"key noise_kinds: noises added to training crops (recipe: {' '.join(r.noise_kinds)})")
    p.add_argument("--keep", choices=["best", "last"],
                   help="key keep: epoch kept by a train-only run (default: best on val; 'last' is the shipped "
                   "recipe with val held out, for unbiased val estimates)")
    p.add_argument("--channel", type=int, metavar="N",
                   help=f"key channel_copies: cache N random recording channels per training clip (reverberation, "
                   f"band limit, MP3/Opus; training.channel), used for a share of crops (recipe: {r.channel_copies})")
    p.add_argument("--pitch-balance", type=float, metavar="POWER",
                   help="key pitch_balance_power: draw rare voice pitches within each gender more often: weight / "
                   f"(share of the clip's F0 bin)^POWER (recipe: {r.pitch_balance_power:g}; 1: flat)")
    p.add_argument("--exclude-corpus", nargs="+", metavar="CORPUS",
                   help="key exclude_corpora: leave these corpora out of fitting and val (held-out-corpus runs)")
    p.add_argument("--length-report", default=None, metavar="STEM",
                   help="after a train-only run, write its val curve to STEM.md and STEM.json")
    p.add_argument("--widths", nargs="+", metavar="KEY=VALUE",
                   help=f"keys widths.*: ECAPA widths (recipe: {' '.join(f'{k}={v}' for k, v in r.widths.items())})")
    return p


def recipe_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> GenderRecipe:
    """The recipe the parsed command line asks for (errors reported through ``parser``)."""
    overrides: dict = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items() if getattr(args, dest) is not None}
    if args.no_test:
        overrides["evaluate_test"] = False
    for item in args.widths or []:
        key, _, value = item.partition("=")
        if not value.isdigit():
            parser.error(f"--widths takes KEY=INTEGER, got {item!r}")
        overrides[f"widths.{key}"] = int(value)
    try:
        recipe = load_recipe("gender", overrides, path=args.recipe)
        recipe = override(recipe, parse_sets(args.sets))
        recipe.check()
    except (RecipeError, ValueError, OSError) as exc:
        parser.error(str(exc))
    return recipe


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.gender_train``: resolve the recipe, train, optionally write the length report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args, parser)
    if args.length_report and "val" in recipe.fit_splits:
        parser.error("--length-report needs a train-only run (the val curve is the report)")
    metadata = train_gender(args.out, recipe)
    if args.length_report:
        command = "python -m training.gender_train " + " ".join(argv if argv is not None else sys.argv[1:])
        write_length_report(metadata, args.length_report, command=command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
