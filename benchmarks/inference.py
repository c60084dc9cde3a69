"""Benchmark 6: evaluate.py's prediction (brainmri.predictions.predict: uint8 slices of the image array into the
compiled forward pass, cast on the device) against the bare compiled forward pass (brainmri.backend) on float32
batches already on the device. Any backend (KERAS_BACKEND).

    python benchmarks/inference.py [--backbone efficientnetb0 --size 150 --images 384]
"""

from __future__ import annotations

import argparse
import sys

from common import emit, interleaved_medians, meta


def run(backbone: str, size: int, n: int, batch: int, reps: int) -> dict:
    import keras
    import numpy as np

    from brainmri import backend, models, predictions

    keras.utils.set_random_seed(0)
    model = models.build_classifier(backbone, size, 4, weights="none")
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    batches = [keras.ops.convert_to_tensor(images[i:i + batch].astype(np.float32)) for i in range(0, n, batch)]
    forward = backend.compiled_forward(model)
    timed = interleaved_medians({"evaluate": lambda: predictions.predict(model, images, batch),
                                 "forward": lambda: [forward(b) for b in batches]}, reps)
    (t_eval, all_eval), (t_fwd, all_fwd) = timed["evaluate"], timed["forward"]
    return {"benchmark": "evaluate.py inference vs the compiled forward pass", "backbone": backbone,
            "image_size": size, "images": n, "batch": batch, "reps": reps,
            "images_per_second": {"evaluate_predict": n / t_eval, "compiled_forward": n / t_fwd},
            "seconds": {"evaluate_predict": all_eval, "compiled_forward": all_fwd},
            "ratio": t_fwd / t_eval, "goal": ">= 0.9", "met": t_fwd / t_eval >= 0.9, "meta": meta()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnetb0")
    p.add_argument("--size", type=int, default=150)
    p.add_argument("--images", type=int, default=384)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args(argv)
    emit(run(a.backbone, a.size, a.images, a.batch, a.reps), a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
