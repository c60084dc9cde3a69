"""Every script end to end on the backend Keras runs on: train -> evaluate -> gradcam -> binary_task ->
compare_backbones, tiny settings, synthetic data. CI runs this file under KERAS_BACKEND=jax and =torch as well:

    KERAS_BACKEND=jax python -m pytest -q tests/test_backends_smoke.py
"""

import json

import keras
import pytest

import binary_task
import compare_backbones
import evaluate
import gradcam
import train

TINY = ["image_size=32", "backbone=small_cnn", "weights=none", "epochs=1", "folds=2", "batch_size=16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run of train.py on the synthetic set, augmented and class-weighted."""
    out = tmp_path_factory.mktemp("smoke")
    assert train.main(["--run-dir", str(out / "run"), "--set", "synthetic=true", "synthetic_per_class=16",
                       f"cache_dir={out / 'cache'}", *TINY, "augment_rotation=10", "augment_flip=horizontal",
                       "class_weight=balanced"]) == 0
    return out / "run"


def test_train_evaluate_and_gradcam_run_on_this_backend(run):
    env = json.loads((run / "env.json").read_text())
    assert env["keras_backend"] == keras.backend.backend() and len(list(run.glob("fold*/done.json"))) == 2
    assert evaluate.main([str(run), "--tta"]) == 0
    assert (run / "evaluation" / "report.md").is_file()
    # (no --score: after one epoch there may be no correctly classified tumor image to score)
    assert gradcam.main([str(run), "--deletion", "--method", "gradcam++", "--limit", "16"]) == 0
    scores = json.loads((run / "gradcam" / "scores.json").read_text())
    assert 0 < scores["images"] <= 16 and 0 <= scores["deletion"]["cam_area"] <= 1


def test_binary_task_trains_and_maps_on_this_backend(kaggle_dir, tmp_path):
    assert binary_task.main(["split", "--set", f"data_dir={kaggle_dir}", f"output_dir={tmp_path / 'out'}",
                             f"cache_dir={tmp_path / 'c'}", *TINY]) == 0
    (run,) = (tmp_path / "out" / "binary-split").iterdir()
    summary = json.loads((run / "binary" / "binary_summary.json").read_text())
    assert summary["at_validation_threshold"]["images"] > 0 and (run / "binary" / "report.md").is_file()


def test_compare_backbones_trains_and_times_variants_on_this_backend(kaggle_dir, tmp_path):
    import yaml

    plan = tmp_path / "plan.yaml"
    settings = {k: yaml.safe_load(v) for k, v in (s.split("=") for s in TINY)}
    plan.write_text(yaml.safe_dump({"set": {**settings, "data_dir": str(kaggle_dir), "cache_dir": str(tmp_path / "c")},
                                    "variants": {"adam": {}, "sgd": {"optimizer": "sgd", "learning_rate": 0.01}}}))
    assert compare_backbones.main(["--config", str(plan), "--output-dir", str(tmp_path / "out")]) == 0
    (out,) = (tmp_path / "out" / "compare").iterdir()
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["adam", "sgd"] and all(r["inference_ms_per_image"] > 0 for r in rows)
    assert compare_backbones.main(["--runs", f"a={out / 'adam'}", f"b={out / 'sgd'}", "--output-dir",
                                   str(tmp_path / "t")]) == 0
