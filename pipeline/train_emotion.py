"""Train the gender-specific (and the pooled comparison) emotion CNNs.

Recipe (each choice measured by ``python -m pipeline.experiments``):

* training rows: the ``train`` split of every emotional corpus (RAVDESS, SAVEE,
  ASED, EMOVO) for the model's gender; early stopping on the ``val`` split of
  the same gender; ``test`` speakers are never seen;
* augmentation: each training clip also enters as speed-perturbed copies (x0.9,
  x1.1) and with pink noise at 15 dB SNR (:mod:`pipeline.augment`);
* class weights balance the eight emotions (SAVEE/EMOVO have no ``calm``, ASED
  only five classes);
* ``pretrain``: the network is first trained on both genders (that network is
  the pooled comparison model), then fine-tuned on each gender (female
  emotional speech is scarce);
* an ensemble of ``n_seeds`` networks, averaged inside one Keras model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import DEFAULT_AUDIO_CONFIG
from .augment import DEFAULT_AUGMENTATIONS, Augmentation
from .data import Utterance, read_manifest
from .dataset import FeatureTable, build_table
from .emotion import EMOTION_LABELS, EmotionModel, EmotionModelConfig, build_cnn, configure_tensorflow, library_versions
from .features import DEFAULT_FEATURE_CONFIG, feature_names

EMOTION_CORPORA = ("ravdess", "savee", "ased", "emovo")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one emotion model (saved in its ``config.json``)."""

    corpora: tuple[str, ...] = EMOTION_CORPORA
    augmentations: tuple[Augmentation, ...] = DEFAULT_AUGMENTATIONS
    pretrain: bool = True
    n_seeds: int = 3
    seed: int = 0
    epochs: int = 60
    finetune_epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 3e-4
    patience: int = 8
    monitor: str = "val_loss"
    dropout: float = 0.4
    label_smoothing: float = 0.1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["augmentations"] = [a.tag for a in self.augmentations]
        return data


@dataclass
class Split:
    """Features and labels of one split: ``X [n, n_features]``, ``y [n]`` class indices."""

    X: np.ndarray
    y: np.ndarray
    utterances: list[Utterance] = field(default_factory=list)


def emotion_rows(utterances: Sequence[Utterance] | None = None) -> list[Utterance]:
    """All manifest rows that carry an emotion label."""
    return [u for u in (utterances if utterances is not None else read_manifest()) if u.emotion]


def _select(table: FeatureTable, keep) -> Split:
    part = table.select(keep)
    return Split(
        X=part.X,
        y=np.array([EMOTION_LABELS.index(u.emotion) for u in part.utterances], dtype=np.int64),
        utterances=list(part.utterances),
    )


def load_splits(config: TrainConfig, genders: tuple[str, ...], *, jobs: int | None = None) -> tuple[Split, Split]:
    """Training rows (clean + augmented copies) and validation rows for ``genders``."""
    rows = emotion_rows()
    clean = build_table(rows, jobs=jobs)

    def keep(split: str):
        return lambda u: u.split == split and u.gender in genders and u.corpus in config.corpora

    parts = [_select(clean, keep("train"))]
    train_rows = [u for u in rows if u.split == "train"]
    for augmentation in config.augmentations:
        parts.append(_select(build_table(train_rows, augmentation=augmentation, jobs=jobs), keep("train")))
    train = Split(
        X=np.concatenate([p.X for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        utterances=[u for p in parts for u in p.utterances],
    )
    return train, _select(clean, keep("val"))


def _class_weights(y: np.ndarray) -> dict[int, float]:
    counts = np.bincount(y, minlength=len(EMOTION_LABELS)).astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def _fit(model, X, y, X_val, y_val, *, epochs: int, lr: float, config: TrainConfig, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=16,
    )
    n = len(EMOTION_LABELS)
    if config.monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {config.monitor!r}")
    callbacks = [keras.callbacks.EarlyStopping(monitor=config.monitor, patience=config.patience,
                                               restore_best_weights=True)]
    history = model.fit(
        X, keras.utils.to_categorical(y, n), validation_data=(X_val, keras.utils.to_categorical(y_val, n)),
        epochs=epochs, batch_size=config.batch_size, class_weight=_class_weights(y), callbacks=callbacks,
        verbose=0, shuffle=True,
    )
    h = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    h["best_epoch"] = int(np.argmin(h["val_loss"]) if config.monitor == "val_loss" else np.argmax(h["val_accuracy"])) + 1
    return h


def train_family(config: TrainConfig, *, jobs: int | None = None,
                 verbose: bool = True) -> tuple[dict[str, EmotionModel], dict]:
    """Train the pooled, male and female emotion models together.

    With ``config.pretrain`` each ensemble member is first trained on both
    genders (that network *is* the pooled model's member), then a copy is
    fine-tuned on each gender. Without it, each gender model is trained from
    scratch on its own gender and the pooled model separately, all with the
    same recipe. One scaler, fitted on the pooled training rows, serves all three.

    Returns:
        ``({"pooled": m, "male": m, "female": m}, history)``; ``history[name]``
        lists each member's per-epoch loss/accuracy curves (train and val).
    """
    configure_tensorflow()
    import keras
    from sklearn.preprocessing import StandardScaler

    splits = {name: load_splits(config, genders, jobs=jobs)
              for name, genders in (("pooled", ("male", "female")), ("male", ("male",)), ("female", ("female",)))}
    scaler = StandardScaler().fit(splits["pooled"][0].X)

    def scaled(split: Split) -> np.ndarray:
        return scaler.transform(split.X).astype(np.float32)

    members: dict[str, list] = {name: [] for name in splits}
    history: dict[str, list] = {name: [] for name in splits}
    n_features = splits["pooled"][0].X.shape[1]
    for k in range(config.n_seeds):
        seed = config.seed + 1000 * k
        train, val = splits["pooled"]
        pooled = build_cnn(n_features, seed=seed, dropout=config.dropout)
        history["pooled"].append(_fit(pooled, scaled(train), train.y, scaled(val), val.y, epochs=config.epochs,
                                      lr=config.learning_rate, config=config, seed=seed))
        members["pooled"].append(pooled)
        for offset, gender in enumerate(("male", "female"), start=1):
            train, val = splits[gender]
            if config.pretrain:
                net = keras.models.clone_model(pooled)
                net.set_weights(pooled.get_weights())
                epochs, lr = config.finetune_epochs, config.finetune_learning_rate
            else:
                net = build_cnn(n_features, seed=seed + offset, dropout=config.dropout)
                epochs, lr = config.epochs, config.learning_rate
            history[gender].append(_fit(net, scaled(train), train.y, scaled(val), val.y, epochs=epochs, lr=lr,
                                        config=config, seed=seed + offset))
            members[gender].append(net)
        if verbose:
            summary = ", ".join(
                f"{name} val acc {h[-1]['val_accuracy'][h[-1]['best_epoch'] - 1]:.3f} (epoch {h[-1]['best_epoch']})"
                for name, h in history.items()
            )
            print(f"member {k}: {summary}", flush=True)
    models = {}
    for name, nets in members.items():
        train, val = splits[name]
        emotion_config = EmotionModelConfig(
            name=name,
            labels=EMOTION_LABELS,
            feature_config=DEFAULT_FEATURE_CONFIG,
            audio_config=DEFAULT_AUDIO_CONFIG,
            sample_rate=DEFAULT_AUDIO_CONFIG.sample_rate,
            n_features=len(feature_names(DEFAULT_FEATURE_CONFIG)),
            versions=library_versions(),
            training={
                **config.to_dict(),
                "gender": name,
                "n_train_rows": int(train.X.shape[0]),
                "n_val_rows": int(val.X.shape[0]),
                "train_speakers": sorted({u.speaker for u in train.utterances}),
                "val_speakers": sorted({u.speaker for u in val.utterances}),
            },
        )
        models[name] = EmotionModel(_ensemble(nets, n_features, dropout=config.dropout), scaler, emotion_config)
    return models, history


def _ensemble(members: list, n_features: int, *, dropout: float):
    """One Keras model whose output is the mean of the members' softmax outputs.

    Each member is rebuilt under a unique name (``member_0``...) and given the
    trained weights, so the saved ensemble is a plain functional model.
    """
    import keras

    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=(n_features,), name="features")
    outputs = []
    for i, member in enumerate(members):
        twin = build_cnn(n_features, dropout=dropout, name=f"member_{i}")
        twin.set_weights(member.get_weights())
        outputs.append(twin(inputs))
    return keras.Model(inputs, keras.layers.Average(name="emotion")(outputs), name="emotion_cnn_ensemble")


def save_history(history: dict, path: Path) -> None:
    path.write_text(json.dumps(history) + "\n", encoding="utf-8")
