"""gradcam.py end to end on the tiny trained run: panels, grid, scores, misclassified, bad input."""

import json

import pytest

import evaluate
import gradcam


def test_maps_scores_and_deletion(run_copy):
    assert gradcam.main([str(run_copy), "--score", "--deletion", "--method", "gradcam++"]) == 0
    out = run_copy / "gradcam"
    assert (out / "grid.png").is_file() and (out / "deletion.png").is_file()
    assert len(list((out / "images").glob("*.png"))) >= 4
    scores = json.loads((out / "scores.json").read_text())
    assert scores["method"] == "gradcam++" and scores["layer"] == "relu3"
    if "localization" in scores:
        assert 0 <= scores["localization"]["pointing_game"] <= 1
    d = scores["deletion"]
    assert d["cam_curve"][0] == pytest.approx(d["random_curve"][0])  # nothing deleted yet: same model output
    assert gradcam.main([str(run_copy)]) == 0
    assert (run_copy / "gradcam-2" / "grid.png").is_file()  # never over an earlier result


def test_misclassified_after_evaluate(run_copy):
    assert gradcam.main([str(run_copy), "--misclassified"]) == 2  # evaluate.py has not run yet
    assert evaluate.main([str(run_copy)]) == 0
    wrong = (run_copy / "evaluation" / "test" / "misclassified.csv").read_text().strip().splitlines()[1:]
    if wrong:
        assert gradcam.main([str(run_copy), "--misclassified"]) == 0
        assert len(list((run_copy / "gradcam" / "images").glob("*.png"))) == min(len(wrong), 64)


def _fails(argv, message, capsys):
    assert gradcam.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_bad_input(run_copy, tmp_path, capsys):
    _fails([str(run_copy), "--layer", "nope"], "layer 'nope' is not a convolutional", capsys)
    _fails([str(run_copy), "--layer", "predictions"], "relu3", capsys)
    (tmp_path / "empty").mkdir()
    _fails([str(run_copy), str(tmp_path / "empty")], "no images to explain", capsys)
    (tmp_path / "notes.png").write_text("not an image")
    _fails([str(run_copy), str(tmp_path / "notes.png")], "no images to explain", capsys)
    _fails([str(run_copy), str(tmp_path / "missing.png")], "not found", capsys)
    _fails([str(run_copy), "--class", "astrocytoma"], "--class astrocytoma", capsys)
    _fails([str(tmp_path)], "is not a run folder", capsys)
    (run_copy / "config.yaml").write_text((run_copy / "config.yaml").read_text().replace("synthetic: true", "synthetic: false"))
    _fails([str(run_copy), "--score"], "--score needs lesion masks", capsys)
    assert not (run_copy / "gradcam").exists()  # every failure above came before any output
