"""Scoring gender models: whole-clip accuracy during training and the test metrics of the model card.

:func:`evaluate_gender` scores a :class:`pipeline.gender.GenderClassifier` on
manifest rows exactly as at inference (prepared signal, same front end,
BatchNorm in eval mode) and tallies the result per corpus, gender, speaker,
gender x emotion and arousal group; :func:`accuracy_on_mels` is the cheaper
check on cached log-mels that the training loop runs after every epoch.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from training.corpus import Utterance
from training.gender_signals import load_signals

#: Emotions counted as high / low arousal in the arousal check of the model card.
HIGH_AROUSAL = ("angry", "happy", "fearful", "surprised")
LOW_AROUSAL = ("sad", "calm", "neutral")


def accuracy_on_mels(model, mels: Sequence, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy in nats) of ``model`` on whole clips.

    ``mels`` are un-normalised log-mels ``[80, frames]``, each mean-normalised
    here as at inference; ``labels [n]`` are class indices (0 male, 1 female).
    """
    import torch
    import torch.nn.functional as F

    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for m, y in zip(mels, labels):
            logits = model.forward_features((m - m.mean(dim=1, keepdim=True))[None])
            loss += float(F.cross_entropy(logits, torch.tensor([int(y)])))
            correct += int(int(logits.argmax(1)) == int(y))
    return correct / max(1, len(mels)), loss / max(1, len(mels))


def evaluate_gender(classifier, utterances: Sequence[Utterance], *, signals: Sequence | None = None) -> dict:
    """Gender accuracy of ``classifier`` on ``utterances`` (gender-labelled rows).

    Args:
        classifier: a :class:`pipeline.gender.GenderClassifier` (anything with
            ``predict_proba_batch`` returning ``[p_male, p_female]`` rows).
        utterances: manifest rows; rows without ``male``/``female`` are ignored.
        signals: optional prepared signals aligned with ``utterances`` (``None``
            entries are skipped); loaded with :func:`pipeline.audio.load_audio` if omitted.

    Returns:
        ``{"overall": {...}, "per_corpus": {corpus: {...}}, "per_gender": {...},
        "per_speaker": {speaker: {...}},
        "per_gender_emotion": {"male/angry": {...}, ...},
        "arousal": {"male_high_arousal": {...}, "female_low_arousal": {...}, ...},
        "errors": [relpath, ...], "skipped": n}`` where each ``{...}`` is
        ``{"n": int, "correct": int, "accuracy": float}``.
    """
    from pipeline.gender import GENDER_LABELS

    rows = [(i, u) for i, u in enumerate(utterances) if u.gender in GENDER_LABELS]
    if signals is None:
        loaded = load_signals([u for _, u in rows], log_every=0)
    else:
        loaded = [signals[i] for i, _ in rows]
    kept = [(u, y) for (_, u), y in zip(rows, loaded) if y is not None]
    skipped = len(rows) - len(kept)
    probs = classifier.predict_proba_batch([y for _, y in kept]) if kept else np.zeros((0, 2))
    tallies: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    errors = []
    for (u, _), p in zip(kept, probs):
        ok = int(GENDER_LABELS[int(np.argmax(p))] == u.gender)
        if not ok:
            errors.append(u.relpath)
        keys = [("overall", "all"), ("per_corpus", u.corpus), ("per_gender", u.gender), ("per_speaker", u.speaker)]
        if u.emotion:
            keys.append(("per_gender_emotion", f"{u.gender}/{u.emotion}"))
            if u.emotion in HIGH_AROUSAL:
                keys.append(("arousal", f"{u.gender}_high_arousal"))
            if u.emotion in LOW_AROUSAL:
                keys.append(("arousal", f"{u.gender}_low_arousal"))
        for section, key in keys:
            tallies[section][key][0] += 1
            tallies[section][key][1] += ok

    def cell(n_correct: list[int]) -> dict:
        n, c = n_correct
        return {"n": n, "correct": c, "accuracy": round(c / n, 4) if n else float("nan")}

    result: dict = {
        section: {key: cell(v) for key, v in sorted(tallies[section].items())}
        for section in ("per_corpus", "per_gender", "per_speaker", "per_gender_emotion", "arousal")
    }
    result["overall"] = cell(tallies["overall"]["all"])
    result["errors"] = sorted(errors)
    result["skipped"] = skipped
    return result

