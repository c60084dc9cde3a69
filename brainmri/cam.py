"""Batched Grad-CAM and Grad-CAM++ for every model the project builds, flat or with a nested backbone.

The classifier is split at the chosen feature map into `features` (input -> feature map) and `head`
(feature map -> class logits). The features run outside the gradient tape; only the small head is
differentiated, once per batch. Since samples do not interact in inference mode, the gradient of the
summed class scores gives every image its own gradient, so one forward and one (cheap) backward pass
yield the maps of a whole batch. Written in keras.ops: the gradient and the compilation are the backend's
(brainmri.backend), so it runs on TensorFlow, JAX and PyTorch alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import keras
import numpy as np
from tqdm import tqdm

from . import backend
from .errors import UserError

POOLING = ("Pooling", "Dropout", "Flatten")


def _walk(model, prefix=""):
    """(qualified name, layer, enclosing model) for every layer, nested models included."""
    for layer in model.layers:
        yield prefix + layer.name, layer, model
        if isinstance(layer, keras.Model):
            yield from _walk(layer, prefix + layer.name + "/")


def _is_feature_map(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4 and not isinstance(layer, keras.Model) and not any(
        p in type(layer).__name__ for p in POOLING) and type(layer).__name__ != "InputLayer"


def candidate_layers(model) -> list[str]:
    """Names of the layers whose output is a spatial feature map (what --layer accepts)."""
    return [name for name, layer, _ in _walk(model) if _is_feature_map(layer)]


def find_layer(model, name: str | None):
    """The named feature-map layer (plain or 'nested/name'), or the last one; one-line error otherwise."""
    candidates = candidate_layers(model)
    if not candidates:
        raise UserError(f"model {model.name} has no layer with a spatial feature map")
    if name is None:
        name = candidates[-1]
    matches = [c for c in candidates if c == name or c.split("/")[-1] == name]
    if not matches:
        shown = ", ".join(candidates[-8:])
        raise UserError(f"layer '{name}' is not a convolutional feature-map layer of {model.name} "
                        f"(last candidates: {shown}; {len(candidates)} in all)")
    return matches[-1]


def _chain(layers) -> Callable:
    def apply(x):
        for layer in layers:
            x = layer(x, training=False)
        return x
    return apply


def _split(model: keras.Model, path: list[str]) -> tuple[Callable, Callable]:
    """(features, head) of `model` at the layer reached by `path` (nested model names, then the layer)."""
    if len(path) == 1:
        layer = model.get_layer(path[0])
        features = keras.Model(model.inputs, layer.output)
        if layer.output is model.outputs[0]:  # the map is the model's output: nothing in between
            return (lambda x: features(x, training=False)), (lambda a: a)
        head = keras.Model(layer.output, model.outputs[0])
        return (lambda x: features(x, training=False)), (lambda a: head(a, training=False))
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    inner = model.get_layer(path[0])
    if any(len(getattr(layer, "_inbound_nodes", [None])) > 1 for layer in layers):
        raise UserError(f"cannot split {model.name} at {'/'.join(path)}: a layer is shared")
    k = layers.index(inner)  # a nested backbone: the outer model must be a simple chain around it
    inner_features, inner_head = _split(inner, path[1:])
    pre, post = _chain(layers[:k]), _chain(layers[k + 1:])
    return (lambda x: inner_features(pre(x))), (lambda a: post(inner_head(a)))


@dataclass
class CamModel:
    """A classifier split for Grad-CAM: features, head up to the logits, and the layer used."""

    features: Callable
    logits: Callable
    layer: str
    binary: bool  # one sigmoid output (tumor vs no tumor)


def _squashes(layer) -> bool:
    """Whether `layer` turns logits into probabilities: a softmax/sigmoid activation or a Softmax layer."""
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, (keras.layers.Dense, keras.layers.Activation)) and activation in ("softmax", "sigmoid"))


def _final_layer(model: keras.Model):
    """The layer that makes the output, inside nested models too."""
    last = model.layers[-1]
    return _final_layer(last) if isinstance(last, keras.Model) and last.layers else last


def _up_to_logits(model: keras.Model) -> keras.Model:
    """`model` without a trailing Softmax layer (models not built here have them), so the head ends at the
    logits; softmax/sigmoid activations, fused or in an Activation layer, are switched off by _head_to_logits."""
    last, final = model.layers[-1], _final_layer(model)
    if isinstance(last, keras.layers.Softmax):
        return keras.Model(model.inputs, last.input, name=model.name)
    if isinstance(final, keras.layers.Softmax):
        raise UserError(f"cannot take the logits of {model.name}: its output is squashed by the Softmax layer "
                        f"'{final.name}' inside the nested model '{last.name}'; make that layer outermost")
    return model


def _head_to_logits(model: keras.Model, head: Callable) -> Callable:
    """Class scores before softmax/sigmoid, so saturated probabilities still give gradients (and make_cam_fn
    squashes them once)."""
    last = _final_layer(model)
    if not isinstance(last, (keras.layers.Dense, keras.layers.Activation)) or not _squashes(last):
        return head
    original = last.activation
    def logits(a):
        last.activation = keras.activations.linear
        try:
            return head(a)
        finally:
            last.activation = original
    return logits


def split_model(model: keras.Model, layer: str | None = None) -> CamModel:
    """Split `model` at `layer` (default: the last feature map)."""
    name = find_layer(model, layer)
    body = _up_to_logits(model)
    features, head = _split(body, name.split("/"))
    return CamModel(features, _head_to_logits(model, head), name, model.output_shape[-1] == 1)


METHODS = ("gradcam", "gradcam++")


def _weights(grads, acts, method: str):
    """Channel weights: mean gradient (Grad-CAM) or the Grad-CAM++ alpha-weighted positive gradient."""
    ops = keras.ops
    if method == "gradcam":
        return ops.mean(grads, axis=(1, 2))
    g2, g3 = grads ** 2, grads ** 3
    denom = 2.0 * g2 + ops.sum(acts, axis=(1, 2), keepdims=True) * g3
    alpha = ops.divide_no_nan(g2, denom)
    return ops.sum(alpha * ops.relu(grads), axis=(1, 2))


def _class_score(cam: CamModel):
    """(feature map, class indices) -> (sum of the chosen classes' logits, probabilities); class -1 means the
    predicted one. A sigmoid output counts as two classes: class 1 is its logit, class 0 the negative."""
    ops = keras.ops

    def score(acts, classes):
        logits = ops.cast(cam.logits(acts), "float32")
        if cam.binary:
            classes = ops.where(classes < 0, ops.cast(logits[:, 0] > 0, "int32"), classes)
            sign = ops.where(classes == 1, 1.0, -1.0)
            return ops.sum(logits[:, 0] * sign), ops.concatenate([ops.sigmoid(-logits), ops.sigmoid(logits)], 1)
        classes = ops.where(classes < 0, ops.cast(ops.argmax(logits, -1), "int32"), classes)
        return ops.sum(ops.take_along_axis(logits, classes[:, None], axis=1)), ops.softmax(logits)
    return score


def make_cam_fn(cam: CamModel, method: str = "gradcam"):
    """A compiled function (images, class indices) -> (maps at feature resolution in [0, 1], probabilities),
    on any backend: the features run outside the gradient, which backend.grad_with_aux takes of the head."""
    if method not in METHODS:
        raise UserError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    ops = keras.ops
    grad = backend.grad_with_aux(_class_score(cam))

    def run(images, classes):
        acts = ops.cast(cam.features(ops.cast(images, "float32")), "float32")
        grads, probs = grad(acts, ops.cast(classes, "int32"))
        maps = ops.relu(ops.einsum("bhwc,bc->bhw", acts, _weights(grads, acts, method)))
        return ops.divide_no_nan(maps, ops.max(maps, axis=(1, 2), keepdims=True)), probs

    return backend.compile_fn(run)


def compute_maps(cam_fn, images: np.ndarray, classes: np.ndarray | None, batch_size: int = 32,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Maps (N, h, w) and probabilities for uint8 images; classes None (or -1) means the predicted class."""
    maps, probs = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="grad-cam", unit="batch", disable=not progress):
        x = images[start:start + batch_size].astype(np.float32)
        c = np.full(len(x), -1, np.int32) if classes is None else np.asarray(classes[start:start + batch_size], np.int32)
        m, p = cam_fn(x, c)
        maps.append(np.asarray(m))
        probs.append(np.asarray(p))
    return np.concatenate(maps), np.concatenate(probs)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps at feature resolution -> size x size (bilinear)."""
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: int = 3) -> np.ndarray:
    """Per image: is the map's maximum within `tolerance` pixels of the lesion mask (same size as maps)?"""
    return _hits([np.unravel_index(np.argmax(m), m.shape) for m in maps], masks, tolerance)


def _hits(points, masks: np.ndarray, tolerance: int) -> np.ndarray:
    """Per image: is the point (y, x) within `tolerance` pixels of the lesion mask?"""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    near = [cv2.dilate((mask > 0).astype(np.uint8), kernel) for mask in masks]
    return np.array([bool(n[y, x]) for (y, x), n in zip(points, near)])


def _mean_of_other_groups(masks: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per image, the mean of the masks outside its group (NaN where there are none)."""
    _, inv = np.unique(groups, return_inverse=True)
    group_sums = np.zeros((inv.max() + 1, *masks.shape[1:]))
    np.add.at(group_sums, inv, masks)
    others = len(masks) - np.bincount(inv)[inv]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (group_sums.sum(0) - group_sums[inv]) / others[:, None, None]


def location_prior(masks: np.ndarray, labels, groups=None) -> np.ndarray:
    """Per image, the mean lesion mask of its class over the other groups (or images): a map that knows where
    the class's lesions sit but never sees the image it scores, nor a near-duplicate of it. A class with one
    group falls back to all other lesions."""
    lesions, labels = (masks > 0).astype(np.float64), np.asarray(labels)
    groups = np.arange(len(masks)) if groups is None else np.asarray(groups)
    prior = _mean_of_other_groups(lesions, groups)
    for c in np.unique(labels):
        sel = labels == c
        own = _mean_of_other_groups(lesions[sel], groups[sel])
        prior[sel] = np.where(np.isnan(own), prior[sel], own)
    return np.nan_to_num(prior)


def pointing_with_baselines(maps: np.ndarray, masks: np.ndarray, labels, tolerance: int, groups=None) -> dict:
    """Per-image pointing-game hits of the maps, of the class's location prior and of the image centre."""
    centre = [(masks.shape[1] // 2, masks.shape[2] // 2)] * len(masks)
    return {"maps": pointing_game(maps, masks, tolerance),
            "location_prior": pointing_game(location_prior(masks, labels, groups), masks, tolerance),
            "centre": _hits(centre, masks, tolerance)}


def energy_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: the share of the map's total energy that falls inside the lesion mask."""
    inside = (maps * (masks > 0)).sum((1, 2))
    return np.divide(inside, maps.sum((1, 2)), out=np.zeros(len(maps)), where=maps.sum((1, 2)) > 0)


def deletion_scores(forward, images: np.ndarray, maps: np.ndarray, classes: np.ndarray, steps: int = 10,
                    batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Deletion curve: the class probability as the most salient pixels are blacked out step by step.

    Returns (fractions, mean probability per fraction); its area is the score (lower: the map points at
    what the model really uses). `maps` are at image resolution.
    """
    fractions = np.linspace(0, 1, steps + 1)
    n, pixels = len(images), maps[0].size
    order = np.argsort(-maps.reshape(n, -1), axis=1)
    curve = []
    for f in fractions:
        removed = np.zeros((n, pixels), bool)
        np.put_along_axis(removed, order[:, : int(round(f * pixels))], True, axis=1)
        x = np.where(removed.reshape(maps.shape)[..., None], 0, images)
        p = np.concatenate([np.asarray(forward(x[i:i + batch_size].astype(np.float32)))
                            for i in range(0, n, batch_size)])
        curve.append(p[np.arange(n), classes].mean() if p.shape[1] > 1 else
                     np.where(classes == 1, p[:, 0], 1 - p[:, 0]).mean())
    return fractions, np.array(curve)


def area(fractions: np.ndarray, curve: np.ndarray) -> float:
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)))
