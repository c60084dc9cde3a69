"""Benchmarks 1 and 5 with Keras on JAX (a GPU box without TensorFlow), with and without mixed precision.

    python benchmarks/gpu_jax.py                # EfficientNetB0, 150 px, batch 32, synthetic data
    python benchmarks/gpu_jax.py --quick        # small settings: checks it runs (on a CPU too)

On a machine without Keras, carry its wheels (keras, namex, optree) and put them on PYTHONPATH first
(see the device notes). Writes benchmarks/results/gpu-<device>.json and prints a Markdown table.
1: images/s of fit on train.py's batches (brainmri.data.make_batches: a PyDataset over the uint8 array
   here) against the same compiled model stepping on one batch already on the device.
5: batched Grad-CAM (brainmri.cam, jax.grad) against a one-image loop, eager and jax.jit-compiled, and
   against the compiled forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from common import median_seconds  # noqa: E402


def median(fn, reps):
    return median_seconds(fn, reps)[0]


def synthetic_images(n: int, size: int):
    from brainmri.data import load_dataset
    from brainmri.synthetic import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(write_synthetic(Path(tmp) / "s", per_class=max(4, n // 4), size=size), size)
    return ds.images[:n], ds.labels[:n]


def training(images, labels, size, batch, steps, reps) -> dict:
    import jax
    import keras

    from brainmri.config import load_config
    from brainmri.batches import make_batches
    from brainmri.training import compile_model

    cfg = load_config(None, ["backbone=efficientnetb0", f"image_size={size}", "weights=none", f"batch_size={batch}"])
    model = compile_model(cfg, 4, jit_compile=True)
    n = steps * batch
    idx = np.resize(np.arange(len(images)), n)
    pipeline = make_batches(images[idx], labels[idx], 4, batch, shuffle=True)
    x, y = pipeline[0]
    one = (jax.device_put(x), jax.device_put(y))

    class OneBatch(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return one

    t_pipe = median(lambda: model.fit(pipeline, epochs=1, verbose=0), reps)
    t_ceil = median(lambda: model.fit(OneBatch(), epochs=1, verbose=0), reps)
    return {"pipeline_fit": n / t_pipe, "ceiling_one_batch": n / t_ceil, "ratio": t_ceil / t_pipe}


def gradcam(images, size, batch, reps) -> dict:
    import jax
    import jax.numpy as jnp

    from brainmri import cam, models

    model = models.build_classifier("efficientnetb0", size, 4, weights="none")
    c = cam.split_model(model)
    batched = cam.make_cam_fn(c)
    x = images[:batch].astype(np.float32)
    classes = np.zeros(len(x), np.int32)

    def one_image(image):  # the Keras example's way: the whole model under the gradient, one image
        def score(a):
            return c.logits(a)[0, 0]
        acts = c.features(image)
        g = jax.grad(score)(acts)
        heat = jax.nn.relu(jnp.einsum("bhwc,c->bhw", acts, g.mean(axis=(0, 1, 2))))
        return heat / jnp.maximum(heat.max(), 1e-9)

    compiled_one = jax.jit(one_image)
    forward = jax.jit(lambda a: model(a, training=False))
    singles = [jnp.asarray(x[i:i + 1]) for i in range(len(x))]
    xj = jnp.asarray(x)
    t = {"eager_loop": median(lambda: [np.asarray(one_image(s)) for s in singles], reps),
         "compiled_loop": median(lambda: [np.asarray(compiled_one(s)) for s in singles], reps),
         "batched": median(lambda: batched(x, classes), reps),
         "forward": median(lambda: np.asarray(forward(xj)), reps)}
    rate = {k: len(x) / v for k, v in t.items()}
    return {"images_per_second": rate, "batched_vs_eager": rate["batched"] / rate["eager_loop"],
            "batched_vs_compiled": rate["batched"] / rate["compiled_loop"],
            "batched_vs_forward": rate["batched"] / rate["forward"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    import jax
    import keras

    size, batch, steps, reps = (64, 8, 2, 1) if a.quick else (150, 32, 30, 3)
    images, labels = synthetic_images(max(batch * 4, 64), size)
    device = str(jax.devices()[0].device_kind)
    rows = []
    for mixed in (False, True):
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        rows.append({"mixed_precision": mixed, "training": training(images, labels, size, batch, steps, reps),
                     "gradcam": gradcam(images, size, batch, reps)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"device": device, "backend": "jax", "jax": jax.__version__, "keras": keras.__version__,
              "model": "efficientnetb0", "image_size": size, "batch": batch, "quick": a.quick,
              "date": time.strftime("%Y-%m-%d"), "rows": rows}
    lines = [f"| {device} | mixed precision | fit img/s (pipeline / ceiling) | Grad-CAM: x eager, x compiled, of forward |",
             "|---|---|---|---|"]
    for r in rows:
        t, g = r["training"], r["gradcam"]
        lines.append(f"| EfficientNetB0 {size} px, batch {batch} | {'on' if r['mixed_precision'] else 'off'} | "
                     f"{t['pipeline_fit']:.0f} / {t['ceiling_one_batch']:.0f} = **{t['ratio']:.2f}** | "
                     f"**{g['batched_vs_eager']:.0f}x**, **{g['batched_vs_compiled']:.1f}x**, **{g['batched_vs_forward']:.2f}** |")
    print("\n".join(lines))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "gpu-" + "".join(ch if ch.isalnum() else "-" for ch in device) + ("-quick" if a.quick else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
