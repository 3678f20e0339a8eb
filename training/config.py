"""Training recipes: commented YAML files in ``training/recipes/`` read into typed, frozen dataclasses.

A recipe is data. ``training/recipes/gender.yaml`` and ``training/recipes/emotion.yaml``
hold every tunable setting of the two trainings, once; the dataclasses that carry
them (:class:`training.gender_recipe.GenderRecipe`,
:class:`training.emotion_train.TrainConfig`) declare only names and types, and
their defaults *are* the YAML values (:func:`recipe_dataclass`), so
``TrainConfig()`` is the shipped emotion recipe and ``TrainConfig(epochs=3)`` a
variant of it.

This module is the machinery (types, overrides, files); recipes by name come
from :func:`training.recipes.load_recipe`. Typical use::

    from training.config import parse_sets, save_recipe
    from training.recipes import load_recipe
    recipe = load_recipe("gender", {"epochs": 3, "widths.C": 64})   # shipped recipe, two keys changed
    recipe = load_recipe("gender", parse_sets(["epochs=3"]), path="old_run/recipe.yaml")
    save_recipe(recipe, "out/recipe.yaml")                          # what a run saves next to its output

Values are checked against the field types (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]`` and nested frozen
dataclasses such as :class:`training.augment.Augmentation`); text values (from
``--set key=value``) are parsed by type, so ``lr=2e-3`` is a float and
``noise_kinds=white,pink`` a tuple. Unknown keys are refused with the list of
known ones (:class:`RecipeError`).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

#: Folder of the shipped recipes (``<name>.yaml``).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
#: File name every training run writes next to its output.
RECIPE_FILE = "recipe.yaml"
#: How to train again from a saved recipe file, per recipe (the header of :func:`recipe_yaml`).
RERUN = {
    "gender": "python -m training.gender_train --recipe <this file> --out <folder>",
    "emotion": "python -m pipeline.train --only male female pooled --recipe emotion=<this file>",
}


class RecipeError(ValueError):
    """A recipe file or override that does not fit the recipe's keys or types."""


def recipe_path(name: str) -> Path:
    """Path of the shipped recipe ``name`` (``training/recipes/<name>.yaml``)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise RecipeError(f"unknown recipe {name!r}; known recipes: {', '.join(known)}")
    return path


@lru_cache(maxsize=None)
def _read_yaml(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        values = yaml.safe_load(fh)
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe file must be a mapping of keys to values")
    return values


def read_values(path: str | Path) -> dict:
    """The raw key -> value mapping of a recipe file (a fresh copy; cached reads)."""
    import copy

    return copy.deepcopy(_read_yaml(str(Path(path).resolve())))


# --------------------------------------------------------------------------- types


def _type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown(key: str, known: Iterable[str], what: str) -> RecipeError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return RecipeError(f"unknown key {key!r} in {what}{hint}; known keys: {', '.join(known)}")


def _number(value: Any, cast: type, accepted: tuple, key: str, what: str):
    """``value`` as ``cast`` when it is one of ``accepted`` (never a bool) or text that parses; else RecipeError."""
    if isinstance(value, accepted) and not isinstance(value, bool):
        return cast(value)
    if isinstance(value, str):
        try:
            return cast(value.strip())
        except ValueError:
            pass
    raise RecipeError(f"{key}: expected {what}, got {value!r}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to the annotated type ``tp`` (``key`` names it in errors).

    Text is parsed by type (``"2e-3"`` -> 0.002 for a float, ``"white,pink"`` or
    ``"[white, pink]"`` -> ``("white", "pink")`` for a tuple of str); ints are
    accepted for floats; sequences become tuples; mappings become dicts or
    dataclasses.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], key)
        raise RecipeError(f"{key}: unsupported type {tp}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise RecipeError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        return _number(value, int, (int,), key, "an integer")
    if tp is float:
        return _number(value, float, (int, float), key, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise RecipeError(f"{key}: expected text, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip()
            value = yaml.safe_load(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise RecipeError(f"{key}: expected {len(args)} values, got {list(value)!r}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise RecipeError(f"{key}: expected a mapping, got {value!r}")
        return {coerce(k, args[0], key): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise RecipeError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        hints = _type_hints(tp)
        for k in value:
            if k not in hints:
                raise _unknown(k, hints, f"{key} ({tp.__name__})")
        return tp(**{k: coerce(v, hints[k], f"{key}.{k}") for k, v in value.items()})
    raise RecipeError(f"{key}: unsupported type {tp}")


def _plain(value: Any) -> Any:
    """``value`` as YAML-ready builtins (tuples -> lists, dataclasses -> dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- recipe classes


def recipe_dataclass(name: str):
    """Class decorator: a frozen dataclass whose field defaults are the values of ``recipes/<name>.yaml``.

    The class declares each setting as an annotation only; the YAML file must
    hold exactly those keys (a missing or extra key is an error at import).
    Dict and list values get a ``default_factory`` (a fresh copy per instance).
    """
    def wrap(cls):
        hints = {k: v for k, v in _type_hints(cls).items() if k in cls.__dict__.get("__annotations__", {})}
        path = recipe_path(name)
        values = _read_yaml(str(path))
        _check_keys(values, hints, str(path))
        for key, tp in hints.items():
            value = coerce(values[key], tp, key)
            if isinstance(value, (dict, list)):
                setattr(cls, key, field(default_factory=lambda v=value: _copy(v)))
            else:
                setattr(cls, key, value)
        cls = dataclass(frozen=True)(cls)
        cls.recipe_name = name
        return cls
    return wrap


def _copy(value):
    import copy

    return copy.deepcopy(value)


def _check_keys(values: Mapping, hints: Mapping, source: str) -> None:
    for key in values:
        if key not in hints:
            raise _unknown(key, hints, source)
    missing = [key for key in hints if key not in values]
    if missing:
        raise RecipeError(f"{source} lacks the keys {', '.join(missing)}")


def override(recipe, overrides: Mapping[str, Any] | None = None):
    """A copy of ``recipe`` with ``overrides`` (key -> value) applied.

    Keys are field names, or ``field.sub`` for one entry of a dict field (e.g.
    ``widths.C``). Text values are parsed by the field's type, other values
    converted to it.

    Raises:
        RecipeError: an unknown key, or a value that does not fit the type.
    """
    if not overrides:
        return recipe
    hints = _type_hints(type(recipe))
    what = f"the {getattr(recipe, 'recipe_name', type(recipe).__name__)} recipe"
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        top, dot, sub = key.partition(".")
        if top not in hints:
            raise _unknown(top, hints, what)
        if not dot:
            changes[top] = coerce(value, hints[top], top)
            continue
        if typing.get_origin(hints[top]) is not dict:
            raise RecipeError(f"{top} is not a mapping: set it whole ({top}=...), not {key!r}")
        current = dict(changes.get(top, getattr(recipe, top)))
        if sub not in current:
            raise _unknown(sub, current, f"{what}'s {top}")
        current[sub] = coerce(value, typing.get_args(hints[top])[1], key)
        changes[top] = current
    return replace(recipe, **changes)


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``["epochs=3", "widths.C=64"]`` -> ``{"epochs": "3", "widths.C": "64"}`` (values still text)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise RecipeError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def from_file(cls: type, path: str | Path, overrides: Mapping[str, Any] | None = None):
    """The recipe dataclass ``cls`` with the values of the complete recipe file ``path``, then ``overrides``.

    ``path`` (e.g. a ``recipe.yaml`` a run saved) must hold every key of ``cls``
    and no other (:class:`RecipeError` otherwise), except the keys of
    ``cls.ADDED_LATER`` (key -> value): keys added to the recipe after runs had
    saved theirs, filled with the value that repeats those runs.
    """
    values = {**getattr(cls, "ADDED_LATER", {}), **read_values(path)}
    hints = {f.name: _type_hints(cls)[f.name] for f in fields(cls)}
    _check_keys(values, hints, str(path))
    return override(cls(**{k: coerce(v, hints[k], k) for k, v in values.items()}), overrides)


def recipe_yaml(recipe) -> str:
    """``recipe`` as YAML text, keys in field order (loadable again with :func:`from_file`)."""
    name = getattr(recipe, "recipe_name", type(recipe).__name__)
    values = {f.name: _plain(getattr(recipe, f.name)) for f in fields(recipe)}
    head = (f"# Resolved {name} recipe of this run (training/recipes/{name}.yaml with the run's overrides).\n"
            f"# Repeat it: {RERUN.get(name, '--recipe <this file>')}\n")
    return head + yaml.safe_dump(values, sort_keys=False, default_flow_style=None, allow_unicode=True)


def save_recipe(recipe, path: str | Path) -> Path:
    """Write :func:`recipe_yaml` to ``path`` (a folder gets :data:`RECIPE_FILE` inside it); return the file."""
    path = Path(path)
    if path.is_dir():
        path = path / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe_yaml(recipe), encoding="utf-8")
    return path
