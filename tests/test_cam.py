"""Grad-CAM: batched maps equal the per-image definition, nested backbones work, errors (any backend)."""

import keras
import numpy as np
import pytest

from brainmri import cam, models
from brainmri.errors import UserError
from brainmri.metrics import bootstrap_mean_ci


def _images(n=6, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3)).astype(np.uint8)


def _reference_gradcam(model, layer_name, image, class_index):
    """Grad-CAM of one image from its definition, with no gradient code: under a GAP -> Dense head the class
    logit's gradient is the same at every position (the Dense weight / h*w), so the map is relu(acts . w_c)."""
    acts = keras.Model(model.inputs, model.get_layer(layer_name).output).predict(image[None].astype("float32"),
                                                                                verbose=0)[0]
    heat = np.maximum(acts @ model.get_layer("predictions").get_weights()[0][:, class_index], 0)
    return heat / heat.max()


def test_batched_maps_equal_the_per_image_reference():
    keras.utils.set_random_seed(0)
    model = models.build_classifier("small_cnn", 48, 4, weights="none")
    cm = cam.split_model(model)
    images, classes = _images(), np.array([0, 1, 2, 3, 1, 2])
    maps, probs = cam.compute_maps(cam.make_cam_fn(cm), images, classes, batch_size=4)
    assert np.allclose(probs, model.predict(images.astype("float32"), verbose=0), atol=1e-5)
    for img, c, m in zip(images, classes, maps):
        assert np.allclose(m, _reference_gradcam(model, cm.layer, img, c), atol=1e-4)


def _nested_classifier(size=48):
    inner = models.build_backbone("small_cnn", size, "none")  # a whole Model used as one layer
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inner(inputs))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_nested_backbone_gives_real_maps(method):
    keras.utils.set_random_seed(1)
    model = _nested_classifier()
    cm = cam.split_model(model)
    assert cm.layer == "small_cnn/relu3"
    images = _images()
    fn = cam.make_cam_fn(cm, method)
    batched, probs = cam.compute_maps(fn, images, None, batch_size=6)
    one_by_one, _ = cam.compute_maps(fn, images, None, batch_size=1)
    assert np.allclose(batched, one_by_one, atol=1e-5)
    assert np.isfinite(batched).all() and batched.max() == pytest.approx(1.0) and batched.min() >= 0
    assert np.allclose(probs, model.predict(images.astype("float32"), verbose=0), atol=1e-5)


def test_every_project_backbone_and_a_sigmoid_head():
    for name in models.BACKBONES:
        model = models.build_classifier(name, 32, 4, weights="none")
        maps, _ = cam.compute_maps(cam.make_cam_fn(cam.split_model(model)), _images(2, 32), None)
        assert maps.ndim == 3 and np.isfinite(maps).all(), name
    base = models.build_backbone("small_cnn", 32, "none")
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    binary = keras.Model(base.input, keras.layers.Dense(1, activation="sigmoid")(x))
    maps, probs = cam.compute_maps(cam.make_cam_fn(cam.split_model(binary)), _images(3, 32), np.array([0, 1, 1]))
    assert probs.shape == (3, 2) and maps.shape[0] == 3  # a sigmoid as two classes: [no tumor, tumor]
    p_tumor = binary.predict(_images(3, 32).astype("float32"), verbose=0)[:, 0]
    assert np.allclose(probs[:, 1], p_tumor, atol=1e-5) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_layer_errors_list_the_candidates():
    model = models.build_classifier("small_cnn", 32, 4, weights="none")
    with pytest.raises(UserError, match="layer 'nope' is not a convolutional.*relu3"):
        cam.split_model(model, "nope")
    with pytest.raises(UserError, match="layer 'gap' is not a convolutional"):
        cam.split_model(model, "gap")
    assert cam.split_model(model, "conv1").layer == "conv1"


def test_scores_on_known_maps():
    maps = np.zeros((2, 10, 10))
    maps[0, 2, 2] = maps[1, 8, 8] = 1.0
    masks = np.zeros((2, 10, 10))
    masks[:, 1:4, 1:4] = 1
    assert cam.pointing_game(maps, masks, tolerance=0).tolist() == [True, False]
    assert cam.pointing_game(maps, masks, tolerance=8).tolist() == [True, True]  # (8,8) is 7.1 px from (3,3)
    assert cam.energy_share(maps, masks).tolist() == [1.0, 0.0]


def test_deletion_curve_drops_when_the_evidence_goes():
    images = np.full((1, 8, 8, 3), 200, np.uint8)

    def forward(x):  # "probability" = mean brightness of the top-left quarter
        p = x[:, :4, :4].mean((1, 2, 3)) / 200
        return np.stack([p, 1 - p], 1)

    good = np.zeros((1, 8, 8))
    good[0, :4, :4] = 1
    fr, curve_good = cam.deletion_scores(forward, images, good + 1e-3 * np.random.default_rng(0).random((1, 8, 8)), np.array([0]))
    _, curve_bad = cam.deletion_scores(forward, images, 1 - good, np.array([0]))
    assert cam.area(fr, curve_good) < cam.area(fr, curve_bad)


def _separate_squash(fused, squash):
    """`fused` (a Dense with softmax/sigmoid) rebuilt as a linear Dense with the same weights, then `squash`."""
    dense = fused.get_layer("predictions")
    linear = keras.layers.Dense(dense.units, name="logits")
    out = squash(linear(fused.get_layer("head_dropout").output))
    linear.set_weights(dense.get_weights())
    return keras.Model(fused.input, out)


@pytest.mark.parametrize("squash, binary", [(lambda: keras.layers.Activation("softmax"), False),
                                            (lambda: keras.layers.Softmax(), False),
                                            (lambda: keras.layers.Activation("sigmoid"), True)],
                         ids=["Activation-softmax", "Softmax-layer", "Activation-sigmoid"])
def test_a_softmax_or_sigmoid_in_its_own_layer_is_stripped_once(squash, binary):
    """Models not built here may squash in a separate layer: maps from logits, probabilities squashed once."""
    keras.utils.set_random_seed(2)
    fused = models.build_classifier("small_cnn", 32, 4, weights="none", binary=binary)
    separate = _separate_squash(fused, squash())
    images, classes = _images(6, 32), np.array([0, 1, 1, 0, 1, 0]) if binary else np.array([0, 1, 2, 3, 1, 2])
    x = images.astype("float32")
    assert np.allclose(separate.predict(x, verbose=0), fused.predict(x, verbose=0), atol=1e-6)
    for wanted in (None, classes):
        expected, _ = cam.compute_maps(cam.make_cam_fn(cam.split_model(fused)), images, wanted)
        maps, probs = cam.compute_maps(cam.make_cam_fn(cam.split_model(separate)), images, wanted)
        assert np.allclose(maps, expected, atol=1e-5)
        assert np.allclose(probs, models.class_probabilities(separate.predict(x, verbose=0)), atol=1e-5)


def test_a_classifier_nested_in_a_wrapper_or_a_sequential_gives_logit_maps():
    """The squashing layer found inside a nested model, or at the end of a Sequential, is stripped too."""
    keras.utils.set_random_seed(3)
    fused = models.build_classifier("small_cnn", 32, 4, weights="none")
    inputs = keras.Input((32, 32, 3))
    wrapped = keras.Model(inputs, fused(inputs))
    sequential = keras.Sequential([keras.Input((32, 32, 3)), _separate_squash(fused, keras.layers.Identity()),
                                   keras.layers.Softmax()])
    images = _images(4, 32)
    expected, _ = cam.compute_maps(cam.make_cam_fn(cam.split_model(fused)), images, None)
    for model in (wrapped, sequential):
        maps, probs = cam.compute_maps(cam.make_cam_fn(cam.split_model(model)), images, None)
        assert np.allclose(maps, expected, atol=1e-5)
        assert np.allclose(probs, model.predict(images.astype("float32"), verbose=0), atol=1e-5)


def test_a_softmax_layer_inside_a_nested_head_is_refused_by_name():
    keras.utils.set_random_seed(4)
    fused = models.build_classifier("small_cnn", 32, 4, weights="none")
    inner = _separate_squash(fused, keras.layers.Softmax(name="probs"))
    inputs = keras.Input((32, 32, 3))
    with pytest.raises(UserError, match="Softmax layer 'probs' inside the nested model"):
        cam.split_model(keras.Model(inputs, inner(inputs)))


def _square_masks(corners, size=12, side=3):
    masks = np.zeros((len(corners), size, size))
    for mask, (y, x) in zip(masks, corners):
        mask[y:y + side, x:x + side] = 1
    return masks


def test_a_map_at_the_class_prior_scores_as_the_location_prior_baseline():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 8)
    corners = [(1 + rng.integers(0, 3), 1 + rng.integers(0, 3)) if c == 0 else (7 + rng.integers(0, 3), 2)
               for c in labels]
    masks = _square_masks(corners)
    prior = cam.location_prior(masks, labels)
    hits = cam.pointing_with_baselines(prior, masks, labels, tolerance=1)
    assert hits["maps"].tolist() == hits["location_prior"].tolist() and hits["maps"].mean() > 0.5
    at_centre = np.zeros_like(masks)
    at_centre[:, 6, 6] = 1
    assert hits["centre"].tolist() == cam.pointing_game(at_centre, masks, 1).tolist()


def test_the_location_prior_never_sees_the_image_it_scores():
    masks = _square_masks([(0, 0), (0, 0), (8, 8)])  # a near-duplicate pair (one group), one lesion elsewhere
    labels = np.zeros(3, int)
    assert cam.pointing_game(cam.location_prior(masks, labels), masks, 0).tolist() == [True, True, False]
    by_group = cam.location_prior(masks, labels, groups=np.array([0, 0, 1]))
    assert cam.pointing_game(by_group, masks, 0).tolist() == [False, False, False]  # nor its copy
    assert np.array_equal(by_group[0], masks[2])


def test_bootstrap_interval_contains_the_estimate_and_resamples_groups():
    hits = np.repeat(np.random.default_rng(0).random(20) < 0.7, 3).astype(float)  # groups of three agree
    low, high = bootstrap_mean_ci(hits)
    assert low < hits.mean() < high
    g_low, g_high = bootstrap_mean_ci(hits, np.repeat(np.arange(20), 3))
    assert g_low < hits.mean() < g_high and g_high - g_low > 1.3 * (high - low)  # 20 independent units, not 60
    assert bootstrap_mean_ci(np.ones(4), np.zeros(4)) is None  # one group: no interval
