"""compare_backbones.py: variants on the same folds, the table and its paired tests; fine-tuning; the registry."""

import json

import pytest

import compare_backbones
from brainmri import compare, models, training
from brainmri.config import load_config

TINY = {"image_size": 32, "weights": "none", "epochs": 1, "folds": 2, "batch_size": 16, "backbone": "small_cnn"}


def _plan(tmp_path, kaggle_dir, variants, reference="a"):
    import yaml

    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"set": {**TINY, "data_dir": str(kaggle_dir), "cache_dir": str(tmp_path / "c")},
                                    "reference": reference, "variants": variants}))
    return path


def test_two_variants_on_the_same_folds(tmp_path, kaggle_dir):
    plan = _plan(tmp_path, kaggle_dir, {"a": {}, "b": {"optimizer": "sgd", "learning_rate": 0.01}})
    assert compare_backbones.main(["--config", str(plan), "--output-dir", str(tmp_path / "out")]) == 0
    (out,) = (tmp_path / "out" / "compare").iterdir()
    table = json.loads((out / "comparison.json").read_text())
    rows = {r["variant"]: r for r in table["rows"]}
    assert set(rows) == {"a", "b"} and table["reference"] == "a"
    assert rows["b"]["same_folds_as_reference"] and rows["b"]["vs_reference"]["folds"] == 2
    for key in ("params_trainable", "val_accuracy_mean", "val_accuracy_std", "val_f1_mean", "test_accuracy_mean",
                "seconds_per_epoch", "inference_ms_per_image", "model_mb", "val_recall_no_tumor"):
        assert rows["a"][key] == rows["a"][key], key  # present and not NaN
    summary_a = json.loads((out / "a" / "cv_summary.json").read_text())
    assert rows["a"]["val_accuracy_mean"] == pytest.approx(summary_a["mean"]["val_accuracy"])
    diffs = rows["b"]["vs_reference"]["differences"]
    per_fold = {k: json.loads((out / n / f"fold{k}" / "done.json").read_text())["val_accuracy"]
                for n in ("a", "b") for k in (0, 1) if n == "b"}
    assert diffs[0] == pytest.approx(per_fold[0] - summary_a["per_fold"]["0"]["val_accuracy"])
    for fig in ("accuracy_vs_epoch", "accuracy_bars", "accuracy_vs_parameters"):
        assert (out / "figures" / f"{fig}.png").is_file()
    assert "| a |" in (out / "comparison.md").read_text()
    # the same table from the finished runs alone, and a resume that trains nothing
    assert compare_backbones.main(["--runs", f"a={out / 'a'}", f"b={out / 'b'}", "--output-dir", str(tmp_path / "t")]) == 0
    assert compare_backbones.main(["--resume", str(out)]) == 0


def test_unknown_backbone_lists_the_known_ones(tmp_path, kaggle_dir, capsys):
    plan = _plan(tmp_path, kaggle_dir, {"a": {}, "b": {"backbone": "resnet9"}})
    assert compare_backbones.main(["--config", str(plan), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet9'" in err and "efficientnetv2b0" in err


def test_bad_plan_keys(tmp_path, kaggle_dir, capsys):
    plan = _plan(tmp_path, kaggle_dir, {"a": {"epochz": 3}})
    assert compare_backbones.main(["--config", str(plan)]) == 2
    assert "unknown config key 'epochz' in" in capsys.readouterr().err


def test_variant_settings_win_over_command_line(tmp_path, kaggle_dir):
    plan = _plan(tmp_path, kaggle_dir, {"a": {"epochs": 4}, "b": {}})
    configs, reference = compare.load_plan(plan, ["epochs=2", "seed=7"])
    assert configs["a"].epochs == 4 and configs["b"].epochs == 2 and configs["a"].seed == 7 and reference == "a"


def test_paired_test_corrects_for_shared_training_data():
    acc = {0: 0.80, 1: 0.82, 2: 0.85}
    ref = {0: 0.78, 1: 0.81, 2: 0.82}
    out = compare.paired_test(acc, ref, val_over_train=0.5)
    assert out["mean_difference"] == pytest.approx(0.02)
    assert out["p_corrected_t"] > out["p_paired_t"]


def test_vgg16_variants_and_efficientnetv2():
    frozen = models.build_classifier("vgg16", 32, 4, weights="none", train_backbone=False)
    block5 = models.build_classifier("vgg16", 32, 4, weights="none", unfreeze="from:block5_conv1")
    assert models.count_params(frozen)["trainable"] == 2_052
    assert models.count_params(block5)["trainable"] == 3 * (512 * 512 * 9 + 512) + 2_052
    assert "efficientnetv2b0" in models.BACKBONES
    with pytest.raises(Exception, match="not in the backbone"):
        models.build_classifier("vgg16", 32, 4, weights="none", unfreeze="from:block9_conv1")


def test_top_n_unfreeze_keeps_batchnorm_frozen():
    model = models.build_classifier("small_cnn", 32, 4, weights="none", unfreeze="top:3")
    trainable = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    assert trainable == ["conv3", "predictions"]  # top 3 = conv3, bn3, relu3; bn3 stays frozen


def test_fine_tuning_schedule_runs_head_first_then_unfreezes(kaggle_dir, tmp_path):
    import train

    assert train.main(["--set", f"data_dir={kaggle_dir}", f"output_dir={tmp_path}", f"cache_dir={tmp_path / 'c'}",
                       *[f"{k}={v}" for k, v in TINY.items()], "fine_tune_epochs=1", "unfreeze=top:4",
                       "fine_tune_learning_rate=0.0001"]) == 0
    (run,) = (tmp_path / "study").iterdir()
    history = training.read_history(run / "fold0" / "history.csv")
    assert len(history) == 2 and history[1]["learning_rate"] == pytest.approx(1e-4)
    assert "fine-tuning:" in (run / "train.log").read_text()
    assert load_config(run / "config.yaml").fine_tune_epochs == 1
