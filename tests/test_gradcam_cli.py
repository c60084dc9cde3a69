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


def _undecided_sigmoid_model(folder, p_tumor=0.4):
    """A saved tumor-vs-no-tumor model that gives every image P(tumor) near `p_tumor`, with classes.json."""
    import keras
    import numpy as np

    from brainmri import models

    keras.utils.set_random_seed(0)
    base = models.build_backbone("small_cnn", 32, "none")
    head = keras.layers.Dense(1, activation="sigmoid", name="predictions")
    model = keras.Model(base.input, head(keras.layers.GlobalAveragePooling2D(name="gap")(base.output)))
    kernel = np.random.default_rng(0).normal(0, 1e-3, (96, 1))  # tiny: every image near the bias, maps still differ
    head.set_weights([kernel, np.array([np.log(p_tumor / (1 - p_tumor))])])
    model.save(folder / "binary.keras")
    (folder / "classes.json").write_text(json.dumps(["no_tumor", "tumor"]))
    return model


def test_threshold_without_class_explains_the_class_it_captions(tmp_path, monkeypatch):
    """P(tumor) 0.4 at --threshold 0.3 is called tumor: the map must be the map of 'tumor', not of the 0.5 call."""
    import cv2
    import numpy as np

    from brainmri import cam, plots

    model = _undecided_sigmoid_model(tmp_path)
    (tmp_path / "images").mkdir()
    for i, img in enumerate(np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), img)
    panels = []
    monkeypatch.setattr(plots, "cam_panel",
                        lambda image, heats, titles, path, **kw: panels.append((image, heats, titles)))
    assert gradcam.main([str(tmp_path / "binary.keras"), str(tmp_path / "images"), "--threshold", "0.3"]) == 0
    fn = cam.make_cam_fn(cam.split_model(model))
    images = np.stack([image for image, _, _ in panels])
    tumor_maps = cam.upsample(cam.compute_maps(fn, images, np.ones(len(images)))[0], 32)
    for (_, heats, titles), expected in zip(panels, tumor_maps):
        assert titles[0].startswith("tumor (p 0.4")
        assert np.allclose(heats[0], expected, atol=1e-5)


def test_pointing_game_is_reported_beside_its_baselines(run_copy, capsys):
    """Without baselines 0.85 means little: a per-class location prior and the image centre, with 95% CIs."""
    assert gradcam.main([str(run_copy), "--score"]) == 0
    loc = json.loads((run_copy / "gradcam" / "scores.json").read_text())["localization"]
    assert loc["tolerance_fraction"] == pytest.approx(loc["tolerance_px"] / 32)
    assert loc["bootstrap"]["resampled"] == "groups"  # the run's splits.csv has them
    for score in (loc, loc["baselines"]["location_prior"], loc["baselines"]["centre"]):
        ci = score["pointing_game_ci95"]  # the tiny run may score one near-duplicate pair only: no interval
        assert (ci is None) == (loc["bootstrap"]["units"] == 1)
        assert ci is None or 0 <= ci[0] <= score["pointing_game"] <= ci[1] <= 1
    line = [s for s in capsys.readouterr().out.splitlines() if "pointing game" in s][-1]
    assert "location prior" in line and "centre" in line and f"{loc['tolerance_px']} px" in line, line


def test_predictions_and_maps_are_batched_by_the_runs_batch_size(run_copy, monkeypatch):
    """One knob: the run's batch_size (16 in the tiny run), not a fixed 32, for evaluate.py and gradcam.py."""
    from brainmri import backend, cam

    seen, predict, compute_maps = [], backend.predict, cam.compute_maps

    def recording_predict(model, images, batch_size):
        seen.append(batch_size)
        return predict(model, images, batch_size)

    def recording_maps(fn, images, classes, batch_size=32, progress=False):
        seen.append(batch_size)
        return compute_maps(fn, images, classes, batch_size, progress)

    monkeypatch.setattr(backend, "predict", recording_predict)
    monkeypatch.setattr(cam, "compute_maps", recording_maps)
    assert evaluate.main([str(run_copy)]) == 0
    assert gradcam.main([str(run_copy), "--limit", "4"]) == 0
    assert len(seen) >= 3 and set(seen) == {16}


def test_an_incomplete_run_folder_or_a_negative_limit_is_a_one_line_error(run_copy, capsys):
    _fails([str(run_copy), "--limit", "-1"], "--limit", capsys)  # rows[:-1] dropped the last image
    (run_copy / "classes.json").unlink()
    _fails([str(run_copy)], "classes.json cannot be read", capsys)
    assert evaluate.main([str(run_copy)]) == 2
    assert "classes.json cannot be read" in capsys.readouterr().err


def test_an_interrupted_gradcam_leaves_no_folder_that_looks_finished(run_copy, monkeypatch):
    from brainmri import explain

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain.plots, "cam_grid", interrupted)
    assert gradcam.main([str(run_copy), "--limit", "2"]) == 130
    assert not list(run_copy.glob("gradcam*")) and not list(run_copy.glob(".gradcam*"))
