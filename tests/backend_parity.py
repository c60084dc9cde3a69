"""Helper of tests/test_backends.py, run in a subprocess under KERAS_BACKEND (not a test file itself).

    python tests/backend_parity.py save DIR   # a seeded small_cnn -> DIR/<backend>.keras, its outputs and maps
    python tests/backend_parity.py load DIR   # every other backend's model from DIR: outputs and maps here
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from brainmri import backend, cam, models  # noqa: E402

SIZE, CLASSES = 48, np.array([0, 1, 2, 3, 1, 2])


def outputs(model, images: np.ndarray) -> dict:
    """Predictions (the compiled forward pass), Grad-CAM and Grad-CAM++ maps for given and predicted classes."""
    cm = cam.split_model(model)
    out = {"predictions": backend.predict(model, images, 4)}
    for method in cam.METHODS:
        fn = cam.make_cam_fn(cm, method)
        out[f"{method}_given"] = cam.compute_maps(fn, images, CLASSES, batch_size=4)[0]
        out[f"{method}_predicted"] = cam.compute_maps(fn, images, None, batch_size=4)[0]
    return out


def main(mode: str, folder: Path) -> None:
    here = backend.name()
    images = np.random.default_rng(0).integers(0, 256, (len(CLASSES), SIZE, SIZE, 3)).astype(np.uint8)
    if mode == "save":
        keras.utils.set_random_seed(7)
        model = models.build_classifier("small_cnn", SIZE, 4, weights="none")
        for layer in model.layers:  # BatchNorm away from its initial identity, so its statistics count
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(np.linspace(-0.1, 0.1, layer.moving_mean.shape[0]))
                layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
        model.save(folder / f"{here}.keras")
        np.savez(folder / f"{here}-from-{here}.npz", **outputs(model, images))
        return
    for path in sorted(folder.glob("*.keras")):
        if path.stem != here:
            model = models.load_model(path, compile=False)
            np.savez(folder / f"{here}-from-{path.stem}.npz", **outputs(model, images))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
