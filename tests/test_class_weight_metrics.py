"""class_weight: balanced weights the training loss only; accuracy and the macro metrics stay plain."""

import keras
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from brainmri import training
from brainmri.config import load_config
from brainmri.models import MacroMetric


def test_macro_metric_weighs_samples_like_scikit_learn():
    """Given sample weights (weighted_metrics=), the confusion matrix counts them, as Keras' accuracy does."""
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    weights = rng.uniform(0.1, 3.0, 60)
    expected = precision_recall_fscore_support(true, pred, average="macro", zero_division=0, sample_weight=weights)
    for kind, value in zip(("precision", "recall", "f1"), expected[:3]):
        metric = MacroMetric(4, kind)
        metric.update_state(np.eye(4)[true], np.eye(4)[pred], sample_weight=weights)
        assert float(metric.result()) == pytest.approx(value, abs=1e-5), kind


def test_logged_metrics_are_plain_under_balanced_class_weights():
    """A frozen model (learning rate 0) on an imbalanced set: what fit logs is what the predictions give."""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2, 3], [40, 8, 8, 4])
    x = rng.normal(size=(len(labels), 6)).astype("float32") + labels[:, None]
    y = np.eye(4, dtype="float32")[labels]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    cfg = load_config(None, ["class_weight=balanced", "weights=none", "backbone=small_cnn"])
    training._compile(model, cfg, 0.0, 4, False)
    weights = training.class_weights(labels, 4)
    hist = model.fit(x, y, batch_size=len(labels), epochs=1, class_weight=weights, validation_data=(x, y),
                     shuffle=False, verbose=0).history
    pred = model.predict(x, verbose=0).argmax(1)
    plain = accuracy_score(labels, pred)
    weighted = accuracy_score(labels, pred, sample_weight=[weights[c] for c in labels])
    assert abs(plain - weighted) > 0.01  # the set is imbalanced enough to tell the two apart
    p, r, f, _ = precision_recall_fscore_support(labels, pred, average="macro", zero_division=0)
    for prefix in ("", "val_"):
        assert hist[f"{prefix}accuracy"][0] == pytest.approx(plain, abs=1e-6)
        assert [hist[f"{prefix}{k}"][0] for k in ("precision", "recall", "f1")] == pytest.approx([p, r, f], abs=1e-5)
