"""Arrays -> Keras input: uint8 images (brainmri.data) into float32 training and validation batches for the
backend Keras runs on, and the augmentation layers applied to them. TensorFlow gets tf.data; JAX and PyTorch
(a GPU box without TensorFlow) a keras.utils.PyDataset over the same uint8 array, prefetched by threads."""

from __future__ import annotations

import os
import threading

import keras
import numpy as np

WORKERS = min(4, os.cpu_count() or 1)  # threads preparing batches ahead (numpy gathers and casts release the GIL)
QUEUE = 8  # batches prepared ahead: enough to ride out a slow one, 8 x 8.6 MB at EfficientNet's 150 px


def training_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot rows, or one 0/1 column for a single sigmoid output (num_classes 1)."""
    if num_classes == 1:
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_tf_dataset(images: np.ndarray, labels: np.ndarray | None, num_classes: int, batch_size: int,
                    shuffle: bool = False, seed: int = 0, augment=None, first_epoch: int | None = None):
    """uint8 images -> float32 batches (one-hot labels), shuffled per epoch if asked, augmented per batch by
    the `augment` layers if given (training batches only), prefetched. With shuffle and `first_epoch`: an
    endless stream of epochs from that one on (fit needs steps_per_epoch), each epoch's order set by (seed,
    epoch) alone, so a resumed run gets the batches an uninterrupted one would."""
    import tensorflow as tf

    if labels is not None:
        targets = tf.convert_to_tensor(training_targets(labels, num_classes))
    pixels = tf.convert_to_tensor(images)  # uint8, held once; each batch is gathered from it by index
    n = len(images)
    if shuffle and first_epoch is not None:
        def epoch(e):
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                              seed=tf.stack([tf.constant(seed, tf.int64), e]))
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
    else:
        ds = tf.data.Dataset.range(n)  # shuffling indices, not images: no per-image copies
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)

    def gather(idx):
        x = tf.cast(tf.gather(pixels, idx), tf.float32)
        return x if labels is None else (x, tf.gather(targets, idx))

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_batches(images: np.ndarray, labels: np.ndarray | None, num_classes: int, batch_size: int,
                 shuffle: bool = False, seed: int = 0, augment=None, first_epoch: int | None = None,
                 multiple: int = 1):
    """The training/validation input for the backend Keras runs on: tf.data with TensorFlow, otherwise (JAX,
    PyTorch) an ArrayBatches over the same uint8 array. `first_epoch`: see make_tf_dataset (the tf.data stream
    is then endless: pass steps_per_epoch to fit). `multiple`: see ArrayBatches (JAX data parallelism)."""
    if keras.backend.backend() == "tensorflow":
        return make_tf_dataset(images, labels, num_classes, batch_size, shuffle, seed, augment, first_epoch)
    return ArrayBatches(images, labels, num_classes, batch_size, shuffle, seed, augment, first_epoch, multiple)


class ArrayBatches(keras.utils.PyDataset):
    """uint8 images -> float32 batches (one-hot, or one 0/1 column when num_classes is 1), reshuffled every
    epoch when asked, augmented by `augment` layers if given, prepared ahead by WORKERS threads. With
    `first_epoch`, epoch e's order is set by (seed, e) alone, so a resumed run gets the batches an
    uninterrupted one would. `multiple` > 1 (data parallel over that many devices): a short last batch is
    filled up to a multiple of it with the epoch's first images, since every device needs an equal share."""

    def __init__(self, images, labels, num_classes, batch_size, shuffle=False, seed=0, augment=None,
                 first_epoch=None, multiple=1, workers=WORKERS):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=QUEUE)
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        if labels is not None:
            self.targets = training_targets(labels, num_classes)
        self.seed, self.epoch, self.multiple = seed, first_epoch, multiple
        self.rng, self.shuffle = np.random.default_rng(seed if first_epoch is None else [seed, first_epoch]), shuffle
        self.order = self.rng.permutation(len(images)) if shuffle else np.arange(len(images))
        self.augment_lock = threading.Lock()  # the layers' seed generators are not thread-safe

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        missing = -len(idx) % self.multiple  # images short of the next multiple
        idx = np.sort(np.concatenate([idx, self.order[:missing]]) if missing else idx)
        x = self.images[idx].astype(np.float32)
        if self.augment is not None:
            with self.augment_lock:
                x = keras.ops.convert_to_numpy(self.augment(x, training=True))
        return x if self.labels is None else (x, self.targets[idx])

    def on_epoch_end(self):
        if self.epoch is not None:
            self.epoch += 1
            self.rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            self.order = self.rng.permutation(len(self.images))


def augmentation_layers(rotation: float = 0, shift: float = 0, zoom: float = 0, flip: str = "none",
                        contrast: float = 0, seed: int = 0):
    """Keras preprocessing layers for on-the-fly augmentation (None when all are off). Rotation in degrees,
    shift and zoom as fractions of the side; empty space is filled black, like the MRI background."""
    steps = []
    if flip != "none":
        steps.append(keras.layers.RandomFlip("horizontal_and_vertical" if flip == "both" else flip, seed=seed))
    if rotation:
        steps.append(keras.layers.RandomRotation(rotation / 360.0, fill_mode="constant", seed=seed + 1))
    if shift:
        steps.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 2))
    if zoom:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 3))
    if contrast:
        steps.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 4))
    return keras.Sequential(steps, name="augmentation") if steps else None
