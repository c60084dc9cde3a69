"""brainmri.backend and the backend-neutral input: the same model file gives the same predictions and maps on
TensorFlow, JAX and PyTorch; the compiled forward pass, the gradient, the PyDataset fallback, data parallelism."""

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from brainmri import backend, models, runs
from brainmri.batches import ArrayBatches, make_batches

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
INSTALLED = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def _under(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A Python command line run with Keras on backend `name` (Keras picks its backend once per process)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": name, **(env or {})})


def test_a_model_file_gives_the_same_predictions_and_maps_on_every_backend(tmp_path):
    """Saved under each backend, loaded under the others: outputs within 1e-5, Grad-CAM/++ maps within 1e-4."""
    if len(INSTALLED) < 2:
        pytest.skip(f"only {INSTALLED} installed: nothing to compare (pip install -r requirements-backends.txt)")
    for mode in ("save", "load"):
        for name in INSTALLED:
            proc = _under(name, "tests/backend_parity.py", mode, str(tmp_path))
            assert proc.returncode == 0, f"{mode} under {name}: {proc.stderr[-2000:]}"
    for source in INSTALLED:
        own = np.load(tmp_path / f"{source}-from-{source}.npz")
        for target in set(INSTALLED) - {source}:
            got = np.load(tmp_path / f"{target}-from-{source}.npz")
            for key in own.files:
                tolerance = 1e-5 if key == "predictions" else 1e-4
                gap = float(np.abs(got[key] - own[key]).max())
                assert gap <= tolerance, f"{key}: saved under {source}, run under {target}: off by {gap:.2e}"


def test_the_compiled_forward_pass_equals_predict_on_uint8_or_float_batches():
    keras.utils.set_random_seed(0)
    model = models.build_classifier("small_cnn", 32, 4, weights="none")
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3)).astype(np.uint8)
    expected = model.predict(images.astype(np.float32), verbose=0)
    assert np.allclose(backend.predict(model, images, 4), expected, atol=1e-5)  # uint8, cast on the device
    assert np.allclose(backend.compiled_forward(model)(images[:3].astype(np.float32)), expected[:3], atol=1e-5)
    assert backend.predict(model, images[:0], 4).shape == (0, 4)


def test_the_gradient_helper_differentiates_its_first_argument_and_keeps_the_rest():
    def fn(x, scale):
        return keras.ops.sum(x ** 2) * scale, x + 1.0

    grad = backend.compile_fn(backend.grad_with_aux(fn))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    g, aux = grad(x, np.float32(3.0))
    assert np.allclose(g, 6 * x) and np.allclose(aux, x + 1)


def test_env_json_names_the_backend_and_its_versions():
    env = runs.environment()
    assert env["keras_backend"] == keras.backend.backend() and isinstance(env["gpus"], list)
    wanted = {"tensorflow": ["tensorflow"], "jax": ["jax", "jaxlib"], "torch": ["torch"]}[keras.backend.backend()]
    assert all(env[k] for k in wanted)


class _Recording(ArrayBatches):
    """ArrayBatches that notes the threads its batches were made on."""

    threads: set

    def __getitem__(self, i):
        self.threads.add(threading.current_thread().name)
        return super().__getitem__(i)


def test_the_pydataset_fallback_trains_with_batches_prepared_ahead_on_worker_threads():
    """What JAX and PyTorch train on; it runs under TensorFlow too, so it is tested on every backend."""
    from brainmri.batches import augmentation_layers

    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(24) % 4
    data = _Recording(images, labels, 4, 8, shuffle=True, augment=augmentation_layers(rotation=10, flip="horizontal"),
                      workers=2)
    data.threads = set()
    model = models.build_classifier("small_cnn", 32, 4, weights="none")
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(data, epochs=2, verbose=0, validation_data=ArrayBatches(images[:9], labels[:9], 4, 8))
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
    assert data.threads - {threading.current_thread().name}  # prepared ahead by the enqueuer's threads
    if keras.backend.backend() != "tensorflow":  # (TensorFlow reads the first batches itself, for their shapes)
        assert threading.current_thread().name not in data.threads
        assert isinstance(make_batches(images, labels, 4, 8), ArrayBatches)


def test_batches_for_data_parallelism_are_multiples_of_the_devices_and_miss_no_image():
    images, labels = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1), np.arange(10) % 2
    batches = ArrayBatches(images, labels, 2, 4, shuffle=True, multiple=3)
    sizes = [len(batches[i][0]) for i in range(len(batches))]
    seen = np.concatenate([batches[i][0].ravel() for i in range(len(batches))])
    assert sizes == [6, 6, 3] and set(seen.tolist()) == set(range(10))  # 4 -> 6, 2 -> 3 with the epoch's first


DATA_PARALLEL = """
import numpy as np, keras
from brainmri import backend, models
from brainmri.batches import ArrayBatches
settings = backend._data_parallel(2, 4, kind="cpu")
images = np.random.default_rng(0).integers(0, 256, (13, 32, 32, 3)).astype(np.uint8)
labels = np.arange(13) % 4
model = models.build_classifier("small_cnn", 32, 4, weights="none")
model.compile("adam", "categorical_crossentropy", jit_compile=True)
model.fit(ArrayBatches(images, labels, 4, 4, shuffle=True, multiple=settings["batch_multiple"]), epochs=1, verbose=0,
          validation_data=ArrayBatches(images[:7], labels[:7], 4, 4, multiple=settings["batch_multiple"]))
print("devices", settings["batch_multiple"], "predict", backend.predict(model, images, 4).shape)
"""


@pytest.mark.skipif("jax" not in INSTALLED, reason="jax is not installed (requirements-backends.txt)")
def test_jax_trains_data_parallel_over_two_devices_with_short_last_batches():
    """keras.distribution.DataParallel, on two simulated CPU devices (a GPU box would have GPUs)."""
    proc = _under("jax", "-c", DATA_PARALLEL, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "devices 2 predict (13, 4)" in proc.stdout


def test_auto_compilation_follows_each_backend():
    """"auto": XLA with a GPU on TensorFlow, always on JAX (its only compiled mode), eager on PyTorch."""
    expected = {"tensorflow": (False, True), "jax": (True, True), "torch": (False, False)}[keras.backend.backend()]
    assert (backend._jit("auto", gpu=False), backend._jit("auto", gpu=True)) == expected
    assert backend._jit("on", gpu=False) is True and backend._jit("off", gpu=True) is False
