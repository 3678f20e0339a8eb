"""Rebuild every shipped model from ``../shared/data`` with fixed seeds.

    python -m pipeline.train                 # gender, male, female, pooled; then evaluate
    python -m pipeline.train --only male female

Writes ``gender_model/``, ``male_models/``, ``female_models/`` and
``pooled_model/`` (the gender-agnostic comparison model), each with its config
and ``training_history.json``, then runs :mod:`pipeline.evaluate`, which writes
``reports/`` and regenerates the model cards so they match the new weights.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR
from pipeline.paths import PROJECT_ROOT
from training.evaluate import POOLED_MODEL_DIR

EMOTION_DIRS = {"male": MALE_MODEL_DIR, "female": FEMALE_MODEL_DIR, "pooled": POOLED_MODEL_DIR}
PARTS = ("gender", "male", "female", "pooled")  # the three emotion models are trained together


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="which models to rebuild")
    parser.add_argument("--seeds", type=int, default=None, help="ensemble size of the emotion models (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the evaluation and model cards")
    args = parser.parse_args(argv)

    if "gender" in args.only:
        from training.gender_train import main as train_gender_main

        train_gender_main(["--out", str(PROJECT_ROOT / "gender_model")])
    if set(args.only) & set(EMOTION_DIRS):
        from pipeline.emotion import configure_tensorflow
        from training.emotion_train import TrainConfig, save_history, train_family

        configure_tensorflow(args.threads)
        config = TrainConfig() if not args.seeds else replace(TrainConfig(), n_seeds=args.seeds)
        models, history = train_family(config)
        for name, model in models.items():
            if name in args.only:
                folder: Path = EMOTION_DIRS[name]
                model.save(folder)
                save_history({"members": history[name]}, folder / "training_history.json")
                print(f"saved {folder}", flush=True)
    if not args.no_evaluate:
        from training.evaluate import main as evaluate_main

        evaluate_main([])  # also regenerates the model cards
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
