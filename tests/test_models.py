import keras
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from brainmri import models
from brainmri.errors import UserError
from brainmri.models import MacroMetric


def test_study_model_has_the_published_trainable_parameters():
    model = models.build_classifier("efficientnetb0", 150, 4, weights="none")
    assert models.count_params(model)["trainable"] == 4_012_672


def test_efficientnetb2_parameters():
    model = models.build_classifier("efficientnetb2", 64, 4, weights="none")
    assert models.count_params(model)["trainable"] == 7_706_630


def test_frozen_vgg16_trains_only_the_head():
    model = models.build_classifier("vgg16", 32, 4, weights="none", train_backbone=False)
    assert models.count_params(model)["trainable"] == 512 * 4 + 4


@pytest.mark.parametrize("name", list(models.BACKBONES))
def test_every_backbone_normalises_raw_pixels_itself(name):
    """The pipeline feeds 0-255; each model must rescale inside, or accuracy silently collapses."""
    backbone = models.build_backbone(name, 32, "none")
    kinds = {type(layer).__name__ for layer in _all_layers(backbone)}
    assert kinds & {"Rescaling", "CaffePreprocess"}, kinds
    model = models.build_classifier(name, 32, 4, weights="none")
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"), verbose=0)
    assert out.shape == (2, 4) and np.allclose(out.sum(1), 1, atol=1e-4)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def test_caffe_preprocess_matches_keras():
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(models.CaffePreprocess()(x))
    assert np.allclose(ours, keras.applications.vgg16.preprocess_input(x.copy()), atol=1e-4)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown backbone 'resnet9'.*efficientnetb0.*vgg16"):
        models.build_backbone("resnet9", 32, "none")


def test_local_weights_file(tmp_path):
    source = models.build_backbone("efficientnetb0", 32, "none")
    path = tmp_path / "b0_notop.weights.h5"
    source.save_weights(path)
    loaded = models.build_backbone("efficientnetb0", 32, str(path))
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights()))
    with pytest.raises(UserError, match="weights file not found"):
        models.build_backbone("efficientnetb0", 32, str(tmp_path / "missing.h5"))


EFFICIENTNETS = {"efficientnetb0": keras.applications.EfficientNetB0,
                 "efficientnetb2": keras.applications.EfficientNetB2,
                 "efficientnetv2b0": keras.applications.EfficientNetV2B0}


def _imagenet_route(monkeypatch, name, weights_file):
    """Keras' own weights="imagenet" backbone, its download faked to hand over `weights_file` (no network)."""
    import keras.src.utils.file_utils as file_utils

    with monkeypatch.context() as patch:
        patch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(weights_file))
        return EFFICIENTNETS[name](include_top=False, weights="imagenet", input_shape=(32, 32, 3))


def _notop_file(name, folder):
    """An ImageNet-like notop.h5 (Keras 2 format, as Keras publishes it): random weights, ImageNet input statistics."""
    from keras.src.legacy.saving import legacy_h5_format
    import h5py

    keras.utils.set_random_seed(0)
    model = EFFICIENTNETS[name](include_top=False, weights=None, input_shape=(32, 32, 3))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.weights:  # V1 learns its statistics
            layer.set_weights([np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]) ** 2, np.array(0)])
    path = folder / f"{name}_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _graph(model):
    return [(type(layer).__name__, layer.get_config()) for layer in model.layers]


@pytest.mark.parametrize("name", list(EFFICIENTNETS))
def test_a_local_imagenet_file_builds_the_imagenet_graph(name, tmp_path, monkeypatch):
    """weights=/path/notop.h5 (the offline route) must scale inputs as weights=imagenet does (B0 lacked a Rescaling)."""
    path = _notop_file(name, tmp_path)
    keras.backend.clear_session()  # auto-generated layer names restart, so both graphs name alike
    reference = _imagenet_route(monkeypatch, name, path)
    keras.backend.clear_session()
    ours = models.build_backbone(name, 32, str(path))
    assert _graph(ours) == _graph(reference)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert np.allclose(ours.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-5)


def test_offline_imagenet_download_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example/efficientnetb0_notop.h5: None -- no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.efficientnet.file_utils.get_file", offline)
    with pytest.raises(UserError, match="could not download ImageNet weights.*weights=none"):
        models.build_backbone("efficientnetb0", 32, "imagenet")


def test_small_cnn_refuses_imagenet():
    with pytest.raises(UserError, match="small_cnn.*weights: none"):
        models.build_backbone("small_cnn", 32, "imagenet")


def test_macro_metric_matches_scikit_learn():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    pred = probs.argmax(1)
    expected = precision_recall_fscore_support(true, pred, average="macro", zero_division=0)[:3]
    for kind, value in zip(("precision", "recall", "f1"), expected):
        metric = MacroMetric(4, kind)
        for chunk in np.array_split(np.arange(200), 3):  # accumulates over batches
            metric.update_state(np.eye(4)[true[chunk]], probs[chunk])
        assert float(metric.result()) == pytest.approx(value, abs=1e-5), kind
