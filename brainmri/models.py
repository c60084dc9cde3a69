"""One backbone registry, the study's classification head, and the custom Keras objects a saved model holds
(CaffePreprocess, MacroMetric: registered by importing this module).

Every model takes raw 0-255 RGB pixels and does its own preprocessing inside: Keras' EfficientNets
normalise internally (feeding them 0-1 input silently ruins accuracy), VGG16 gets its caffe-style
mean subtraction as a layer, the small CNN rescales. So the data pipeline never rescales.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import keras
import numpy as np
from keras import layers, ops

from .config import check_unfreeze
from .errors import UserError

IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="brainmri")
class CaffePreprocess(layers.Layer):
    """keras.applications.vgg16.preprocess_input as a layer: RGB->BGR, subtract the ImageNet means."""

    def call(self, x):
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=x.dtype)


@keras.saving.register_keras_serializable(package="brainmri")
class MacroMetric(keras.metrics.Metric):
    """Macro-averaged precision, recall or F1 over classes, from a running confusion matrix.

    The study monitored "average" precision and recall; Keras' own Precision/Recall are binary,
    so a 4-class model needs this. Classes absent from both labels and predictions are left out.
    """

    def __init__(self, num_classes: int, kind: str = "f1", name: str | None = None, **kwargs):
        super().__init__(name=name or kind, **kwargs)
        self.num_classes, self.kind = num_classes, kind
        self.matrix = self.add_variable(shape=(num_classes, num_classes), initializer="zeros", name="matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        n = self.num_classes
        true, pred = ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)
        rows = ops.one_hot(true, n)
        if sample_weight is not None:  # weighted counts, as Keras' accuracy weighs (under weighted_metrics=)
            rows = rows * ops.reshape(ops.cast(sample_weight, rows.dtype), (-1, 1))
        counts = ops.matmul(ops.transpose(rows), ops.one_hot(pred, n))
        self.matrix.assign(self.matrix + ops.cast(counts, self.dtype))

    def result(self):
        m = self.matrix
        tp = ops.diagonal(m)
        precision = ops.divide_no_nan(tp, ops.sum(m, axis=0))
        recall = ops.divide_no_nan(tp, ops.sum(m, axis=1))
        per_class = {"precision": precision, "recall": recall,
                     "f1": ops.divide_no_nan(2 * precision * recall, precision + recall)}[self.kind]
        present = ops.cast((ops.sum(m, axis=0) + ops.sum(m, axis=1)) > 0, self.dtype)
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def reset_state(self):
        self.matrix.assign(ops.zeros(self.matrix.shape, dtype=self.dtype))  # zeros_like(Variable) fails on JAX

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "kind": self.kind}


def macro_metrics(num_classes: int) -> list:
    """What a multiclass model logs per epoch: accuracy and macro precision, recall and F1."""
    return ["accuracy"] + [MacroMetric(num_classes, k) for k in ("precision", "recall", "f1")]


def _small_cnn(input_shape, weights):
    """A compact CNN for CPU demos and tests: four conv blocks, about 0.1M parameters."""
    if weights not in (None,):
        raise UserError("backbone 'small_cnn' has no pretrained weights: set weights: none")
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    for i, filters in enumerate((16, 32, 64, 96)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # short runs: stats must settle fast
        x = layers.ReLU(name=f"relu{i}")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.Model(inputs, x, name="small_cnn")


@contextmanager
def _download_replaced_by(factory: Callable, path: str):
    """While `factory` builds, its keras.applications module 'downloads' the ImageNet weights from `path`."""
    file_utils = getattr(sys.modules[factory.__module__], "file_utils", None)
    if not hasattr(file_utils, "get_file"):  # a Keras that loads its weights differently: refuse, never guess
        raise UserError(f"this Keras cannot load a local ImageNet file into {factory.__name__}: use weights=imagenet")
    with mock.patch.object(file_utils, "get_file", lambda *args, **kwargs: path):
        yield


def _keras_application(factory: Callable) -> Callable:
    """A keras.applications backbone without its top. A weights file takes the `imagenet` route, with the file
    in place of the download: Keras builds some graphs only for weights == "imagenet" (EfficientNet B0-B7 add
    a Rescaling by 1/sqrt(ImageNet std) after their Normalization), and the route for a file path leaves that
    out, so ImageNet weights would load without error and see every input about 2.1x too small."""
    def build(input_shape, weights):
        if weights is None or weights == "imagenet":
            return factory(include_top=False, weights=weights, input_shape=input_shape)
        with _download_replaced_by(factory, weights):
            return factory(include_top=False, weights="imagenet", input_shape=input_shape)
    return build


def _vgg16(input_shape, weights):
    inputs = keras.Input(input_shape)
    base = _keras_application(keras.applications.VGG16)(input_shape, weights)
    return keras.Model(inputs, base(CaffePreprocess(name="vgg_preprocess")(inputs)), name="vgg16_preprocessed")


@dataclass(frozen=True)
class Backbone:
    build: Callable  # (input_shape, weights) -> keras.Model with a 4D feature-map output
    pretrained: bool  # whether weights: imagenet makes sense


# Adding a backbone is one entry: a builder taking raw 0-255 input (EfficientNet and EfficientNetV2 rescale
# inside; others need their preprocessing as a layer, as VGG16 has) and whether ImageNet weights exist.
BACKBONES = {
    "efficientnetb0": Backbone(_keras_application(keras.applications.EfficientNetB0), True),
    "efficientnetb2": Backbone(_keras_application(keras.applications.EfficientNetB2), True),
    "efficientnetv2b0": Backbone(_keras_application(keras.applications.EfficientNetV2B0), True),
    "vgg16": Backbone(_vgg16, True),
    "small_cnn": Backbone(_small_cnn, False),
}
HEAD_LAYERS = ("gap", "head_dropout", "predictions")


def resolve_weights(weights: str):
    """'imagenet' | 'none' | a path -> what keras.applications takes; a missing file is an error."""
    if weights.lower() in ("none", "null", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights} (config key 'weights' takes imagenet, none or a file)")
    return str(weights)


def check_backbone(name: str, weights: str):
    """Fail fast on an unknown backbone or a missing weights file; return the resolved weights."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})")
    return resolve_weights(weights)


def build_backbone(name: str, image_size: int, weights: str) -> keras.Model:
    """The registered backbone, with a one-line error for unknown names and unreachable weights."""
    resolved = check_backbone(name, weights)
    try:
        return BACKBONES[name].build((image_size, image_size, 3), resolved)
    except UserError:
        raise
    except Exception as err:  # download failures surface as Exception/URLError/OSError from keras
        if resolved == "imagenet":
            raise UserError(f"could not download ImageNet weights for {name} ({str(err).splitlines()[0][:120]}); "
                            "offline, pass a local file with weights=/path/to/notop.h5, or weights=none") from None
        raise UserError(f"could not load weights {weights!r} into {name}: {str(err).splitlines()[0][:160]}") from None


def build_classifier(name: str, image_size: int, num_classes: int, weights: str = "imagenet",
                     dropout: float = 0.5, train_backbone: bool = True, unfreeze: str = "all",
                     binary: bool = False) -> keras.Model:
    """The study's model: backbone (no top) -> GlobalAveragePooling2D -> Dropout -> Dense softmax
    (or one sigmoid unit, `binary`, for tumor vs no tumor)."""
    backbone = build_backbone(name, image_size, weights)
    x = layers.GlobalAveragePooling2D(name="gap")(backbone.output)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1 if binary else num_classes, activation="sigmoid" if binary else "softmax",
                           dtype="float32", name="predictions")(x)
    model = keras.Model(backbone.input, outputs, name=f"{name}_classifier")
    set_trainable(model, train_backbone, unfreeze)
    return model


def _body_layers(model: keras.Model) -> list:
    """The backbone's layers in order (nested models opened), without the head."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _body_layers(layer)
        elif layer.name not in HEAD_LAYERS and type(layer).__name__ != "InputLayer":
            out.append(layer)
    return out


def set_trainable(model: keras.Model, train_backbone: bool, unfreeze: str = "all", freeze_bn: bool | None = None) -> None:
    """Which backbone layers train: none (train_backbone false: the head alone), all (the study), the top N
    layers ("top:N") or every layer from a named one on ("from:block5_conv1"). With a partial unfreeze,
    or when fine-tuning, BatchNormalization stays frozen, as Keras' fine-tuning guide advises."""
    check_unfreeze(unfreeze)
    freeze_bn = unfreeze != "all" if freeze_bn is None else freeze_bn
    model.trainable = True
    body = _body_layers(model)
    kind, _, arg = unfreeze.partition(":")
    if not train_backbone:
        start = len(body)
    elif kind == "top":
        start = max(0, len(body) - int(arg))
    elif kind == "from":
        names = [layer.name for layer in body]
        if arg not in names:
            raise UserError(f"unfreeze: layer '{arg}' is not in the backbone (its last layers: {', '.join(names[-6:])})")
        start = names.index(arg)
    else:
        start = 0
    for i, layer in enumerate(body):
        layer.trainable = i >= start and not (freeze_bn and isinstance(layer, layers.BatchNormalization))


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """(N, C) probabilities; one sigmoid output p becomes the two columns [1 - p, p] (negative, positive)."""
    outputs = np.asarray(outputs, np.float64)
    return np.concatenate([1 - outputs, outputs], axis=1) if outputs.shape[1] == 1 else outputs


def output_classes(model: keras.Model) -> int:
    """How many classes a model tells apart (a single sigmoid unit: two)."""
    return max(2, model.output_shape[-1])


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.SGD(learning_rate, momentum=momentum)


def count_params(model: keras.Model) -> dict:
    trainable = sum(int(ops.size(w)) for w in model.trainable_weights)
    total = sum(int(ops.size(w)) for w in model.weights)
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def load_model(path, compile: bool = True) -> keras.Model:
    """Load a saved .keras model; our custom layer and metric (above) are registered by importing this module."""
    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"could not load model {path}: {str(err).splitlines()[0][:160]}") from None
