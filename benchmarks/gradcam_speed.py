"""Grad-CAM throughput: batched (brainmri.cam) vs the same compiled function one image at a time vs the forward
pass; under TensorFlow also the Keras example's loop (one GradientTape per image), eager and compiled. Any backend.

    python benchmarks/gradcam_speed.py                          # EfficientNetB0 at 150 px and the small CNN at 64 px
    python benchmarks/gradcam_speed.py --models efficientnetb0:150 --reps 5

Same model (random weights: speed does not depend on them), same 32 images, one process. Medians of
--reps repetitions after a warm-up. Prints a line per model and the result as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import emit, median_seconds as _median, meta  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from brainmri import backend, cam, models  # noqa: E402


def keras_example_step(grad_model, image, class_index):
    """One image, as in the Keras Grad-CAM example: a GradientTape over the whole model (TensorFlow only)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv, preds = grad_model(image)
        score = preds[:, class_index]
    grads = tape.gradient(score, conv)
    heat = conv[0] @ tf.reduce_mean(grads, axis=(0, 1, 2))[..., None]
    return tf.nn.relu(heat) / tf.reduce_max(heat)


def median_seconds(fn, reps: int) -> float:
    return _median(fn, reps)[0]


def keras_example_loops(model, layer: str, images: np.ndarray, reps: int) -> dict:
    """Seconds of the Keras example's one-image loop, eager and in tf.function."""
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    compiled_step = tf.function(keras_example_step, reduce_retracing=True)
    one = [tf.constant(images[i:i + 1]) for i in range(len(images))]
    return {"eager_loop": median_seconds(lambda: [keras_example_step(grad_model, im, 0) for im in one], reps),
            "compiled_loop": median_seconds(lambda: [compiled_step(grad_model, im, 0) for im in one], reps)}


def bench(name: str, size: int, batch: int, reps: int) -> dict:
    keras.utils.set_random_seed(0)
    model = models.build_classifier(name, size, 4, weights="none")
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3)).astype(np.float32)
    classes = np.zeros(batch, np.int32)
    cm = cam.split_model(model)
    fn = cam.make_cam_fn(cm)
    forward = backend.compiled_forward(model)
    x = keras.ops.convert_to_tensor(images)
    t = {"per_image_loop": median_seconds(lambda: cam.compute_maps(fn, images, classes, batch_size=1), reps),
         "batched": median_seconds(lambda: fn(images, classes), reps),
         "forward": median_seconds(lambda: forward(x), reps)}
    if keras.backend.backend() == "tensorflow":
        t.update(keras_example_loops(model, cm.layer, images, reps))
    rate = {k: batch / v for k, v in t.items()}
    out = {"model": name, "image_size": size, "batch": batch, "layer": cm.layer, "seconds": t,
           "images_per_second": rate, "batched_vs_per_image": rate["batched"] / rate["per_image_loop"],
           "batched_vs_forward": rate["batched"] / rate["forward"]}
    if "eager_loop" in rate:
        out.update(batched_vs_eager=rate["batched"] / rate["eager_loop"],
                   batched_vs_compiled=rate["batched"] / rate["compiled_loop"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["efficientnetb0:150", "small_cnn:64"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", help="also write the result here (run_all.py)")
    args = p.parse_args(argv)
    results = []
    for spec in args.models:
        name, size = spec.split(":")
        results.append(bench(name, int(size), args.batch, args.reps))
        r = results[-1]
        print(f"{name} {size}px batch {args.batch}: images/s " +
              ", ".join(f"{k} {v:.1f}" for k, v in r["images_per_second"].items()) +
              f" | batched = {r['batched_vs_per_image']:.1f}x the per-image compiled loop, "
              f"{r['batched_vs_forward']:.2f} of forward", flush=True)
    main_model = results[0]
    met = main_model["batched_vs_per_image"] >= 2.5 and main_model["batched_vs_forward"] >= 0.8
    emit({"benchmark": "batched Grad-CAM", "meta": {**meta(), "reps": args.reps}, "results": results,
          "goal": ">= 2.5x the per-image compiled loop, >= 0.8 of forward (first model)", "met": met}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
