"""Everything that differs between Keras' backends (TensorFlow, JAX, PyTorch), in one place: the GPUs and
what they switch on, the library versions env.json records, the one compiled forward pass, and the gradient
Grad-CAM takes. The rest of the package is keras.ops and numpy.

Pick a backend with KERAS_BACKEND=tensorflow|jax|torch before Keras is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from .errors import UserError

log = logging.getLogger("brainmri")


def name() -> str:
    """The backend Keras runs on: tensorflow, jax or torch."""
    return keras.backend.backend()


def versions() -> dict:
    """The backend's name and the versions of its libraries (for env.json)."""
    out = {"keras_backend": name()}
    if name() == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    elif name() == "jax":
        import jax
        import jaxlib

        out.update(jax=jax.__version__, jaxlib=jaxlib.__version__)
    elif name() == "torch":
        import torch

        out.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    return out


def gpu_names() -> list[str]:
    """The GPUs the backend sees (empty on a CPU-only machine)."""
    if name() == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if name() == "jax":
        import jax

        return [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    if name() == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def device_settings(mixed_precision: str, jit_compile: str, batch_size: int, cache_dir: str | None = None) -> dict:
    """Mixed precision, compilation and multi-GPU data parallelism, resolved against the GPUs present:
    "auto" means on where a GPU is. Keys: gpus, mixed_precision, jit_compile (for model.compile), strategy (a
    tf.distribute scope or None), batch_multiple (every batch's size must be a multiple of it). JAX keeps its
    compiled programs in `cache_dir`/jax: every fold builds the same model anew, and compiles it again."""
    gpus = gpu_names()
    if name() == "jax" and cache_dir:
        _jax_compilation_cache(Path(cache_dir) / "jax")
    mixed = mixed_precision == "on" or (mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    settings = {"gpus": gpus, "mixed_precision": mixed, "jit_compile": _jit(jit_compile, bool(gpus)),
                "strategy": None, "batch_multiple": 1}
    if len(gpus) > 1:
        settings.update(_data_parallel(len(gpus), batch_size))
    log.info("backend %s; GPUs: %s; mixed precision %s; jit_compile %s", name(), ", ".join(gpus) or "none",
             "on" if mixed else "off", settings["jit_compile"])
    return settings


def _jax_compilation_cache(folder: Path) -> None:
    """JAX's persistent compilation cache: EfficientNetB0's first epoch at 64 px on this CPU took 21 s per fold
    without it, 5 s from the second fold on with it."""
    import jax

    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))


def _jit(setting: str, gpu: bool):
    """model.compile's jit_compile. TensorFlow: XLA with a GPU, plain graphs on a CPU. JAX: always (XLA is
    JAX's only compiled mode; off, every op runs eagerly). PyTorch: eager unless "on" asks for torch.compile,
    which on Keras models recompiles per layer and ran slower than eager here (small CNN on this CPU: 51 s to
    compile, then 2.1 s/epoch against 0.9 s eager)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return {"tensorflow": gpu, "jax": True}.get(name(), False)


def _data_parallel(n_gpus: int, batch_size: int, kind: str = "gpu") -> dict:
    """Several GPUs: MirroredStrategy on TensorFlow, keras.distribution.DataParallel on JAX; PyTorch uses one.
    (`kind` "cpu" lets a test spread JAX over simulated CPU devices.)"""
    if name() == "tensorflow":
        import tensorflow as tf

        return {"strategy": tf.distribute.MirroredStrategy()}
    if name() == "jax":
        if batch_size % n_gpus:
            raise UserError(f"batch_size {batch_size} does not split over {n_gpus} GPUs: use a multiple of {n_gpus}")
        devices = keras.distribution.list_devices(kind)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return {"batch_multiple": len(devices)}
    log.warning("%d GPUs, but Keras on PyTorch trains on one (no keras.distribution there); use JAX or "
                "TensorFlow for several", n_gpus)
    return {}


def rng_state() -> list | None:
    """The backend's global random state, where Keras draws from it (PyTorch: Dropout without a seed uses
    torch's generator, not the layer's seed variable), for last_state.json; None elsewhere."""
    if name() != "torch":
        return None
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return [s.tolist() for s in [torch.get_rng_state(), *cuda]]


def set_rng_state(state: list | None) -> None:
    """Put back what rng_state() returned (a resumed fold then draws the dropout masks it would have)."""
    if not state or name() != "torch":
        return
    import torch

    tensors = [torch.tensor(s, dtype=torch.uint8) for s in state]
    torch.set_rng_state(tensors[0])
    if len(tensors) > 1 and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors[1:])


def to_numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def compile_fn(fn: Callable) -> Callable:
    """`fn` over backend tensors as one compiled call over numpy arrays (tf.function, jax.jit; PyTorch eager
    without autograd, see _jit), returning numpy arrays. `fn` may close over a model: TensorFlow and PyTorch
    read its variables at each call, JAX bakes their values in at tracing (build it again after training)."""
    compiled = _compiled(fn)

    def call(*arrays):
        out = compiled(*arrays)
        return tuple(map(to_numpy, out)) if isinstance(out, (tuple, list)) else to_numpy(out)
    return call


def _compiled(fn: Callable) -> Callable:
    """`fn` compiled, taking numpy arrays and returning backend tensors (still on the device)."""
    if name() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn, reduce_retracing=True)
    elif name() == "jax":
        import jax

        compiled = jax.jit(fn)
    else:
        import torch

        compiled = torch.no_grad()(fn)
    return lambda *arrays: compiled(*[keras.ops.convert_to_tensor(a) for a in arrays])


def grad_with_aux(fn: Callable) -> Callable:
    """For fn(x, *args) -> (scalar, aux): a function (x, *args) -> (d scalar / d x, aux), for use inside
    compile_fn. Only x is differentiated (Grad-CAM: the feature map, not the weights)."""
    if name() == "tensorflow":
        import tensorflow as tf

        def grad(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value, aux = fn(x, *args)
            return tape.gradient(value, x), aux
        return grad
    if name() == "jax":
        import jax

        return lambda x, *args: jax.grad(fn, has_aux=True)(x, *args)
    import torch

    def grad(x, *args):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value, aux = fn(x, *args)
            (g,) = torch.autograd.grad(value, x)
        return g, aux.detach()
    return grad


def compiled_forward(model) -> Callable[[np.ndarray], np.ndarray]:
    """Batch (any dtype; cast to float32 inside, on the device) -> model outputs as numpy, through one
    compiled inference call per batch, traced once per model. model.predict adds a callback loop and a
    conversion per batch that cost a small model half its speed (benchmarks/inference.py)."""
    forward = _device_forward(model)
    return lambda x: to_numpy(forward(x))


def _device_forward(model) -> Callable:
    """compiled_forward without the copy back: outputs stay backend tensors. JAX passes the variables in at
    each call, so a model changed after tracing is never run with stale weights."""
    cached = getattr(model, "_brainmri_forward", None)
    if cached is not None:
        return cached
    if name() == "jax":
        import jax

        step = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
            trainable, non_trainable, x.astype("float32"), training=False)[0])
        forward = lambda x: step([v.value for v in model.trainable_variables],  # noqa: E731
                                 [v.value for v in model.non_trainable_variables], x)
    else:
        forward = _compiled(lambda x: model(keras.ops.cast(x, "float32"), training=False))
    model._brainmri_forward = forward
    return forward


def predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Model outputs for an array of images, batch by batch through the compiled forward pass. Batches go
    over as they are (uint8 stays uint8: a quarter of the float32 bytes) and are cast on the device; results
    come back once at the end, so on a GPU the next batch is sent while the last one runs."""
    forward = _device_forward(model)
    outputs = [forward(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    if not outputs:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    return np.concatenate([to_numpy(o) for o in outputs])
