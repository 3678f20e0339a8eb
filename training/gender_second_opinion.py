"""The gender stage's second opinion: a GE2E logistic regression fused with the ECAPA (``fusion.json``).

Usage::

    python -m training.gender_second_opinion --model gender_model    # fit the head into an existing folder

:func:`training.gender_train.train_gender` calls :func:`fit_second_opinion` after the ECAPA when
the recipe's ``second_opinion`` is ``ge2e``. The head is a logistic regression on the pretrained
GE2E speaker embedding (:mod:`pipeline.speaker_encoder`), ``C`` by GroupKFold over speakers
(:func:`training.gender_fusion.fit_ge2e_head`), fitted on the recipe's fitting rows as recorded
**plus** ``ge2e_copies`` degraded copies of each (:func:`training.ge2e_copies.degrade`: a random
recording channel, then noise at a random SNR). The fusion's weight and temperatures are recipe
values from ``studies/gender_fusion/rule_report.md`` (F*(R,Gd), the robust-recipe ECAPA's fusion): fitted on every clip of the six
leave-one-corpus-out folds, corpora each fold's models had never seen. They cannot be fitted here:
the ECAPA has seen every fitting row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.paths import PROJECT_ROOT

CACHE = PROJECT_ROOT / "cache" / "ge2e"


def fit_second_opinion(out_dir: str | Path, recipe, fit_rows: Sequence, *, cache: Path = CACHE):
    """Fit the GE2E head on ``fit_rows`` and their copies; write ``fusion.json`` into ``out_dir``; return it.

    Args:
        out_dir: the gender model folder (its ECAPA is already there).
        recipe: the :class:`training.gender_recipe.GenderRecipe` (``ge2e_copies`` and the ``fusion_*`` keys).
        fit_rows: the manifest rows the ECAPA was fitted on (gender ``male``/``female``).
        cache: folder of the embedding caches (``embeddings.npz``, ``degraded_copies.npz``).

    Returns: the saved :class:`pipeline.gender_fusion.GenderFusion`.
    """
    from pipeline.gender_fusion import GenderFusion
    from training.ge2e_copies import embed_corpus, embed_fitting_copies
    from training.gender_fusion import fit_ge2e_head

    clean = embed_corpus(fit_rows, cache / "embeddings.npz")["vectors"]
    copies = embed_fitting_copies(fit_rows, cache / "degraded_copies.npz", copies=recipe.ge2e_copies) \
        if recipe.ge2e_copies else {"keys": np.array([]), "embeddings": np.zeros((0, 256), np.float32)}
    by_clip: dict[str, list[np.ndarray]] = {}
    for key, vector in zip(copies["keys"].tolist(), copies["embeddings"]):
        clip, k = key.rsplit("#", 1)
        if int(k) < recipe.ge2e_copies:
            by_clip.setdefault(clip, []).append(vector)
    X, y, groups = [], [], []
    for u in fit_rows:
        if u.relpath not in clean:
            continue
        versions = [clean[u.relpath], *by_clip.get(u.relpath, [])]
        X += versions
        y += [int(u.gender == "female")] * len(versions)
        groups += [u.speaker] * len(versions)
    head, c = fit_ge2e_head(np.stack(X), np.array(y), np.array(groups))
    fusion = GenderFusion(head, ecapa_temperature=recipe.fusion_ecapa_temperature,
                          ge2e_temperature=recipe.fusion_ge2e_temperature, ecapa_weight=recipe.fusion_ecapa_weight,
                          provenance={"head": "logistic regression on GE2E embeddings (class_weight balanced)",
                                      "C": c, "clips": len({u.relpath for u in fit_rows if u.relpath in clean}),
                                      "rows_with_copies": len(y), "degraded_copies_per_clip": recipe.ge2e_copies,
                                      "weights_and_temperatures": "recipe values, fitted on the held-out corpora of "
                                                                  "the six leave-one-corpus-out folds "
                                                                  "(studies/gender_fusion/rule_report.md)"})
    fusion.save(out_dir)
    print(f"second opinion: GE2E head C={c} on {len(y)} rows ({recipe.ge2e_copies} degraded copies per clip) "
          f"-> {Path(out_dir) / 'fusion.json'}", file=sys.stderr, flush=True)
    return fusion


def record(fusion) -> dict:
    """What ``metadata.json`` records of a fitted second opinion (under ``"second_opinion"``)."""
    return {**fusion.provenance, "ecapa_weight": fusion.ecapa_weight, "ecapa_temperature": fusion.ecapa_temperature,
            "ge2e_temperature": fusion.ge2e_temperature}


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from training.recipes import load_recipe
    from training.gender_signals import select_rows

    parser = argparse.ArgumentParser(prog="python -m training.gender_second_opinion", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "gender_model",
                        help="gender model folder to add fusion.json to (its ECAPA is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    recipe = load_recipe("gender")
    if recipe.second_opinion != "ge2e":
        parser.error("the gender recipe has no second opinion (second_opinion: null)")
    _, _, fit_rows, _ = select_rows(recipe, np.random.default_rng(recipe.seed))
    fusion = fit_second_opinion(args.model, recipe, fit_rows)
    meta_path = args.model / "metadata.json"
    if meta_path.is_file():
        import json

        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        metadata["second_opinion"] = record(fusion)
        meta_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
