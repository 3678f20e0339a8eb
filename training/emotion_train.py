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
from types import MappingProxyType
from typing import Sequence

import numpy as np

from pipeline.audio import DEFAULT_AUDIO_CONFIG
from training.augment import Augmentation
from training.config import recipe_dataclass
from training.corpus import Utterance, read_manifest
from training.dataset import FeatureTable, build_table
from pipeline.emotion import (
    EMOTION_LABELS,
    EncoderInput,
    EmotionModel,
    EmotionModelConfig,
    build_cnn,
    configure_tensorflow,
    library_versions,
    model_inputs,
)
from pipeline.features import DEFAULT_FEATURE_CONFIG, feature_names
from pipeline.whisper_encoder import weights_sha256


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
    encoder_layers: tuple[int, ...]
    encoder_pooling: str
    encoder_combine: str

    #: Keys added after models had saved their recipe: the values that repeat those (librosa-only) runs.
    ADDED_LATER = MappingProxyType({"encoder_layers": (), "encoder_pooling": "mean_std", "encoder_combine": "concat"})

    @property
    def encoder(self) -> EncoderInput | None:
        """The encoder input of the models this recipe trains (``None``: librosa statistics only)."""
        if not self.encoder_layers:
            return None
        return EncoderInput(layers=tuple(self.encoder_layers), pooling=self.encoder_pooling,
                            combine=self.encoder_combine, weights_sha256=weights_sha256())

    def to_dict(self) -> dict:
        """JSON-ready fields (augmentations as tags), as ``config.json`` records them."""
        data = asdict(self)
        data["augmentations"] = [a.tag for a in self.augmentations]
        return data


#: The emotional corpora of the shipped recipe.
EMOTION_CORPORA = TrainConfig().corpora


@dataclass
class Split:
    """Input rows and labels of one split: ``X [n, n_features]`` (``[n, n_features + ENCODER_COLUMNS]``
    when the recipe reads the encoder: :meth:`pipeline.emotion.EmotionModel.predict_proba`'s rows),
    ``y [n]`` class indices."""

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
    with_encoder = config.encoder is not None

    def table(part: Sequence[Utterance], augmentation: Augmentation | None = None) -> FeatureTable:
        librosa = build_table(part, augmentation=augmentation, jobs=jobs)
        if not with_encoder:
            return librosa
        from training.encoder_table import build_encoder_table

        states = build_encoder_table(part, augmentation=augmentation, jobs=jobs)
        return FeatureTable(X=np.concatenate([librosa.X, states.E.reshape(len(states.E), -1)], axis=1),
                            utterances=librosa.utterances, ok=librosa.ok & states.ok)

    def keep(u: Utterance) -> bool:
        return u.split in splits and u.gender in genders and u.corpus in config.corpora

    clean = _select(table(rows), keep)
    copies = []
    for augmentation in config.augmentations:
        parts = [_select(table([u for u in rows if u.split == split], augmentation), keep) for split in splits]
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
    encoder = config.encoder
    n_features = len(feature_names(DEFAULT_FEATURE_CONFIG))
    pooled_rows = splits["pooled"][0].X
    scaler = StandardScaler().fit(pooled_rows[:, :n_features])
    encoder_scaler = None
    if encoder is not None:
        encoder_scaler = StandardScaler().fit(pooled_rows[:, n_features:][:, encoder.columns()])
    config_stub = EmotionModelConfig(name="", labels=EMOTION_LABELS, feature_config=DEFAULT_FEATURE_CONFIG,
                                     audio_config=DEFAULT_AUDIO_CONFIG, sample_rate=DEFAULT_AUDIO_CONFIG.sample_rate,
                                     n_features=n_features, encoder=encoder)

    def scaled(split: Split | None):
        return None if split is None else model_inputs(config_stub, scaler, encoder_scaler, split.X)

    def fit(net, name: str, *, epochs: int, lr: float, seed: int) -> dict:
        train, val = splits[name]
        return _fit(net, scaled(train), train.y, scaled(val), None if val is None else val.y,
                    epochs=epochs, lr=lr, config=config, seed=seed)

    members: dict[str, list] = {name: [] for name in splits}
    history: dict[str, list] = {name: [] for name in splits}
    for k in range(config.n_seeds):
        seed = config.seed + 1000 * k
        pooled = build_cnn(n_features, seed=seed, dropout=config.dropout, encoder=encoder)
        history["pooled"].append(fit(pooled, "pooled", epochs=config.epochs, lr=config.learning_rate, seed=seed))
        members["pooled"].append(pooled)
        for offset, gender in enumerate(("male", "female"), start=1):
            if config.pretrain:
                net = keras.models.clone_model(pooled)
                net.set_weights(pooled.get_weights())
                epochs, lr = config.finetune_epochs, config.finetune_learning_rate
            else:
                net = build_cnn(n_features, seed=seed + offset, dropout=config.dropout, encoder=encoder)
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
            n_features=n_features,
            versions=library_versions(),
            training={
                **config.to_dict(),
                "gender": name,
                "n_train_rows": int(train.X.shape[0]),
                "n_val_rows": 0 if val is None else int(val.X.shape[0]),
                "train_speakers": sorted({u.speaker for u in train.utterances}),
                "val_speakers": [] if val is None else sorted({u.speaker for u in val.utterances}),
            },
            encoder=encoder,
        )
        models[name] = EmotionModel(_ensemble(nets, n_features, dropout=config.dropout, encoder=encoder), scaler,
                                    emotion_config, encoder_scaler=encoder_scaler)
    return models, history


def _family_share(args: tuple) -> tuple[dict, dict, dict]:
    """Worker: train members ``first .. first + count - 1`` of ``config``'s ensemble; weights as plain lists."""
    config, first, count, threads, jobs = args
    configure_tensorflow(threads)
    share = replace(config, seed=config.seed + 1000 * first, n_seeds=count)
    models, history = train_family(share, jobs=jobs, verbose=True)
    nets = {name: [member.get_weights() for member in _members(m.model)] for name, m in models.items()}
    return nets, {name: m.config.to_dict() for name, m in models.items()}, history


def _members(model) -> list:
    """The member networks of an ensemble built by :func:`_ensemble` (the model itself when it has one)."""
    inner = [layer for layer in model.layers if layer.name.startswith("member_")]
    return inner or [model]


def train_family_parallel(config: TrainConfig, *, processes: int, jobs: int | None = None
                          ) -> tuple[dict[str, EmotionModel], dict]:
    """:func:`train_family` with the ensemble's members split over ``processes`` worker processes.

    Member ``k`` is trained with seed ``config.seed + 1000 k`` whichever process trains it, and
    every process fits the same scaler(s) on the same rows: the ensemble one process would build,
    within run-to-run variation (a one-epoch check of three members: probabilities within 0.04
    of a single-process run), in about ``1 / processes`` of the time when the cores are free.
    Each process uses one TensorFlow thread.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    processes = max(1, min(processes, config.n_seeds))
    counts = [config.n_seeds // processes + (1 if i < config.n_seeds % processes else 0) for i in range(processes)]
    starts = [sum(counts[:i]) for i in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        shares = list(pool.map(_family_share, [(config, s, c, 1, jobs) for s, c in zip(starts, counts)]))
    configure_tensorflow()
    train, val = load_splits(config, ("male", "female"), jobs=jobs)  # the scalers, as every share fitted them
    n_features = len(feature_names(DEFAULT_FEATURE_CONFIG))
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.X[:, :n_features])
    encoder = config.encoder
    encoder_scaler = None if encoder is None else StandardScaler().fit(train.X[:, n_features:][:, encoder.columns()])
    models, history = {}, {}
    for name in shares[0][0]:
        nets = []
        for weights in (w for share in shares for w in share[0][name]):
            net = build_cnn(n_features, dropout=config.dropout, encoder=encoder)
            net.set_weights(weights)
            nets.append(net)
        emotion_config = EmotionModelConfig.from_dict(shares[0][1][name])
        emotion_config = replace(emotion_config, training={**emotion_config.training, "n_seeds": config.n_seeds,
                                                           "seed": config.seed})
        models[name] = EmotionModel(_ensemble(nets, n_features, dropout=config.dropout, encoder=encoder), scaler,
                                    emotion_config, encoder_scaler=encoder_scaler)
        history[name] = [h for share in shares for h in share[2][name]]
    return models, history


def _kept(h: dict) -> str:
    """One member's curves summarised at the epoch it kept (for progress lines)."""
    if not h["best_epoch"]:
        return "not fine-tuned"
    if "val_accuracy" in h:
        return f"val acc {h['val_accuracy'][h['best_epoch'] - 1]:.3f} (epoch {h['best_epoch']})"
    return f"train acc {h['accuracy'][h['best_epoch'] - 1]:.3f} (epoch {h['best_epoch']})"


def _ensemble(members: list, n_features: int, *, dropout: float, encoder: EncoderInput | None = None):
    """One Keras model whose output is the mean of the members' softmax outputs.

    Each member is rebuilt under a unique name (``member_0``...) and given the
    trained weights, so the saved ensemble is a plain functional model.
    """
    import keras

    if len(members) == 1:
        return members[0]
    inputs = []
    if encoder is None or encoder.combine != "encoder_only":
        inputs.append(keras.Input(shape=(n_features,), name="features"))
    if encoder is not None:
        inputs.append(keras.Input(shape=(encoder.dim,), name="encoder"))
    inputs = inputs[0] if len(inputs) == 1 else inputs
    outputs = []
    for i, member in enumerate(members):
        twin = build_cnn(n_features, dropout=dropout, name=f"member_{i}", encoder=encoder)
        twin.set_weights(member.get_weights())
        outputs.append(twin(inputs))
    return keras.Model(inputs, keras.layers.Average(name="emotion")(outputs), name="emotion_cnn_ensemble")


def save_history(history: dict, path: Path) -> None:
    path.write_text(json.dumps(history) + "\n", encoding="utf-8")
