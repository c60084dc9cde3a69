import cv2
import numpy as np
import pytest

from brainmri.audit import audit
from brainmri.duplicates import group_images, groups_from_pairs, phash, phash_pairs
from brainmri.data import load_dataset
from brainmri.errors import UserError
from brainmri.splits import EXCLUDED, TEST, TRAIN, VAL, holdout, kfold, make_roles
from brainmri.synthetic import synth_image


def _distance(a, b):
    return bin(int(a) ^ int(b)).count("1")


def test_resized_and_recompressed_copies_are_near_duplicates():
    img, _ = synth_image(3, "glioma_tumor", "axial", 128)
    small = cv2.resize(img, (90, 90), interpolation=cv2.INTER_AREA)
    _, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    copy = cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)
    assert _distance(phash(img), phash(copy)) <= 4


def test_different_slices_are_not_near_duplicates():
    a, _ = synth_image(1, "meningioma_tumor", "axial", 128)
    b, _ = synth_image(2, "meningioma_tumor", "sagittal", 128)
    assert _distance(phash(a), phash(b)) > 4


def test_band_search_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 50, dtype=np.int64).astype(np.uint64)
    flips = [base[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
             for i, k in zip(range(50), rng.integers(0, 8, 50))]
    hashes = np.concatenate([base, np.array(flips, np.uint64)])
    for d in (0, 3, 6):
        brute = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                 if _distance(hashes[i], hashes[j]) <= d}
        assert set(map(tuple, phash_pairs(hashes, d).tolist())) == brute


def test_groups_join_exact_and_near_copies_transitively():
    h = np.array([0b0, 0b11, 0b1111, 2**40 - 1], np.uint64)  # 0-1 at 2 bits, 1-2 at 2 bits
    groups = groups_from_pairs(4, phash_pairs(h, 2), ["a", "b", "c", "a"])
    assert groups[0] == groups[1] == groups[2] == groups[3]  # 3 joins 0 by identical MD5
    assert len(set(groups_from_pairs(4, phash_pairs(h, 1), ["a", "b", "c", "d"]))) == 4


def test_audit_finds_copies_conflicts_and_testing_leaks(data_copy):
    src = data_copy / "Training" / "glioma_tumor" / "gl_0005.png"
    (data_copy / "Testing" / "glioma_tumor" / "leak.png").write_bytes(src.read_bytes())
    (data_copy / "Training" / "no_tumor" / "mislabeled.png").write_bytes(src.read_bytes())
    ds = load_dataset(data_copy, 48)
    groups, pairs, scores = group_images(ds)
    report = audit(ds, groups, pairs, scores)
    assert report["exact_duplicate_sets"] >= 1 and report["images_in_exact_duplicate_sets"] >= 3
    conflict_paths = {p for row in report["label_conflicts"] for p in (row["a"], row["b"])}
    assert "Training/no_tumor/mislabeled.png" in conflict_paths
    assert report["testing_with_near_duplicate_in_training"]["glioma_tumor"].startswith("1/")
    assert 0 <= report["shortcut"]["size_only_accuracy"] <= 1


def _grouped_labels(n_groups=60, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    labels = np.repeat(rng.integers(0, 4, n_groups), sizes)
    return labels, groups


def test_group_splits_never_split_a_group():
    labels, groups = _grouped_labels()
    test = holdout(labels, groups, 0.1, by_group=True, seed=1)
    assert not set(groups[test]) & set(groups[~test])
    fold_of = kfold(labels, groups, 5, by_group=True, seed=1)
    for g in set(groups):
        assert len(set(fold_of[groups == g])) == 1
    roles = make_roles(labels, groups, [""] * len(labels), "holdout", 5, 0.1, True, 1)
    for k in range(5):
        for a, b in ((TRAIN, VAL), (TRAIN, TEST), (VAL, TEST)):
            assert not set(groups[roles[:, k] == a]) & set(groups[roles[:, k] == b])


def test_random_split_does_split_groups():
    labels, groups = _grouped_labels()
    fold_of = kfold(labels, groups, 5, by_group=False, seed=1)
    assert any(len(set(fold_of[groups == g])) > 1 for g in set(groups))


def test_testing_folder_protocol_excludes_leaked_training_images():
    labels, groups = _grouped_labels()
    subsets = np.where(np.arange(len(labels)) % 7 == 0, "Testing", "Training")
    roles = make_roles(labels, groups, subsets, "testing_folder", 3, 0.1, True, 0)
    assert (roles[subsets == "Testing"] == TEST).all()
    test_groups = set(groups[subsets == "Testing"])
    excluded = roles[:, 0] == EXCLUDED
    assert excluded.any() and all(g in test_groups for g in groups[excluded])
    random_roles = make_roles(labels, groups, subsets, "testing_folder", 3, 0.1, False, 0)
    assert not (random_roles == EXCLUDED).any()


def test_too_few_images_for_the_folds():
    with pytest.raises(UserError, match="too few for 5 folds"):
        kfold(np.array([0, 0, 0, 1, 1, 1, 1, 1]), np.arange(8), 5, by_group=False, seed=0)


def test_too_few_images_for_the_holdout():
    labels = np.repeat([0, 1, 2, 3], 8)
    with pytest.raises(UserError, match="too few for a stratified test split"):
        holdout(labels, np.arange(len(labels)), 0.1, by_group=True, seed=0)


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.25, 0.4])
def test_group_holdout_hits_the_requested_fraction(fraction):
    """Whole groups only, and per class within half the largest group (2 images) of the requested share."""
    labels, groups = _grouped_labels(n_groups=400, seed=3)
    for seed in (0, 1, 2):
        test = holdout(labels, groups, fraction, by_group=True, seed=seed)
        assert not set(groups[test]) & set(groups[~test])
        for c in range(4):
            assert abs(test[labels == c].sum() - fraction * (labels == c).sum()) <= 2, (seed, c)
        assert abs(test.mean() - fraction) <= 0.005, seed


def test_prepare_reports_the_test_fraction_it_got(kaggle_dir, tmp_path, caplog):
    import csv
    import json
    import logging

    from brainmri.config import load_config
    from brainmri.pipeline import prepare_data

    cfg = load_config(None, [f"data_dir={kaggle_dir}", "image_size=32", f"cache_dir={tmp_path / 'c'}",
                             "folds=3", "test_fraction=0.15"])
    with caplog.at_level(logging.INFO, logger="brainmri"):
        prepare_data(cfg, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "splits.csv")))
    actual = sum(r["fold0"] == "test" for r in rows) / len(rows)
    split = json.loads((tmp_path / "audit.json").read_text())["test_split"]
    assert split["requested_fraction"] == 0.15 and split["actual_fraction"] == round(actual, 4)
    assert f"{actual:.3f} of the images (test_fraction 0.15 requested)" in caplog.text


def test_a_protocol_that_leaves_a_class_without_training_or_test_images_is_refused():
    from brainmri.splits import check_every_class

    labels = np.repeat(np.arange(4), 10)
    planes = np.where(labels < 2, np.tile(["axial"] * 6 + ["coronal"] * 4, 4), "")  # classes 2, 3: no plane known
    roles = make_roles(labels, np.arange(40), [""] * 40, "planes", 2, 0.1, True, 0, planes, ("axial",), ("coronal",))
    classes = ("glioma", "meningioma", "no_tumor", "pituitary")
    with pytest.raises(UserError, match="class no_tumor has no training image .*protocol planes"):
        check_every_class(roles, labels, classes, "planes")
    fine = make_roles(labels, np.arange(40), [""] * 40, "holdout", 2, 0.2, True, 0)
    check_every_class(fine, labels, classes, "holdout")
    test_only = fine.copy()
    test_only[(labels == 3) & (fine[:, 0] == TEST)] = EXCLUDED
    with pytest.raises(UserError, match="class pituitary has no test image"):
        check_every_class(test_only, labels, classes, "holdout")
    check_every_class(make_roles(labels, np.arange(40), [""] * 40, "all", 2, 0.1, True, 0), labels, classes, "all")
