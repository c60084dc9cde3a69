"""Batches for Keras on a backend without TensorFlow (JAX or PyTorch on a GPU box): a PyDataset over the
same uint8 array that tf.data reads under TensorFlow (data.make_batches picks)."""

from __future__ import annotations

import keras
import numpy as np

from .data import training_targets


class ArrayBatches(keras.utils.PyDataset):
    """uint8 images -> float32 batches (one-hot, or one 0/1 column when num_classes is 1), reshuffled every
    epoch when asked, augmented by `augment` layers if given. With `first_epoch`, epoch e's order is set by
    (seed, e) alone, so a resumed run gets the batches an uninterrupted one would."""

    def __init__(self, images, labels, num_classes, batch_size, shuffle=False, seed=0, augment=None,
                 first_epoch=None):
        super().__init__()
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        if labels is not None:
            self.targets = training_targets(labels, num_classes)
        self.seed, self.epoch = seed, first_epoch
        self.rng, self.shuffle = np.random.default_rng(seed if first_epoch is None else [seed, first_epoch]), shuffle
        self.order = self.rng.permutation(len(images)) if shuffle else np.arange(len(images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, i):
        idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        x = self.images[idx].astype(np.float32)
        if self.augment is not None:
            x = np.asarray(self.augment(x, training=True))
        return x if self.labels is None else (x, self.targets[idx])

    def on_epoch_end(self):
        if self.epoch is not None:
            self.epoch += 1
            self.rng = np.random.default_rng([self.seed, self.epoch])
        if self.shuffle:
            self.order = self.rng.permutation(len(self.images))
