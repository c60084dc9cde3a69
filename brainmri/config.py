"""The run configuration: defaults < YAML file < command-line overrides, strictly typed."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path, PureWindowsPath

import yaml

from .atomic import write_atomic
from .errors import UserError
from .paths import is_within

STUDY_CLASSES = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
PLANES = ("axial", "sagittal", "coronal")  # slice planes (brainmri.planes)
PLAN_KEYS = {"base", "set", "reference", "variants"}  # a comparison plan (configs/plans/), not a run config


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; the defaults reproduce the course study."""

    experiment: str = "study"  # outputs/<experiment>/<run>
    output_dir: str = "outputs"
    data_dir: str = "data"  # Kaggle layout (Training/, Testing/) or flat class folders
    synthetic: bool = False  # generate the synthetic MRI-like demo set instead of reading data_dir
    synthetic_per_class: int = 150  # images per class per plane group for the demo set
    subset_fraction: float = 1.0  # <1: a stratified, seeded share of the images (quick checks, scaling)
    classes: tuple = STUDY_CLASSES  # fixed class order; empty means "the folders' names, sorted"
    image_size: int = 150  # the study's 150x150 input
    backbone: str = "efficientnetb0"
    weights: str = "imagenet"  # imagenet | none | path to a local weights file
    dropout: float = 0.5
    train_backbone: bool = True  # the study trains every layer (4,012,672 trainable params); false: head only
    unfreeze: str = "all"  # which backbone layers train: all | top:N | from:LAYER (BatchNorm then stays frozen)
    fine_tune_epochs: int = 0  # >0: `epochs` with the backbone frozen (head only), then this many with
    fine_tune_learning_rate: float = 1e-4  # the `unfreeze` part trainable at this rate, BatchNorm frozen
    task: str = "multiclass"  # multiclass: the classes | binary: tumor (any other class) vs negative_class
    negative_class: str = "auto"  # binary task: the "no tumor" folder; auto: no_tumor, no, normal, ...
    optimizer: str = "adam"  # adam | sgd
    learning_rate: float = 0.001
    momentum: float = 0.9  # sgd only
    epochs: int = 12
    batch_size: int = 32
    lr_factor: float = 0.3  # ReduceLROnPlateau on val_accuracy, as in the study
    lr_patience: int = 2
    # on-the-fly augmentation of training batches (Keras preprocessing layers; 0 / none = off)
    augment_rotation: float = 0.0  # degrees, drawn in [-r, r]
    augment_shift: float = 0.0  # fraction of the image side, in x and y
    augment_zoom: float = 0.0  # fraction, drawn in [-z, z]
    augment_flip: str = "none"  # none | horizontal | vertical | both
    augment_contrast: float = 0.0  # fraction, drawn in [-c, c]
    class_weight: str = "none"  # none | balanced: loss weights inversely proportional to class counts
    protocol: str = "holdout"  # holdout: merged, 90/10 | testing_folder: Training vs Testing | planes: see below
    #                            | all: every image in the CV, no test split (test on an external folder)
    planes_file: str = ""  # path,plane CSV; empty: <data folder>/planes.csv when it exists
    train_planes: tuple = ("axial",)  # protocol planes: train (CV) on these planes ...
    test_planes: tuple = ("sagittal", "coronal")  # ... and test on these (the study's axial-only experiment)
    test_fraction: float = 0.1
    folds: int = 5
    split: str = "group"  # group: near-duplicate-aware | random: the study's plain split
    near_duplicate_method: str = "robust"  # robust: canonical slices + verified correlation | phash: the old one
    near_duplicate_threshold: float = 0.72  # robust: verified score for "same or adjacent slice" (pair benchmark)
    hash_distance: int = 4  # phash only: max Hamming distance (of 64 bits)
    seed: int = 42
    mixed_precision: str = "auto"  # auto (on with a GPU) | on | off
    jit_compile: str = "auto"  # auto (on with a GPU) | on | off
    cache_dir: str = ".cache"  # decoded images, near-duplicate pairs, JAX's compiled programs (jax/); "": none
    figure_formats: tuple = ("png",)  # add "pdf" (or "svg") for vector figures in a paper

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


CHOICES = {
    "optimizer": ("adam", "sgd"),
    "protocol": ("holdout", "testing_folder", "planes", "all"),
    "augment_flip": ("none", "horizontal", "vertical", "both"),
    "class_weight": ("none", "balanced"),
    "task": ("multiclass", "binary"),
    "split": ("group", "random"),
    "near_duplicate_method": ("robust", "phash"),
    "mixed_precision": ("auto", "on", "off"),
    "jit_compile": ("auto", "on", "off"),
}


def validate(cfg: Config) -> None:
    """Reject values that are of the right type but make no sense, naming the key."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"config key '{key}': {getattr(cfg, key)!r} is not one of {', '.join(allowed)}")
    positive = ("image_size", "epochs", "batch_size", "synthetic_per_class")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise UserError(f"config key '{key}' must be at least 1, got {getattr(cfg, key)}")
    if cfg.image_size < 32:
        raise UserError(f"config key 'image_size' must be at least 32, got {cfg.image_size}")
    bad = sorted(set(cfg.figure_formats) - {"png", "pdf", "svg"})
    if bad or not cfg.figure_formats:
        raise UserError(f"config key 'figure_formats' takes png, pdf and svg, got {list(cfg.figure_formats)}")
    if cfg.folds < 2:
        raise UserError(f"config key 'folds' must be at least 2, got {cfg.folds}")
    if not 0.0 < cfg.test_fraction < 0.5:
        raise UserError(f"config key 'test_fraction' must be in (0, 0.5), got {cfg.test_fraction}")
    if not 0.0 < cfg.subset_fraction <= 1.0:
        raise UserError(f"config key 'subset_fraction' must be in (0, 1], got {cfg.subset_fraction}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise UserError(f"config key 'dropout' must be in [0, 1), got {cfg.dropout}")
    _validate_training(cfg)
    for key in ("augment_rotation", "augment_shift", "augment_zoom", "augment_contrast"):
        if not 0.0 <= getattr(cfg, key) <= (180.0 if key == "augment_rotation" else 1.0):
            raise UserError(f"config key '{key}' is out of range: {getattr(cfg, key)}")
    _validate_schedule_and_data(cfg)


def _validate_training(cfg: Config) -> None:
    """validate(), continued: the optimiser and its schedule, the seed, the class list, where the run goes
    (the checks are written so that NaN fails them too)."""
    for key in ("learning_rate", "fine_tune_learning_rate"):
        if not 0.0 < getattr(cfg, key) < float("inf"):
            raise UserError(f"config key '{key}' must be a positive number, got {getattr(cfg, key)}")
    if not 0.0 < cfg.lr_factor < 1.0:
        raise UserError(f"config key 'lr_factor' must be in (0, 1): the learning rate is multiplied by it, got "
                        f"{cfg.lr_factor}")
    if not 0.0 <= cfg.momentum < 1.0:
        raise UserError(f"config key 'momentum' must be in [0, 1), got {cfg.momentum}")
    if cfg.lr_patience < 0:
        raise UserError(f"config key 'lr_patience' must be at least 0, got {cfg.lr_patience}")
    if not 0 <= cfg.seed < 2 ** 32:
        raise UserError(f"config key 'seed' must be in [0, 2**32), got {cfg.seed}")
    twice = sorted({c for c in cfg.classes if cfg.classes.count(c) > 1})
    if twice:
        raise UserError(f"config key 'classes' names {', '.join(twice)} more than once")
    if not cfg.synthetic and is_within(cfg.output_dir, cfg.data_dir):
        raise UserError(f"config key 'output_dir' ({cfg.output_dir}) lies inside the data folder ({cfg.data_dir}): "
                        "runs must not write into the data (in a flat layout the run folder became a class)")
    name = PureWindowsPath(cfg.experiment)  # reads / and \ as separators, and sees a drive (C:)
    if not cfg.experiment or name.is_absolute() or name.drive or name.root or ".." in name.parts:
        raise UserError(f"config key 'experiment' must be a folder name inside output_dir (ablation/lr is fine), "
                        f"not a path out of it: got {cfg.experiment!r}")


def _validate_schedule_and_data(cfg: Config) -> None:
    """validate(), continued: planes, fine-tuning, unfreezing and the near-duplicate settings."""
    if cfg.protocol == "planes":
        bad = sorted(set(cfg.train_planes + cfg.test_planes) - set(PLANES))
        if bad or not cfg.train_planes or not cfg.test_planes or set(cfg.train_planes) & set(cfg.test_planes):
            raise UserError(f"config keys 'train_planes' and 'test_planes' must be disjoint, non-empty lists of "
                            f"{', '.join(PLANES)}; got {list(cfg.train_planes)} and {list(cfg.test_planes)}")
    if cfg.fine_tune_epochs < 0:
        raise UserError(f"config key 'fine_tune_epochs' must be at least 0, got {cfg.fine_tune_epochs}")
    if cfg.fine_tune_epochs and not cfg.train_backbone:
        raise UserError("config key 'fine_tune_epochs' unfreezes the backbone: it needs train_backbone: true")
    check_unfreeze(cfg.unfreeze)
    if not 0.0 < cfg.near_duplicate_threshold <= 1.0:
        raise UserError(f"config key 'near_duplicate_threshold' must be in (0, 1], got {cfg.near_duplicate_threshold}")
    if not 0 <= cfg.hash_distance <= 16:
        raise UserError(f"config key 'hash_distance' must be in [0, 16], got {cfg.hash_distance}")


def check_unfreeze(unfreeze: str) -> None:
    kind, _, arg = unfreeze.partition(":")
    if not (unfreeze == "all" or (kind == "top" and arg.isdigit() and int(arg) > 0) or (kind == "from" and arg)):
        raise UserError(f"config key 'unfreeze' takes all, top:N or from:LAYER_NAME, got {unfreeze!r}")


def _field_types() -> dict:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _coerce(key: str, value, expected):
    """Return `value` as the field's type, or raise a UserError naming the key."""
    if expected is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise UserError(f"config key '{key}' must be a list of names, got {value!r}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and value is None:
        return "none"
    if expected is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a name YAML reads as a number: experiment: 2024
    if key == "negative_class" and isinstance(value, bool):
        return "yes" if value else "no"  # YAML 1.1 reads the folder names of a yes/no dataset as booleans
    if isinstance(value, bool) and {"on", "off"} <= set(CHOICES.get(key, ())):
        return "on" if value else "off"  # YAML 1.1 reads on/off/yes/no/true/false as booleans
    if type(value) is not expected:
        raise UserError(f"config key '{key}' must be {expected.__name__}, got {value!r} ({type(value).__name__})")
    return value


def merge(base: Config, updates: dict, source: str) -> Config:
    """Apply `updates` to `base`; unknown keys and wrong types fail with the key's name."""
    types = _field_types()
    values = {}
    for key, value in updates.items():
        if key not in types:
            raise UserError(f"unknown config key '{key}' in {source} (known keys: {', '.join(sorted(types))})")
        values[key] = _coerce(key, value, types[key])
    return dataclasses.replace(base, **values)


class _NoDuplicateKeys(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (it keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()  # the mapping's own keys: those a merge key (<<: *base) brings may be overridden
            for key_node, _ in [item for item in node.value if item[0].tag != "tag:yaml.org,2002:merge"]:
                key = self.construct_object(key_node, deep=deep)
                try:
                    twice = key in seen
                    seen.add(key)
                except TypeError:  # a list or mapping as a key
                    raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, not a {type(key).__name__}",
                                                            key_node.start_mark) from None
                if twice:
                    raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_NoDuplicateKeys) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of key: value")
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ["epochs=3", "weights=none"] into {"epochs": 3, "weights": "none"} (values read as YAML)."""
    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"override {pair!r} must look like key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then key=value overrides from the command line."""
    cfg = Config()
    if path:
        data = read_yaml(path)
        if "variants" in data:
            raise UserError(f"{path} is a comparison plan, not a run config: run it with "
                            f"python compare_backbones.py --config {path}")
        cfg = merge(cfg, data, str(path))
    return merge(cfg, parse_overrides(overrides), "command-line overrides")


def save_config(cfg: Config, path: Path) -> None:
    """Written whole or not at all: a fold job starting beside another reads it to compare configs."""
    write_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
