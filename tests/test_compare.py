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
                "test_accuracy_std", "last_epoch_val_accuracy_mean", "seconds_per_epoch", "inference_ms_per_image", "model_mb", "val_recall_no_tumor"):
        assert rows["a"][key] == rows["a"][key], key  # present and not NaN
    summary_a = json.loads((out / "a" / "cv_summary.json").read_text())
    assert rows["a"]["val_accuracy_mean"] == pytest.approx(summary_a["mean"]["val_accuracy"])
    diffs = rows["b"]["vs_reference"]["differences"]
    test_acc = {n: json.loads((out / n / "fold0" / "done.json").read_text())["test_accuracy"] for n in ("a", "b")}
    assert diffs[0] == pytest.approx(test_acc["b"] - test_acc["a"])  # on the test set, not the selection metric
    for fig in ("accuracy_vs_epoch", "accuracy_bars", "accuracy_vs_parameters"):
        assert (out / "figures" / f"{fig}.png").is_file()
    assert "| a |" in (out / "comparison.md").read_text()
    # the same table from the finished runs alone, and a resume that trains nothing
    assert compare_backbones.main(["--runs", f"a={out / 'a'}", f"b={out / 'b'}", "--output-dir", str(tmp_path / "t")]) == 0
    assert compare_backbones.main(["--resume", str(out)]) == 0
    # resuming one variant keeps every finished variant of the plan in the table
    assert compare_backbones.main(["--resume", str(out), "--only", "a"]) == 0
    assert {r["variant"] for r in json.loads((out / "comparison.json").read_text())["rows"]} == {"a", "b"}
    (out / "b" / "cv_summary.json").unlink()  # as if b was interrupted after a fold: it has no summary yet
    assert compare_backbones.main(["--resume", str(out), "--only", "a"]) == 0
    assert {r["variant"] for r in json.loads((out / "comparison.json").read_text())["rows"]} == {"a"}


def test_unknown_backbone_lists_the_known_ones(tmp_path, kaggle_dir, capsys):
    plan = _plan(tmp_path, kaggle_dir, {"a": {}, "b": {"backbone": "resnet9"}})
    assert compare_backbones.main(["--config", str(plan), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet9'" in err and "efficientnetv2b0" in err


def test_bad_plan_keys(tmp_path, kaggle_dir, capsys):
    plan = _plan(tmp_path, kaggle_dir, {"a": {"epochz": 3}})
    assert compare_backbones.main(["--config", str(plan)]) == 2
    assert "unknown config key 'epochz' in" in capsys.readouterr().err


def test_a_run_config_given_as_a_plan_points_to_train_py(capsys):
    assert compare_backbones.main(["--config", "configs/default.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a run config, not a comparison plan: train it with python train.py --config configs/default.yaml" in err
    assert "\n" not in err


def test_default_plan_is_the_backbone_plan():
    assert compare_backbones.parse_args([]).config == "configs/plans/backbones.yaml"


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


def _fake_run(trained_run, dest, best_val, last_val, test_correct):
    """A copy of the tiny run whose per-fold numbers are set: best-epoch and last-epoch validation accuracy,
    and how many test images each fold model gets right."""
    import csv
    import shutil

    shutil.copytree(trained_run, dest)
    summary = json.loads((dest / "cv_summary.json").read_text())
    for k, (best, last, right) in enumerate(zip(best_val, last_val, test_correct)):
        summary["per_fold"][str(k)]["val_accuracy"] = best
        fold = dest / f"fold{k}"
        rows = training.read_history(fold / "history.csv")
        rows = [{**rows[0], "epoch": 0, "val_accuracy": best}, {**rows[0], "epoch": 1, "val_accuracy": last}]
        with open(fold / "history.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with open(fold / "test_predictions.csv", newline="") as f:
            preds = list(csv.DictReader(f))
        classes = json.loads((dest / "classes.json").read_text())
        for i, r in enumerate(preds):
            r["pred"] = r["true"] if i < right else classes[(classes.index(r["true"]) + 1) % len(classes)]
        with open(fold / "test_predictions.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(preds[0]))
            w.writeheader()
            w.writerows(preds)
    summary["mean"]["val_accuracy"] = sum(best_val) / len(best_val)
    (dest / "cv_summary.json").write_text(json.dumps(summary))
    return dest, len(preds)


def test_variants_are_compared_on_test_accuracy_not_on_the_selection_val_accuracy(trained_run, tmp_path):
    a, n = _fake_run(trained_run, tmp_path / "a", best_val=[0.70, 0.72], last_val=[0.66, 0.70], test_correct=[6, 5])
    b, _ = _fake_run(trained_run, tmp_path / "b", best_val=[0.90, 0.92], last_val=[0.60, 0.62], test_correct=[2, 3])
    (tmp_path / "out").mkdir()
    rows = {r["variant"]: r for r in compare.compare_runs({"a": a, "b": b}, "a", tmp_path / "out")}
    vs = rows["b"]["vs_reference"]
    assert vs["differences"] == pytest.approx([(2 - 6) / n, (3 - 5) / n]) and vs["mean_difference"] < 0
    assert vs["basis"] == rows["b"]["comparison_basis"] == "test_accuracy"
    assert rows["b"]["test_accuracy_mean"] == pytest.approx(2.5 / n)
    assert rows["b"]["val_accuracy_mean"] > rows["a"]["val_accuracy_mean"]  # kept, for what it is
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "selection (optimistic)" in table and "Compared on: test accuracy" in table
    import csv

    with open(tmp_path / "out" / "comparison.csv") as f:
        b_row = [r for r in csv.DictReader(f) if r["variant"] == "b"][0]
    assert b_row["comparison_basis"] == "test_accuracy" and float(b_row["diff_vs_reference"]) < 0


def test_runs_without_a_test_set_are_compared_at_the_last_epoch(trained_run, tmp_path):
    a, _ = _fake_run(trained_run, tmp_path / "a", best_val=[0.70, 0.72], last_val=[0.66, 0.70], test_correct=[6, 5])
    b, _ = _fake_run(trained_run, tmp_path / "b", best_val=[0.90, 0.92], last_val=[0.60, 0.62], test_correct=[2, 3])
    for run in (a, b):  # protocol all: no test set
        for f in run.glob("fold*/test_predictions.csv"):
            f.unlink()
    (tmp_path / "out").mkdir()
    rows = {r["variant"]: r for r in compare.compare_runs({"a": a, "b": b}, "a", tmp_path / "out")}
    vs = rows["b"]["vs_reference"]
    assert vs["basis"] == "last_epoch_val_accuracy"
    assert vs["differences"] == pytest.approx([0.60 - 0.66, 0.62 - 0.70])
    assert rows["b"]["last_epoch_val_accuracy_mean"] == pytest.approx(0.61)
    assert "Compared on: validation accuracy at the last epoch" in (tmp_path / "out" / "comparison.md").read_text()


def test_runs_of_different_classes_are_refused_before_anything_is_written(trained_run, tmp_path):
    from brainmri.errors import UserError

    a, _ = _fake_run(trained_run, tmp_path / "a", best_val=[0.70, 0.72], last_val=[0.66, 0.70], test_correct=[6, 5])
    b, _ = _fake_run(trained_run, tmp_path / "b", best_val=[0.90, 0.92], last_val=[0.60, 0.62], test_correct=[2, 3])
    (b / "classes.json").write_text(json.dumps(["no_tumor", "tumor"]))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="run b tells .*'tumor'.* apart, the reference a "):
        compare.compare_runs({"a": a, "b": b}, "a", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("extra", [["--set", "epochs=3"], ["--config", "configs/plans/optimizers.yaml"]])
def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys, extra):
    assert compare_backbones.main(["--resume", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert "--resume continues the saved plan.yaml" in err and err.count("\n") == 1
