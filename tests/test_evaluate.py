"""evaluate.py end to end on a tiny trained run: files, numbers recomputed from predictions.csv, bad input."""

import csv
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

import evaluate
from brainmri.metrics import calibration
from brainmri.predictions import NEAR_DUPLICATE, read_predictions

def test_report_numbers_recompute_from_predictions_csv(run_copy, kaggle_dir):
    assert evaluate.main([str(run_copy), "--test-dir", str(kaggle_dir / "Testing")]) == 0
    ev = run_copy / "evaluation"
    for name in ("report.md", "label_errors.csv", "test/predictions.csv", "test/misclassified.csv",
                 "test/report_ensemble.md", "test/report_fold1.csv", "test/figures/confusion_ensemble.png",
                 "test/figures/roc_pr.png", "test/figures/reliability.png", "external/summary.json"):
        assert (ev / name).is_file(), name
    for test_set in ("test", "external"):
        preds = read_predictions(ev / test_set / "predictions.csv")
        assert set(preds) == {"fold0", "fold1", "ensemble"}
        for model, p in preds.items():
            assert np.array_equal(p["pred"], p["probs"].argmax(1))
            report = json.loads((ev / test_set / f"report_{model}.json").read_text())
            prec, rec, f1, support = precision_recall_fscore_support(p["labels"], p["pred"], labels=range(4), zero_division=0)
            assert report["accuracy"] == pytest.approx(accuracy_score(p["labels"], p["pred"]))
            assert [report[c]["precision"] for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")] == pytest.approx(prec)
            present = np.unique(p["labels"])
            assert report["macro avg"]["f1-score"] == pytest.approx(f1[present].mean())
            assert [report[c]["support"] for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")] == list(support)
        summary = json.loads((ev / test_set / "summary.json").read_text())
        ens = preds["ensemble"]
        assert np.allclose(ens["probs"], (preds["fold0"]["probs"] + preds["fold1"]["probs"]) / 2, atol=2e-6)
        assert summary["accuracy"] == pytest.approx(accuracy_score(ens["labels"], ens["pred"]))
        assert summary["macro_f1"] == pytest.approx(f1_score(ens["labels"], ens["pred"], average="macro", labels=np.unique(ens["labels"]), zero_division=0))
        assert summary["mean_fold_accuracy"] == pytest.approx(np.mean([accuracy_score(preds[f]["labels"], preds[f]["pred"]) for f in ("fold0", "fold1")]))
        assert summary["ece"] == pytest.approx(calibration(ens["labels"], ens["probs"])["ece"], abs=1e-5)
        for kind in ("images", "groups"):
            lo, hi = summary[f"accuracy_ci95_{kind}"]
            assert lo <= summary["accuracy"] <= hi
        dup = np.array(ens[NEAR_DUPLICATE]) == "1"
        if dup.any():
            assert summary["with_near_duplicate_in_training"]["accuracy"] == pytest.approx(accuracy_score(ens["labels"][dup], ens["pred"][dup]))
    assert evaluate.main([str(run_copy)]) == 0  # a second evaluation never overwrites the first
    assert (run_copy / "evaluation-2" / "report.md").is_file()


def test_partial_run_is_evaluated_on_the_folds_that_exist(run_copy, caplog):
    (run_copy / "fold1" / "done.json").unlink()
    assert evaluate.main([str(run_copy)]) == 0
    report = (run_copy / "evaluation" / "report.md").read_text()
    assert "fold 1 is unfinished" in report and "evaluated on folds [0] only" in report
    assert set(read_predictions(run_copy / "evaluation" / "test" / "predictions.csv")) == {"fold0"}


def _fails(argv, message, capsys):
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert "kaggle" not in err  # the hint to download the study's data does not fit a test folder


def test_bad_input(run_copy, tmp_path, kaggle_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([str(run_copy), "--test-dir", str(empty)], "no class folders", capsys)
    a_file = tmp_path / "scan.png"
    a_file.write_bytes(b"")
    _fails([str(run_copy), "--test-dir", str(a_file)], "is a file, not a folder", capsys)
    _fails([str(run_copy), "--test-dir", str(tmp_path / "nowhere")], "test folder not found", capsys)
    odd = tmp_path / "odd"
    shutil.copytree(kaggle_dir / "Testing" / "no_tumor", odd / "astrocytoma")
    _fails([str(run_copy), "--test-dir", str(odd)], "classes ['astrocytoma']", capsys)
    _fails([str(tmp_path)], "neither a run folder", capsys)
    assert not list(run_copy.glob("evaluation*"))  # no half-written evaluation folder was left behind
    (run_copy / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    _fails([str(run_copy)], "tells 4 classes apart but the run has 3", capsys)
    for k in (0, 1):
        (run_copy / f"fold{k}" / "done.json").unlink()
    _fails([str(run_copy)], "has no finished fold", capsys)


def test_single_model_with_an_external_folder(run_copy, kaggle_dir):
    assert evaluate.main([str(run_copy / "fold0" / "best.keras"), "--test-dir", str(kaggle_dir / "Testing")]) == 0
    assert (run_copy / "fold0" / "evaluation" / "external" / "report_fold0.md").is_file()


def test_mirror_tta_averages_the_image_and_its_mirror():
    from brainmri.models import build_classifier
    from brainmri.predictions import predict

    model = build_classifier("small_cnn", 32, 4, weights="none")
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    plain = predict(model, images, 4)
    mirrored = predict(model, images[:, :, ::-1].copy(), 4)
    assert np.allclose(predict(model, images, 4, tta=True), (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the mirror really is a different input


def _correlated_test_set(group_size: int, groups: int = 20, seed: int = 0):
    """Labels, predictions and groups where every image of a group is right or wrong together."""
    rng = np.random.default_rng(seed)
    right = np.repeat(rng.random(groups) < 0.7, group_size)
    labels = np.repeat(rng.integers(0, 4, groups), group_size)
    pred = np.where(right, labels, (labels + 1) % 4)
    return labels, pred, np.repeat(np.arange(groups), group_size)


def test_group_bootstrap_is_wider_when_near_duplicates_are_correlated():
    from brainmri.metrics import bootstrap_ci

    labels, pred, groups = _correlated_test_set(group_size=15)
    ci = bootstrap_ci(labels, pred, 4, groups=groups)
    width = {k: ci[f"accuracy_ci95_{k}"][1] - ci[f"accuracy_ci95_{k}"][0] for k in ("images", "groups")}
    assert ci["groups"] == 20 and ci["images"] == 300
    assert width["groups"] > 2.5 * width["images"]  # 20 independent outcomes, not 300
    f1_width = {k: ci[f"macro_f1_ci95_{k}"][1] - ci[f"macro_f1_ci95_{k}"][0] for k in ("images", "groups")}
    assert f1_width["groups"] > 2 * f1_width["images"]


def test_group_bootstrap_with_singleton_groups_is_the_image_bootstrap():
    from brainmri.metrics import bootstrap_ci

    labels, pred, _ = _correlated_test_set(group_size=1, groups=300)
    ci = bootstrap_ci(labels, pred, 4, groups=np.arange(300) * 7, seed=3)  # any ids, one image each
    assert ci["groups"] == 300
    assert ci["accuracy_ci95_groups"] == pytest.approx(ci["accuracy_ci95_images"])
    assert ci["macro_f1_ci95_groups"] == pytest.approx(ci["macro_f1_ci95_images"])
    plain = bootstrap_ci(labels, pred, 4, seed=3)  # no groups given: each image its own
    assert plain["accuracy_ci95_groups"] == pytest.approx(ci["accuracy_ci95_images"]) and plain["groups"] == 300


def test_macro_f1_from_confusion_matrices_matches_scikit_learn():
    from sklearn.metrics import confusion_matrix

    from brainmri.metrics import macro_f1_of_confusion

    rng = np.random.default_rng(1)
    cases = [(rng.integers(0, 4, 40), rng.integers(0, 4, 40)) for _ in range(5)]
    cases.append((rng.choice([0, 2], 40), rng.integers(0, 4, 40)))  # classes 1 and 3 absent from the labels
    matrices = np.array([confusion_matrix(y, p, labels=range(4)) for y, p in cases])
    expected = [f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0) for y, p in cases]
    assert macro_f1_of_confusion(matrices) == pytest.approx(expected)


def test_macro_average_is_over_the_classes_present_in_the_test_labels():
    from brainmri.evaluation import class_report_markdown
    from brainmri.metrics import bootstrap_ci, class_report, score

    classes = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    labels = np.array([2, 2, 2, 3, 3, 3])
    probs = np.eye(4)[labels] * 0.9 + 0.025  # a 2-class external subset of a 4-class model, all correct
    report = class_report(labels, probs.argmax(1), classes)
    assert report["macro avg"]["f1-score"] == 1.0 and report["macro avg"]["classes"] == 2
    assert report["glioma_tumor"]["support"] == 0  # every class of the model is still listed
    assert "macro avg (over the 2 classes present)" in class_report_markdown(report, "external")
    assert bootstrap_ci(labels, probs.argmax(1), 4)["macro_f1"] == 1.0
    assert score(labels, probs, 4, "test")["test_f1"] == 1.0
    probs[0] = [0.1, 0.7, 0.1, 0.1]  # one image called meningioma, a class with no test image
    s = score(labels, probs, 4, "test")
    expected = f1_score(labels, probs.argmax(1), labels=[2, 3], average="macro")
    assert s["test_f1"] == pytest.approx(expected)  # not dragged down by a zero for the absent class


def test_report_gives_group_intervals_and_the_classes_averaged(run_copy, kaggle_dir, tmp_path):
    from brainmri.splits import read_splits

    two = tmp_path / "two_classes"
    for c in ("no_tumor", "pituitary_tumor"):
        shutil.copytree(kaggle_dir / "Testing" / c, two / c)
    assert evaluate.main([str(run_copy), "--test-dir", str(two)]) == 0
    ev = run_copy / "evaluation"
    splits = read_splits(run_copy / "splits.csv")
    test_groups = len(set(splits["groups"][splits["roles"][:, 0] == "test"]))
    summary = json.loads((ev / "test" / "summary.json").read_text())
    assert summary["groups"] == test_groups and summary["images"] == int((splits["roles"][:, 0] == "test").sum())
    report = (ev / "report.md").read_text()
    lo, hi = summary["accuracy_ci95_groups"]
    assert f"95% CI {lo:.4f}-{hi:.4f}, resampling {test_groups} near-duplicate groups" in report
    assert "macro F1 over the 2 classes present" in report and "macro F1 over the 4 classes present" in report
    with open(ev / "external" / "confidence_intervals.csv") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    ext = json.loads((ev / "external" / "summary.json").read_text())
    assert float(rows["accuracy"]["ci95_low_groups"]) == pytest.approx(ext["accuracy_ci95_groups"][0])
    assert float(rows["macro_f1"]["ci95_high_images"]) == pytest.approx(ext["macro_f1_ci95_images"][1])
    assert int(rows["accuracy"]["groups"]) == ext["groups"] <= ext["images"]


def test_figures_follow_the_runs_figure_formats_unless_overridden(run_copy, capsys):
    import gradcam

    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("figure_formats:\n- png\n", "figure_formats:\n- png\n- pdf\n"))
    assert evaluate.main([str(run_copy)]) == 0  # the run's figure_formats
    figures = run_copy / "evaluation" / "test" / "figures"
    assert (figures / "confusion_ensemble.png").is_file() and (figures / "confusion_ensemble.pdf").is_file()
    assert gradcam.main([str(run_copy), "--limit", "4", "--figure-formats", "svg"]) == 0  # the flag wins
    assert (run_copy / "gradcam" / "grid.svg").is_file() and not (run_copy / "gradcam" / "grid.png").exists()
    assert {p.suffix for p in (run_copy / "gradcam" / "images").iterdir()} == {".svg"}
    capsys.readouterr()
    assert evaluate.main([str(run_copy), "--figure-formats", "gif"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config key 'figure_formats' takes png, pdf and svg") and "\n" not in err


def test_a_test_image_gone_or_moved_since_the_run_is_refused_not_dropped(data_copy, tmp_path):
    from brainmri.data import load_dataset
    from brainmri.errors import UserError
    from brainmri.splits import TEST, TRAIN, write_splits
    from brainmri.testsets import own_test_set

    ds = load_dataset(data_copy, 32)
    names = [ds.classes[y] for y in ds.labels]
    roles = np.array([[TEST if s == "Testing" else TRAIN] for s in ds.subsets], dtype=object)
    write_splits(tmp_path / "splits.csv", ds.paths, names, ds.subsets, np.arange(len(ds.paths)), roles)
    assert len(own_test_set(tmp_path, ds, [0]).paths) == ds.subsets.count("Testing")
    tested = [p for p in ds.paths if p.startswith("Testing/")]
    gone, moved = tested[0], next(p for p in tested[1:] if p.split("/")[1] == tested[0].split("/")[1])
    (data_copy / gone).unlink()  # deleted; and renamed (or moved to another class: its old path is gone)
    (data_copy / moved).rename((data_copy / moved).with_name("renamed.png"))
    with pytest.raises(UserError, match=r"2 of the 8 test images in .*splits.csv are missing .*first: " + gone):
        own_test_set(tmp_path, load_dataset(data_copy, 32), [0])


def test_a_test_image_whose_content_changed_since_the_run_is_refused(data_copy, tmp_path):
    """Another picture under a test image's name is not the image the run held out (its group was chosen for
    the other): scored, it would be a test image the folds may have trained on."""
    from brainmri.data import load_dataset
    from brainmri.errors import UserError
    from brainmri.splits import TEST, TRAIN, write_splits
    from brainmri.testsets import own_test_set

    ds = load_dataset(data_copy, 32)
    names = [ds.classes[y] for y in ds.labels]
    roles = np.array([[TEST if s == "Testing" else TRAIN] for s in ds.subsets], dtype=object)
    write_splits(tmp_path / "splits.csv", ds.paths, names, ds.subsets, np.arange(len(ds.paths)), roles, md5=ds.md5)
    tested = [p for p in ds.paths if p.startswith("Testing/")]
    trained = next(p for p in ds.paths if p.startswith("Training/") and p.split("/")[1] == tested[0].split("/")[1])
    shutil.copyfile(data_copy / trained, data_copy / tested[0])  # a training image copied over a test image
    with pytest.raises(UserError, match=r"1 of the 8 test images in .*splits.csv changed content .*first: " + tested[0]):
        own_test_set(tmp_path, load_dataset(data_copy, 32), [0])


def test_a_run_folder_without_its_splits_is_a_one_line_error(run_copy, capsys):
    (run_copy / "splits.csv").unlink()
    _fails([str(run_copy)], "splits.csv", capsys)


def test_an_interrupted_evaluation_leaves_no_folder_that_looks_finished(run_copy, monkeypatch, capsys):
    from brainmri import evaluation

    real = evaluation.write_evaluation_report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the predictions and misclassified lists were written

    monkeypatch.setattr(evaluation, "write_evaluation_report", interrupted)
    assert evaluate.main([str(run_copy)]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command" in err and "--resume" not in err  # evaluate.py has no --resume
    assert not list(run_copy.glob("evaluation*")) and not list(run_copy.glob(".evaluation*"))
    monkeypatch.setattr(evaluation, "write_evaluation_report", real)
    assert evaluate.main([str(run_copy)]) == 0
    assert [p.name for p in run_copy.glob("evaluation*")] == ["evaluation"]
    assert (run_copy / "evaluation" / "report.md").is_file()


def test_an_evaluation_written_inside_its_test_folder_is_refused(run_copy, tmp_path, capsys):
    """evaluation/ goes into the run folder: inside the test folder, its figures become test images."""
    _fails([str(run_copy), "--test-dir", str(run_copy.parent)], "inside the test folder", capsys)
    assert not list(run_copy.glob("evaluation*"))


def test_files_skipped_in_an_external_folder_are_counted_in_its_results(run_copy, kaggle_dir, tmp_path):
    external = tmp_path / "external"
    shutil.copytree(kaggle_dir / "Testing", external)
    (external / "glioma_tumor" / "text.png").write_text("not an image")
    (external / "glioma_tumor" / "notes.txt").write_text("not an image either")
    assert evaluate.main([str(run_copy), "--test-dir", str(external)]) == 0
    (folder,) = run_copy.glob("evaluation*/external")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["skipped_files"] == 2
    rows = list(csv.DictReader(open(folder / "skipped.csv")))
    assert sorted(r["path"] for r in rows) == ["glioma_tumor/notes.txt", "glioma_tumor/text.png"]
    assert "2 files skipped" in (folder.parent / "report.md").read_text()
