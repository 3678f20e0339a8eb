"""The shipped training recipes by name: ``gender.yaml`` and ``emotion.yaml`` in this folder.

``load_recipe("gender")`` is :class:`training.gender_recipe.GenderRecipe` with
the values of ``gender.yaml``; ``load_recipe("emotion")`` is
:class:`training.emotion_train.TrainConfig` with those of ``emotion.yaml``.
Each YAML file is commented key by key; :mod:`training.config` reads, checks
and overrides them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from training.config import RecipeError, from_file, override

#: Names of the shipped recipes (``<name>.yaml`` here).
RECIPES = ("gender", "emotion")


def recipe_class(name: str) -> type:
    """The dataclass that carries recipe ``name`` (imported on first use: the emotion one pulls in Keras helpers)."""
    if name == "gender":
        from training.gender_recipe import GenderRecipe

        return GenderRecipe
    if name == "emotion":
        from training.emotion_train import TrainConfig

        return TrainConfig
    raise RecipeError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")


def load_recipe(name: str, overrides: Mapping[str, Any] | None = None, *, path: str | Path | None = None):
    """Recipe ``name``: the shipped YAML (or the complete recipe file ``path``), then ``overrides``.

    ``overrides`` map keys (``"epochs"``, or ``"widths.C"`` for one entry of a
    mapping) to values; text values are parsed by the key's type
    (:func:`training.config.override`).

    Raises:
        training.config.RecipeError: an unknown recipe or key, a value of the wrong
            type, or a file that lacks keys.
    """
    cls = recipe_class(name)
    return from_file(cls, path, overrides) if path is not None else override(cls(), overrides)
