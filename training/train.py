"""Rebuild every shipped model from ``../shared/data`` with fixed seeds.

    python -m pipeline.train                 # gender, male, female, pooled; then evaluate
    python -m pipeline.train --only male female
    python -m pipeline.train --set emotion.epochs=30 --set gender.epochs=60
    python -m pipeline.train --only male female pooled --recipe emotion=male_models/recipe.yaml

Writes ``gender_model/``, ``male_models/``, ``female_models/`` and
``pooled_model/`` (the gender-agnostic comparison model), each with its config
and ``training_history.json``, then runs :mod:`pipeline.evaluate`, which writes
``reports/`` and regenerates the model cards so they match the new weights.
The recipes are ``training/recipes/gender.yaml`` and ``training/recipes/emotion.yaml``;
every model folder gets the resolved recipe as ``recipe.yaml``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cascade import FEMALE_MODEL_DIR, MALE_MODEL_DIR
from pipeline.paths import PROJECT_ROOT
from training.evaluate import POOLED_MODEL_DIR

EMOTION_DIRS = {"male": MALE_MODEL_DIR, "female": FEMALE_MODEL_DIR, "pooled": POOLED_MODEL_DIR}
PARTS = ("gender", "male", "female", "pooled")  # the three emotion models are trained together


def _by_recipe(items: list[str], flag: str, parser: argparse.ArgumentParser, *, sep: str) -> dict[str, list[str]]:
    """``["gender.epochs=3", ...]`` -> ``{"gender": ["epochs=3"], ...}`` (``sep`` "." for --set, "=" for --recipe)."""
    out: dict[str, list[str]] = {"gender": [], "emotion": []}
    for item in items:
        name, found, rest = item.partition(sep)
        if not found or name not in out or not rest:
            parser.error(f"{flag} takes gender{sep}... or emotion{sep}..., got {item!r}")
        out[name].append(rest)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="which models to rebuild")
    parser.add_argument("--seeds", type=int, default=None,
                        help="ensemble size of the emotion models (key emotion.n_seeds)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    parser.add_argument("--processes", type=int, default=1,
                        help="train the emotion ensemble's members in this many processes (one thread each), "
                             "then join them: the same ensemble, faster on a multi-core machine")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the evaluation and model cards")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="RECIPE.KEY=VALUE",
                        help="set one key of the gender or emotion recipe, e.g. --set emotion.epochs=30 (repeatable)")
    parser.add_argument("--recipe", action="append", default=[], metavar="RECIPE=FILE",
                        help="a complete recipe file instead of the shipped one, e.g. emotion=male_models/recipe.yaml")
    args = parser.parse_args(argv)
    sets = _by_recipe(args.sets, "--set", parser, sep=".")
    files = {name: paths[-1] for name, paths in _by_recipe(args.recipe, "--recipe", parser, sep="=").items() if paths}

    from training.config import RECIPE_FILE, RecipeError, override, parse_sets, save_recipe
    from training.recipes import load_recipe

    try:  # both recipes are checked before anything trains
        config = load_recipe("emotion", parse_sets(sets["emotion"]), path=files.get("emotion"))
        if args.seeds:
            config = override(config, {"n_seeds": args.seeds})
        load_recipe("gender", parse_sets(sets["gender"]), path=files.get("gender")).check()
    except (RecipeError, ValueError, OSError) as exc:
        parser.error(str(exc))

    if "gender" in args.only:
        from training.gender_train import main as train_gender_main

        train_gender_main(["--out", str(PROJECT_ROOT / "gender_model"),
                           *(["--recipe", files["gender"]] if "gender" in files else []),
                           *(f"--set={item}" for item in sets["gender"])])
    if set(args.only) & set(EMOTION_DIRS):
        from pipeline.emotion import configure_tensorflow
        from training.emotion_train import save_history, train_family, train_family_parallel

        configure_tensorflow(args.threads)
        models, history = (train_family_parallel(config, processes=args.processes) if args.processes > 1
                           else train_family(config))
        for name, model in models.items():
            if name in args.only:
                folder: Path = EMOTION_DIRS[name]
                model.save(folder)
                save_history({"members": history[name]}, folder / "training_history.json")
                save_recipe(config, folder / RECIPE_FILE)
                print(f"saved {folder}", flush=True)
    if not args.no_evaluate:
        from training.evaluate import main as evaluate_main

        evaluate_main([])  # also regenerates the model cards
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
