"""Train the gender-specific (and the pooled comparison) emotion CNNs.

Recipe (each choice measured by ``python -m studies.experiments``):

* training rows: the ``train`` and ``val`` splits of every emotional corpus
  (RAVDESS, SAVEE, ASED, EMOVO) for the model's gender; ``test`` speakers are
  never seen;
* a fixed training length (pre-training and fine-tuning epochs), chosen by
  cross-validation over the ``train`` + ``val`` speakers
  (``python -m studies.recipe_cv``), instead of early stopping on the small
  ``val`` split (still available: ``early_stopping``, ``fit_splits=("train",)``);
* augmentation: each training clip also enters as speed-perturbed copies (x0.9,
  x1.1) and with pink noise at 15 dB SNR (:mod:`training.augment`);
* class weights balance the eight emotions (SAVEE/EMOVO have no ``calm``, ASED
  only five classes);
* ``pretrain``: the network is first trained on both genders (that network is
  the pooled comparison model), then fine-tuned on each gender (female
  emotional speech is scarce);
* an ensemble of ``n_seeds`` networks, averaged inside one Keras model.

Every value of the recipe is in ``training/recipes/emotion.yaml`` (:class:`TrainConfig`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.audio import DEFAULT_AUDIO_CONFIG
from training.augment import Augmentation
from training.config import recipe_dataclass
from training.corpus import Utterance, read_manifest
from training.dataset import FeatureTable, build_table
from pipeline.emotion import (
    EMOTION_LABELS,
    EmotionModel,
    EmotionModelConfig,
    build_cnn,
    configure_tensorflow,
    library_versions,
)
from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names


@recipe_dataclass("emotion")
class TrainConfig:
    """Hyper-parameters of one emotion model (saved in its ``config.json``).

    The defaults are ``training/recipes/emotion.yaml``, where each field is
    documented: ``TrainConfig()`` is the shipped recipe, ``TrainConfig(epochs=3)``
    or ``load_recipe("emotion", {"epochs": 3})`` a variant. Epoch counts are exact
    (chosen by ``python -m studies.recipe_cv``), upper bounds when ``early_stopping``.
    """

    corpora: tuple[str, ...]
    augmentations: tuple[Augmentation, ...]
    pretrain: bool
    n_seeds: int
    seed: int
    epochs: int
    finetune_epochs: int
    batch_size: int
    learning_rate: float
    finetune_learning_rate: float
    patience: int
    monitor: str
    early_stopping: bool
    fit_splits: tuple[str, ...]
    dropout: float
    label_smoothing: float

    def to_dict(self) -> dict:
        """JSON-ready fields (augmentations as tags), as ``config.json`` records them."""
        data = asdict(self)
        data["augmentations"] = [a.tag for a in self.augmentations]
        return data


#: The emotional corpora of the shipped recipe.
EMOTION_CORPORA = TrainConfig().corpora


@dataclass
class Split:
    """Features and labels of one split: ``X [n, n_features]``, ``y [n]`` class indices."""

    X: np.ndarray
    y: np.ndarray
    utterances: list[Utterance] = field(default_factory=list)

    def subset(self, mask: np.ndarray) -> "Split":
        """The rows where the boolean ``mask [n]`` is true, in order."""
        return Split(X=self.X[mask], y=self.y[mask], utterances=[u for u, m in zip(self.utterances, mask) if m])

    def of_gender(self, gender: str) -> "Split":
        """The rows spoken by ``gender`` voices, in order."""
        return self.subset(np.array([u.gender == gender for u in self.utterances], dtype=bool))


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


def training_rows(config: TrainConfig, genders: tuple[str, ...], splits: tuple[str, ...], *,
                  jobs: int | None = None) -> tuple[Split, list[Split]]:
    """Clean rows of ``splits`` for ``genders`` and, aligned with them, one augmented copy per augmentation.

    Returns ``(clean, [augmented, ...])``; ``augmented[k].utterances == clean.utterances``
    (rows whose augmented copy could not be featurised are dropped from that copy only).
    Augmented tables are built per split, so the cached ``train`` tables serve
    every recipe.
    """
    rows = emotion_rows()
    clean_table = build_table(rows, jobs=jobs)

    def keep(u: Utterance) -> bool:
        return u.split in splits and u.gender in genders and u.corpus in config.corpora

    clean = _select(clean_table, keep)
    copies = []
    for augmentation in config.augmentations:
        parts = [_select(build_table([u for u in rows if u.split == split], augmentation=augmentation, jobs=jobs),
                         keep) for split in splits]
        copies.append(concatenate(parts))
    return clean, copies


def concatenate(parts: Sequence[Split]) -> Split:
    """Rows of ``parts`` one after the other."""
    return Split(X=np.concatenate([p.X for p in parts]), y=np.concatenate([p.y for p in parts]),
                 utterances=[u for p in parts for u in p.utterances])


def load_splits(config: TrainConfig, genders: tuple[str, ...], *, jobs: int | None = None) -> tuple[Split, Split | None]:
    """Fitting rows (clean + augmented copies of ``config.fit_splits``) and the ``val`` rows for ``genders``.

    The second item is ``None`` when ``val`` is itself fitted on.
    """
    clean, copies = training_rows(config, genders, config.fit_splits, jobs=jobs)
    val = None
    if "val" not in config.fit_splits:
        val, _ = training_rows(replace(config, augmentations=()), genders, ("val",), jobs=jobs)
    return concatenate([clean, *copies]), val


def _class_weights(y: np.ndarray) -> dict[int, float]:
    counts = np.bincount(y, minlength=len(EMOTION_LABELS)).astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


def _fit(model, X, y, X_val=None, y_val=None, *, epochs: int, lr: float, config: TrainConfig, seed: int,
         callbacks: Sequence = ()) -> dict:
    """Fit ``model`` on standardised ``X [n, n_features]`` / class indices ``y [n]``.

    With ``config.early_stopping`` training stops once ``config.monitor`` on
    ``(X_val, y_val)`` has not improved for ``config.patience`` epochs and the
    best weights are restored; otherwise exactly ``epochs`` epochs run (the
    validation rows, if given, are only recorded). Returns the per-epoch curves
    plus ``best_epoch`` (the epoch whose weights the model ends with).
    """
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
    validation = None if X_val is None else (X_val, keras.utils.to_categorical(y_val, n))
    callbacks = list(callbacks)
    if config.early_stopping:
        if validation is None:
            raise ValueError("early stopping needs validation rows")
        callbacks.append(keras.callbacks.EarlyStopping(monitor=config.monitor, patience=config.patience,
                                                       restore_best_weights=True))
    history = model.fit(
        X, keras.utils.to_categorical(y, n), validation_data=validation,
        epochs=epochs, batch_size=config.batch_size, class_weight=_class_weights(y), callbacks=callbacks,
        verbose=0, shuffle=True,
    )
    h = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if config.early_stopping:
        h["best_epoch"] = int(np.argmin(h["val_loss"]) if config.monitor == "val_loss"
                              else np.argmax(h["val_accuracy"])) + 1
    else:
        h["best_epoch"] = len(h["loss"])
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

    train, val = load_splits(config, ("male", "female"), jobs=jobs)  # feature tables read once, split by gender here
    splits = {"pooled": (train, val)}
    for gender in ("male", "female"):
        splits[gender] = (train.of_gender(gender), None if val is None else val.of_gender(gender))
    scaler = StandardScaler().fit(splits["pooled"][0].X)

    def scaled(split: Split | None) -> np.ndarray | None:
        return None if split is None else scaler.transform(split.X).astype(np.float32)

    def fit(net, name: str, *, epochs: int, lr: float, seed: int) -> dict:
        train, val = splits[name]
        return _fit(net, scaled(train), train.y, scaled(val), None if val is None else val.y,
                    epochs=epochs, lr=lr, config=config, seed=seed)

    members: dict[str, list] = {name: [] for name in splits}
    history: dict[str, list] = {name: [] for name in splits}
    n_features = splits["pooled"][0].X.shape[1]
    for k in range(config.n_seeds):
        seed = config.seed + 1000 * k
        pooled = build_cnn(n_features, seed=seed, dropout=config.dropout)
        history["pooled"].append(fit(pooled, "pooled", epochs=config.epochs, lr=config.learning_rate, seed=seed))
        members["pooled"].append(pooled)
        for offset, gender in enumerate(("male", "female"), start=1):
            if config.pretrain:
                net = keras.models.clone_model(pooled)
                net.set_weights(pooled.get_weights())
                epochs, lr = config.finetune_epochs, config.finetune_learning_rate
            else:
                net = build_cnn(n_features, seed=seed + offset, dropout=config.dropout)
                epochs, lr = config.epochs, config.learning_rate
            if epochs > 0:
                history[gender].append(fit(net, gender, epochs=epochs, lr=lr, seed=seed + offset))
            else:
                history[gender].append({"loss": [], "accuracy": [], "best_epoch": 0})
            members[gender].append(net)
        if verbose:
            summary = ", ".join(f"{name} {_kept(h[-1])}" for name, h in history.items())
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
                "n_val_rows": 0 if val is None else int(val.X.shape[0]),
                "train_speakers": sorted({u.speaker for u in train.utterances}),
                "val_speakers": [] if val is None else sorted({u.speaker for u in val.utterances}),
            },
        )
        models[name] = EmotionModel(_ensemble(nets, n_features, dropout=config.dropout), scaler, emotion_config)
    return models, history


def _kept(h: dict) -> str:
    """One member's curves summarised at the epoch it kept (for progress lines)."""
    if not h["best_epoch"]:
        return "not fine-tuned"
    if "val_accuracy" in h:
        return f"val acc {h['val_accuracy'][h['best_epoch'] - 1]:.3f} (epoch {h['best_epoch']})"
    return f"train acc {h['accuracy'][h['best_epoch'] - 1]:.3f} (epoch {h['best_epoch']})"


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
