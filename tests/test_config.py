from pathlib import Path

import pytest

from brainmri.config import STUDY_CLASSES, Config, load_config, parse_overrides, read_yaml
from brainmri.errors import UserError


def test_defaults_are_the_study():
    cfg = Config()
    assert (cfg.backbone, cfg.weights, cfg.image_size, cfg.epochs, cfg.batch_size) == ("efficientnetb0", "imagenet", 150, 12, 32)
    assert (cfg.optimizer, cfg.dropout, cfg.folds, cfg.test_fraction, cfg.lr_factor, cfg.lr_patience) == ("adam", 0.5, 5, 0.1, 0.3, 2)
    assert cfg.classes == STUDY_CLASSES


def test_repo_configs_load():
    for name in ("default", "sgd", "demo", "cpu-reference", "cpu-quick", "binary"):
        load_config(f"configs/{name}.yaml")
    assert load_config("configs/default.yaml") == Config(experiment="study")
    assert load_config("configs/sgd.yaml").optimizer == "sgd"


def test_comparison_plans_live_in_their_own_folder_and_load():
    from brainmri.compare import load_plan

    plans = sorted(Path("configs/plans").glob("*.yaml"))
    assert {p.stem for p in plans} == {"backbones", "backbones-cpu", "optimizers", "remedies"}
    for path in plans:
        configs, reference = load_plan(path)
        assert reference in configs and len(configs) >= 2, path


def test_a_plan_given_as_a_run_config_points_to_compare_backbones():
    with pytest.raises(UserError, match="comparison plan.*python compare_backbones.py --config configs/plans/"):
        load_config("configs/plans/optimizers.yaml")


def test_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlearning_rate: 1\nweights: none\n")
    cfg = load_config(path, ["epochs=5", "split=random"])
    assert (cfg.epochs, cfg.learning_rate, cfg.weights, cfg.split) == (5, 1.0, "none", "random")


@pytest.mark.parametrize("text, key", [
    ("epoch: 3\n", "epoch"),           # unknown key
    ("epochs: three\n", "epochs"),     # wrong type
    ("dropout: true\n", "dropout"),    # bool is not a float
    ("optimizer: rmsprop\n", "optimizer"),
    ("folds: 1\n", "folds"),
    ("classes: glioma\n", "classes"),
    ("classes: [a, b, a]\n", "classes"),         # a class twice: its images loaded twice, two outputs
    ("learning_rate: -0.001\n", "learning_rate"),  # gradient ascent
    ("learning_rate: .nan\n", "learning_rate"),
    ("fine_tune_learning_rate: 0\n", "fine_tune_learning_rate"),
    ("lr_factor: 0\n", "lr_factor"),
    ("lr_factor: 2\n", "lr_factor"),
    ("momentum: 5\n", "momentum"),
    ("lr_patience: -1\n", "lr_patience"),
    ("seed: -1\n", "seed"),
    ("experiment: ../../elsewhere\n", "experiment"),  # outside output_dir
    ("experiment: /tmp/elsewhere\n", "experiment"),
    ("experiment: 'C:elsewhere'\n", "experiment"),
    ("epochs: 1\nepochs: 50\n", "epochs"),      # a key given twice: which one was meant?
])
def test_bad_keys_name_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=f"'{key}'"):
        load_config(path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: [3\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_syntax():
    assert parse_overrides(["weights=/a/b.h5", "epochs=2"]) == {"weights": "/a/b.h5", "epochs": 2}
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["epochs"])


def test_fine_tuning_needs_a_trainable_backbone():
    with pytest.raises(UserError, match="fine_tune_epochs"):
        load_config(None, ["fine_tune_epochs=2", "train_backbone=false"])
    with pytest.raises(UserError, match="unfreeze"):
        load_config(None, ["unfreeze=half"])


@pytest.mark.parametrize("raw, expected", [
    ("on", "on"), ("off", "off"), ("true", "on"), ("false", "off"), ("yes", "on"), ("no", "off"), ("auto", "auto"),
])
def test_on_off_keys_accept_yaml_booleans(tmp_path, raw, expected):
    """YAML reads on/off/yes/no/true/false as booleans; jit_compile and mixed_precision take them as on/off."""
    cfg = load_config(None, [f"jit_compile={raw}", f"mixed_precision={raw}"])
    assert (cfg.jit_compile, cfg.mixed_precision) == (expected, expected)
    path = tmp_path / "c.yaml"
    path.write_text(f"jit_compile: {raw}\nmixed_precision: {raw}\n")
    cfg = load_config(path)
    assert (cfg.jit_compile, cfg.mixed_precision) == (expected, expected)


def test_booleans_stay_wrong_for_other_string_keys():
    with pytest.raises(UserError, match="'optimizer'"):
        load_config(None, ["optimizer=on"])


def test_names_that_yaml_reads_as_numbers_or_booleans_stay_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: 2024\nnegative_class: no\n")  # a folder named no/ (the yes/no dataset)
    cfg = load_config(path)
    assert (cfg.experiment, cfg.negative_class) == ("2024", "no")


def test_an_output_folder_inside_the_data_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="'output_dir'.*inside the data folder"):
        load_config(None, [f"data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'data' / 'runs'}"])
    with pytest.raises(UserError, match="'output_dir'"):
        load_config(None, [f"data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'data'}"])
    load_config(None, [f"data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'data-runs'}"])
    load_config(None, [f"data_dir={tmp_path}", f"output_dir={tmp_path / 'out'}", "synthetic=true"])  # no data read


def test_yaml_merge_keys_still_work_and_a_list_as_a_key_is_a_one_line_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("shared: &base {epochs: 3}\n")
    assert read_yaml(path) == {"shared": {"epochs": 3}}
    path.write_text("x: &base {epochs: 3, seed: 1}\ny:\n  <<: *base\n  epochs: 5\n")
    assert read_yaml(path)["y"] == {"epochs": 5, "seed": 1}  # a merged key may be overridden
    path.write_text("[1]: 2\n")
    with pytest.raises(UserError, match="not valid YAML: a key must be a name"):
        read_yaml(path)


def test_a_nested_experiment_name_stays_inside_output_dir_and_is_accepted():
    assert load_config(None, ["experiment=ablation/lr"]).experiment == "ablation/lr"
