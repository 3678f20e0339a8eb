"""pipeline.train_emotion's fitting step on tiny synthetic data (no audio, no shared corpus)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.emotion import EMOTION_LABELS, build_cnn, configure_tensorflow
from pipeline.train_emotion import TrainConfig, _class_weights, _fit


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(EMOTION_LABELS), n)
    X = rng.normal(0, 1, (n, 32)).astype(np.float32)
    X[np.arange(n), y] += 3.0  # class k raises feature k
    return X, y


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_fit_keeps_the_monitored_best_epoch(monitor):
    configure_tensorflow(1)
    X, y = _data(400, 0)
    X_val, y_val = _data(120, 1)
    config = TrainConfig(monitor=monitor, patience=2, batch_size=32)
    h = _fit(build_cnn(32, seed=0, dropout=0.1), X, y, X_val, y_val, epochs=12, lr=3e-3, config=config, seed=0)
    curve = np.asarray(h[monitor])
    best = int(np.argmin(curve) if monitor == "val_loss" else np.argmax(curve)) + 1
    assert h["best_epoch"] == best
    assert max(h["val_accuracy"]) > 0.5  # learnable: 8 classes, chance 0.125


def test_fit_rejects_an_unknown_monitor():
    X, y = _data(40, 0)
    with pytest.raises(ValueError, match="monitor"):
        _fit(build_cnn(32, seed=0, dropout=0.1), X, y, X, y, epochs=1, lr=1e-3,
             config=TrainConfig(monitor="accuracy"), seed=0)


def test_class_weights_balance_present_classes_only():
    y = np.array([0] * 6 + [1] * 2)
    w = _class_weights(y)
    assert w[0] * 6 == pytest.approx(w[1] * 2) and w[2] == 0.0
    assert sum(w[k] * c for k, c in ((0, 6), (1, 2))) == pytest.approx(len(y))
