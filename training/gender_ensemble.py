"""Build a seed ensemble of gender models: member folders plus ``ensemble.json``.

Usage::

    python -m training.gender_train --out /tmp/g0 --seed 0     # and --seed 1, --seed 2
    python -m training.gender_ensemble --members /tmp/g0 /tmp/g1 /tmp/g2 --out gender_model

The output folder holds one sub-folder per member (``seed0/``, ``seed1/``, ...,
each exactly what :mod:`training.gender_train` wrote: ``config.json`` and
``model.safetensors`` in the hub layout, ``metadata.json`` and ``recipe.yaml``), an
``ensemble.json`` naming them (read by :meth:`pipeline.gender.GenderClassifier.load`,
which averages the members' probabilities), a ``metadata.json`` with the
members' training record and the ensemble's own ``test`` metrics, and the model
card ``README.md``. Members must share labels, front end, architecture and audio
preparation; they differ by seed only.

Why an ensemble: single models of the same recipe land 97.4-98.3% on ``test``
depending on the seed (``studies/gender_recipe/seeds.md``). On ``val``, with
``train``-only members, a three-seed ensemble was two clips better than its mean
member and steadier under noise, one clip short of the rule set for shipping it
(``studies/gender_recipe/ensemble_plan.md``, ``studies/gender_recipe/ensemble_val.md``): the
shipped model is a single network, and this module is for users who want the ensemble.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from pipeline.errors import ModelError
from pipeline.gender import ENSEMBLE_COMBINE, ENSEMBLE_FILE, MODEL_FILES
from training.config import RECIPE_FILE

#: Metadata keys every member must agree on.
SHARED_KEYS = ("labels", "sample_rate", "frontend", "architecture", "audio_config")
#: Training settings every member must agree on (the recipe; the seed is what differs).
SHARED_TRAINING_KEYS = ("fit_splits", "train_rows", "epochs", "keep", "noise_kinds", "augmentation", "optimiser")
COMBINE = "mean of the members' (male, female) probabilities"


def _member_name(metadata: dict, index: int, taken: set[str]) -> str:
    seed = (metadata.get("training") or {}).get("seed")
    name = f"seed{seed}" if isinstance(seed, int) else f"member{index}"
    return name if name not in taken else f"member{index}"


def _recipe(metadata: dict) -> dict:
    """A member's training settings, with the defaults of runs recorded before a setting was written down."""
    training = dict(metadata.get("training") or {})
    training.setdefault("noise_kinds", ["white"])  # before --noise existed, training noise was white only
    training.setdefault("keep", "last" if "val" in training.get("fit_splits", []) else "best")
    return training


def ensemble_metadata(members: dict[str, dict]) -> dict:
    """Metadata of an ensemble from its members' ``metadata.json`` (name -> dict, in order).

    Raises:
        ModelError: the members disagree on labels, front end, architecture or audio preparation.
    """
    first_name, first = next(iter(members.items()))
    for name, meta in members.items():
        differ = [key for key in SHARED_KEYS if meta.get(key) != first.get(key)]
        differ += [f"training.{key}" for key in SHARED_TRAINING_KEYS
                   if _recipe(meta).get(key) != _recipe(first).get(key)]
        if differ:
            raise ModelError(f"ensemble members {first_name!r} and {name!r} differ in {', '.join(differ)}; "
                             "members must differ by seed only")
    # the recipe plus whatever else every member records alike (e.g. the kept epoch of fixed-length runs);
    # per-member outcomes (best epoch on val, BatchNorm re-estimation) stay in the members' own metadata
    recipes = [_recipe(m) for m in members.values()]
    training = {k: v for k, v in recipes[0].items()
                if k not in ("history", "seed", "wall_seconds") and all(r.get(k) == v for r in recipes)}
    training["seeds"] = [(m.get("training") or {}).get("seed") for m in members.values()]
    training["wall_seconds"] = round(sum((m.get("training") or {}).get("wall_seconds") or 0 for m in members.values()), 1)
    return {
        "model": f"seed ensemble of {len(members)} small ECAPA-TDNN gender classifiers "
                 "(parameter names as JaesungHuh/voice-gender-classifier)",
        **{key: first.get(key) for key in SHARED_KEYS},
        "ensemble": {"members": list(members), "combine": COMBINE},
        "training": training,
        "members": {
            name: {
                "seed": (m.get("training") or {}).get("seed"),
                "test_accuracy": ((m.get("test_metrics") or {}).get("overall") or {}).get("accuracy"),
            }
            for name, m in members.items()
        },
        "torch_version": first.get("torch_version"),
        "torchaudio_version": first.get("torchaudio_version"),
        "n_parameters": sum(m.get("n_parameters") or 0 for m in members.values()),
    }


def build_ensemble(member_dirs: Sequence[str | Path], out_dir: str | Path, *, evaluate_test: bool = True,
                   max_rows: int | None = None) -> dict:
    """Copy ``member_dirs`` into ``out_dir`` as an ensemble, score it on ``test``, write its card; return its metadata.

    ``out_dir`` is replaced only once the new folder is complete (it may be one
    of the members: they are copied first). ``max_rows`` limits the ``test``
    rows scored (smoke tests only).

    Raises:
        ModelError: fewer than two members, a member lacks its weights or
            ``metadata.json``, or the members differ in more than their seed.
    """
    from pipeline.gender import GenderClassifier
    from training.gender_cards import model_card
    from training.gender_eval import evaluate_gender
    from training.gender_signals import gender_rows

    member_dirs = [Path(d) for d in member_dirs]
    if len(member_dirs) < 2:
        raise ModelError("an ensemble needs at least two member folders")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        metas: dict[str, dict] = {}
        for index, src in enumerate(member_dirs):
            for name in (*MODEL_FILES, "metadata.json"):
                if not (src / name).is_file():
                    raise ModelError(f"ensemble member folder is missing {name}", path=str(src))
            meta = json.loads((src / "metadata.json").read_text(encoding="utf-8"))
            if (src / ENSEMBLE_FILE).exists():
                raise ModelError("an ensemble member must be a single model, not an ensemble", path=str(src))
            name = _member_name(meta, index, set(metas))
            (staging / name).mkdir()
            for file in (*MODEL_FILES, "metadata.json", RECIPE_FILE):
                if file != RECIPE_FILE or (src / file).is_file():  # runs before recipes were files lack it
                    shutil.copy2(src / file, staging / name / file)
            metas[name] = meta
        metadata = ensemble_metadata(metas)
        (staging / ENSEMBLE_FILE).write_text(
            json.dumps({"members": list(metas), "combine": ENSEMBLE_COMBINE}, indent=2) + "\n", encoding="utf-8")
        if evaluate_test:
            from training.corpus import read_manifest

            rows = gender_rows(read_manifest(), "test")
            if max_rows:
                rows = rows[:max_rows]
            metadata["test_metrics"] = evaluate_gender(GenderClassifier.load(staging), rows)
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(model_card(metadata, staging), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gender_ensemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", nargs="+", required=True, metavar="DIR",
                        help="gender model folders written by training.gender_train (same recipe, different seeds)")
    parser.add_argument("--out", default="gender_model", help="ensemble folder (default: gender_model)")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split metrics")
    parser.add_argument("--max-rows", type=int, default=None, help="limit test rows (smoke test)")
    args = parser.parse_args(argv)
    if len(args.members) < 2:
        parser.error("--members needs at least two folders")
    try:
        metadata = build_ensemble(args.members, args.out, evaluate_test=not args.no_test, max_rows=args.max_rows)
    except ModelError as exc:
        print(f"error: {exc}")
        return 2
    overall = (metadata.get("test_metrics") or {}).get("overall")
    print(f"wrote {args.out} ({len(metadata['ensemble']['members'])} members)"
          + (f"; test accuracy {100 * overall['accuracy']:.2f}% ({overall['correct']}/{overall['n']})" if overall else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
