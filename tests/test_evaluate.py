"""evaluate.py end to end on a tiny trained run: files, numbers recomputed from predictions.csv, bad input."""

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

import evaluate
from brainmri.evaluation import calibration, read_predictions

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
            assert report["macro avg"]["f1-score"] == pytest.approx(f1.mean())
            assert [report[c]["support"] for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")] == list(support)
        summary = json.loads((ev / test_set / "summary.json").read_text())
        ens = preds["ensemble"]
        assert np.allclose(ens["probs"], (preds["fold0"]["probs"] + preds["fold1"]["probs"]) / 2, atol=2e-6)
        assert summary["accuracy"] == pytest.approx(accuracy_score(ens["labels"], ens["pred"]))
        assert summary["macro_f1"] == pytest.approx(f1_score(ens["labels"], ens["pred"], average="macro", labels=range(4), zero_division=0))
        assert summary["mean_fold_accuracy"] == pytest.approx(np.mean([accuracy_score(preds[f]["labels"], preds[f]["pred"]) for f in ("fold0", "fold1")]))
        assert summary["ece"] == pytest.approx(calibration(ens["labels"], ens["probs"])["ece"], abs=1e-5)
        lo, hi = summary["accuracy_ci95"]
        assert lo <= summary["accuracy"] <= hi
        dup = ens["dup"].astype(bool)
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


def test_bad_input(run_copy, tmp_path, kaggle_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([str(run_copy), "--test-dir", str(empty)], "no class folders", capsys)
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
    from brainmri.evaluation import predict
    from brainmri.models import build_classifier

    model = build_classifier("small_cnn", 32, 4, weights="none")
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    plain = predict(model, images, 4)
    mirrored = predict(model, images[:, :, ::-1].copy(), 4)
    assert np.allclose(predict(model, images, 4, tta=True), (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the mirror really is a different input
