"""augment.py and its package modules (balance, manifest): offline balancing, the manifest, no leak through copies,
bad input."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import augment
from brainmri import balance
from brainmri.config import load_config
from brainmri.errors import UserError
from brainmri.pipeline import prepare_data


def tree_digest(root: Path) -> str:
    """One checksum over every file's relative path and bytes."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _balance(data, out, *extra):
    return augment.main([str(data), "--out", str(out), "--class", "no_tumor", "--target", "30", *extra])


def test_balances_the_class_and_leaves_the_input_alone(kaggle_dir, tmp_path):
    before = tree_digest(kaggle_dir)
    assert _balance(kaggle_dir, tmp_path / "bal") == 0
    assert tree_digest(kaggle_dir) == before
    out = tmp_path / "bal"
    summary = json.loads((out / "augment_summary.json").read_text())
    assert summary["before"]["no_tumor"] == 17 and summary["after"]["no_tumor"] == 30
    assert summary["after"]["glioma_tumor"] == summary["before"]["glioma_tumor"]
    assert len(list((out / "Training" / "no_tumor").glob("aug*.png"))) == 13
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    copies = [r for r in rows if r["kind"] == "augmented"]
    assert len(copies) == 13 and all((out / r["source"]).is_file() for r in copies)
    assert all(r["source"].startswith("Training/no_tumor/") for r in copies)  # never a Testing image
    assert {json.dumps(t, sort_keys=True) for t in balance.STUDY_TRANSFORMS} >= {r["transform"] for r in copies}
    originals = [r["path"] for r in rows if r["kind"] == "original"]
    assert all((out / p).read_bytes() == (kaggle_dir / p).read_bytes() for p in originals)
    planes = dict(csv.reader(open(out / "planes.csv")))
    src_planes = dict(csv.reader(open(kaggle_dir / "planes.csv")))
    assert all(planes[r["path"]] == src_planes[r["source"]] for r in copies)
    assert (out / "contact_sheet.png").is_file()


def test_same_seed_same_bytes_and_no_overwrite(kaggle_dir, tmp_path, capsys):
    assert _balance(kaggle_dir, tmp_path / "a") == 0
    assert _balance(kaggle_dir, tmp_path / "b") == 0
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert _balance(kaggle_dir, tmp_path / "a", "--seed", "1") == 2
    assert "exists" in capsys.readouterr().err
    assert _balance(kaggle_dir, tmp_path / "a", "--seed", "1", "--force") == 0
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")


def test_add_merges_extra_images(kaggle_dir, tmp_path):
    extra = tmp_path / "new slices"
    extra.mkdir()
    img = cv2.imread(str(next((kaggle_dir / "Training" / "glioma_tumor").glob("*.png"))))
    cv2.imwrite(str(extra / "Sag 1.JPG"), img)
    cv2.imwrite(str(extra / "cor 2.png"), img)
    assert _balance(kaggle_dir, tmp_path / "bal", "--add", str(extra)) == 0
    rows = list(csv.DictReader(open(tmp_path / "bal" / "manifest.csv")))
    added = [r for r in rows if r["kind"] == "added"]
    assert len(added) == 2 and all((tmp_path / "bal" / r["path"]).is_file() for r in added)
    assert sum(r["kind"] == "augmented" for r in rows) == 11  # 17 + 2 added + 11 copies = 30


def test_an_added_blank_image_is_kept_with_no_plane_estimated(kaggle_dir, tmp_path):
    extra = tmp_path / "new slices"
    extra.mkdir()
    cv2.imwrite(str(extra / "blank.png"), np.zeros((64, 64), np.uint8))  # nothing to estimate a plane from
    assert _balance(kaggle_dir, tmp_path / "bal", "--add", str(extra)) == 0
    planes = dict(csv.reader(open(tmp_path / "bal" / "planes.csv")))
    added = [r["path"] for r in csv.DictReader(open(tmp_path / "bal" / "manifest.csv")) if r["kind"] == "added"]
    assert len(added) == 1 and added[0] not in planes and len(planes) > 1


def test_added_images_with_the_same_name_in_two_folders_are_all_kept(kaggle_dir, tmp_path):
    extra = tmp_path / "extra"
    grey = cv2.imread(str(next((kaggle_dir / "Training" / "glioma_tumor").glob("*.png"))))
    names = ["s1/x.png", "s2/x.png", "a b.png", "a_b.png", "s1/a b.png"]
    for k, name in enumerate(names):  # five different pictures: flattened, four names used to clash
        (extra / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(extra / name), np.roll(grey, 7 * k, axis=1))
    assert _balance(kaggle_dir, tmp_path / "bal", "--add", str(extra)) == 0
    rows = list(csv.DictReader(open(tmp_path / "bal" / "manifest.csv")))
    added = [r for r in rows if r["kind"] == "added"]
    assert len(added) == 5 and len({r["path"] for r in rows}) == len(rows)
    digests = {hashlib.md5((tmp_path / "bal" / r["path"]).read_bytes()).hexdigest() for r in added}
    assert digests == {hashlib.md5((extra / n).read_bytes()).hexdigest() for n in names}
    for r in added:  # each added file holds the picture its manifest row names as its source
        assert (tmp_path / "bal" / r["path"]).read_bytes() == Path(r["source"]).read_bytes()
    summary = json.loads((tmp_path / "bal" / "augment_summary.json").read_text())
    on_disk = sum(len(list((tmp_path / "bal" / subset / "no_tumor").iterdir())) for subset in ("Training", "Testing"))
    assert on_disk == summary["after"]["no_tumor"] == 30


@pytest.mark.parametrize("extra, message", [
    (["--class", "no_such_class"], "class 'no_such_class' not found"),
    (["--target", "5"], "target 5 is lower than the 17 images"),
    (["--transforms", "BAD"], "unknown key 'shear'"),
    (["--transforms", "NOTLIST"], "transforms must be a non-empty list"),
])
def test_bad_input_is_one_line_and_exit_2(kaggle_dir, tmp_path, capsys, extra, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("transforms:\n  - {rotation: 10, shear: 0.2}\n")
    notlist = tmp_path / "notlist.yaml"
    notlist.write_text("transforms: {rotation: 10}\n")
    extra = [str(bad) if e == "BAD" else str(notlist) if e == "NOTLIST" else e for e in extra]
    argv = [str(kaggle_dir), "--out", str(tmp_path / "o"), "--class", "no_tumor", "--target", "30", *extra]
    assert augment.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_unreadable_source_is_a_counted_skip(data_copy, tmp_path, capsys):
    (data_copy / "Training" / "no_tumor" / "broken.png").write_bytes(b"not an image")
    assert _balance(data_copy, tmp_path / "bal") == 0
    summary = json.loads((tmp_path / "bal" / "augment_summary.json").read_text())
    assert len(summary["skipped"]) == 1 and "broken.png" in summary["skipped"][0][0]
    rows = list(csv.DictReader(open(tmp_path / "bal" / "manifest.csv")))
    assert not any(r["source"].endswith("broken.png") for r in rows)


def test_the_target_is_met_in_usable_images_and_an_uncopyable_original_is_a_counted_skip(data_copy, tmp_path,
                                                                                          monkeypatch):
    """Counts are of images training can use (data.decode's rules), so the output holds --target of them; a file
    that cannot be copied (unreadable: permissions) is logged and counted, not a traceback and a .partial left."""
    from brainmri.data import load_dataset

    folder = data_copy / "Training" / "no_tumor"
    usable = sum(1 for p in data_copy.glob("*/no_tumor/*") if p.is_file())
    (folder / "text.png").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "thin.png"), np.full((1, 300), 128, np.uint8))
    copyfile = shutil.copyfile

    def unreadable_text(src, dst, *args, **kwargs):  # as copying a file without read permission fails
        if Path(src).name == "text.png":
            raise PermissionError(13, "Permission denied", str(src))
        return copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(balance.shutil, "copyfile", unreadable_text)
    assert _balance(data_copy, tmp_path / "bal") == 0
    summary = json.loads((tmp_path / "bal" / "augment_summary.json").read_text())
    assert summary["before"]["no_tumor"] == usable and summary["after"]["no_tumor"] == 30
    assert balance.usable_images(data_copy, "no_tumor") == usable  # what reproduce.py's x-fold targets start from
    assert summary["augmented"] == 30 - usable
    reasons = {(Path(path).name, why.split(" (")[0]) for path, why in summary["skipped"]}
    assert reasons == {("text.png", "not a readable image"), ("thin.png", "too small"), ("text.png", "not copied")}
    ds = load_dataset(tmp_path / "bal", 32)
    assert sum(ds.classes[k] == "no_tumor" for k in ds.labels) == 30  # what training will see
    assert not (tmp_path / "bal.partial").exists()


def test_transforms_do_what_they_say():
    img = np.zeros((40, 40, 3), np.uint8)
    img[10, 20] = 255
    shifted = balance.apply_transform(img, {"shift_x": 0.25})
    assert shifted[10, 30].max() == 255
    down = balance.apply_transform(img, {"shift_y": 0.25})
    assert down[20, 20].max() == 255
    flipped = balance.apply_transform(img, {"flip": "horizontal"})
    assert flipped[10, 19].max() == 255
    turned = balance.apply_transform(img, {"rotation": 90})  # counter-clockwise: top centre goes to left centre
    assert np.unravel_index(turned[..., 0].argmax(), (40, 40)) == (20, 10)
    brighter = balance.apply_transform(np.full((8, 8, 3), 100, np.uint8), {"brightness": 1.5})
    assert brighter.max() == 150


def test_plan_spreads_copies_and_refuses_impossible_targets():
    plan = balance.plan_copies(5, [{"rotation": 10}, {"rotation": 20}], 7, seed=0)
    assert sorted(s for s, t, _ in plan[:5]) == [0, 1, 2, 3, 4] and all(t == 0 for _, t, _ in plan[:5])
    assert all(t == 1 for _, t, _ in plan[5:])
    assert plan == balance.plan_copies(5, [{"rotation": 10}, {"rotation": 20}], 7, seed=0)
    with pytest.raises(UserError, match="give only 10 different"):
        balance.plan_copies(5, [{"rotation": 10}, {"rotation": 20}], 11, seed=0)
    drawn = balance.plan_copies(2, [{"rotation": [-20, 20]}], 6, seed=0)
    assert len({c["rotation"] for _, _, c in drawn}) == 6 and all(-20 <= c["rotation"] <= 20 for _, _, c in drawn)


def _leaks(run: Path, manifest_rows) -> int:
    """Augmented copies trained on in a fold where their source is validated or tested."""
    rows = {r["path"]: r for r in csv.DictReader(open(run / "splits.csv"))}
    folds = [k for k in next(iter(rows.values())) if k.startswith("fold")]
    return sum(rows[c["path"]][k] == "train" and rows[c["source"]][k] in ("val", "test")
               for c in manifest_rows for k in folds)


def test_no_copy_of_a_held_out_image_is_trained_on(kaggle_dir, tmp_path):
    """With the manifest, copies follow their source; without it (the same folder) they leak."""
    out = tmp_path / "bal"
    assert augment.main([str(kaggle_dir), "--out", str(out), "--class", "no_tumor", "--target", "45"]) == 0
    copies = [r for r in csv.DictReader(open(out / "manifest.csv")) if r["kind"] == "augmented"]
    cfg = load_config(None, [f"data_dir={out}", "image_size=32", f"cache_dir={tmp_path / 'c'}", "folds=3"])
    (tmp_path / "with").mkdir()
    prepared = prepare_data(cfg, tmp_path / "with")
    assert _leaks(tmp_path / "with", copies) == 0
    is_copy = np.isin(prepared.ds.paths, [c["path"] for c in copies])
    assert not np.isin(prepared.roles[is_copy], ["val", "test"]).any()

    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    (plain / "manifest.csv").unlink()
    (tmp_path / "without").mkdir()
    prepare_data(load_config(None, [f"data_dir={plain}", "image_size=32", f"cache_dir={tmp_path / 'c'}", "folds=3"]),
            tmp_path / "without")
    assert _leaks(tmp_path / "without", copies) > 0


def test_copies_do_not_change_the_originals_split(kaggle_dir, tmp_path):
    out = tmp_path / "bal"
    assert _balance(kaggle_dir, out) == 0
    common = ["image_size=32", f"cache_dir={tmp_path / 'c'}", "folds=3"]
    for name, data in (("orig", kaggle_dir), ("bal", out)):
        (tmp_path / name / "run").mkdir(parents=True)
        prepare_data(load_config(None, [f"data_dir={data}", *common]), tmp_path / name / "run")
    orig = {r["path"]: r for r in csv.DictReader(open(tmp_path / "orig" / "run" / "splits.csv"))}
    bal = {r["path"]: r for r in csv.DictReader(open(tmp_path / "bal" / "run" / "splits.csv"))}
    assert all(bal[p]["fold0"] == r["fold0"] and bal[p]["fold2"] == r["fold2"] for p, r in orig.items())


def _nest(data_copy: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The data copy inside a parent folder that also holds an unrelated sibling file."""
    parent = tmp_path / "parent"
    parent.mkdir()
    data = parent / "data"
    data_copy.rename(data)
    (parent / "thesis.txt").write_text("months of work")
    return parent, data


@pytest.mark.parametrize("where", ["parent", "same", "inside", "symlink_to_parent"])
def test_force_never_touches_the_input_or_its_neighbours(data_copy, tmp_path, capsys, where):
    parent, data = _nest(data_copy, tmp_path)
    out = {"parent": parent, "same": data, "inside": data / "balanced", "symlink_to_parent": tmp_path / "link"}[where]
    if where == "symlink_to_parent":
        out.symlink_to(parent, target_is_directory=True)
    before, listing = tree_digest(parent), sorted(p.name for p in tmp_path.iterdir())
    assert _balance(data, out, "--force") == 2
    err = capsys.readouterr().err
    assert "input folder" in err and err.count("\n") == 1
    assert tree_digest(parent) == before and (parent / "thesis.txt").read_text() == "months of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no .partial folder left anywhere


def test_force_refuses_a_folder_this_tool_did_not_write(kaggle_dir, tmp_path, capsys):
    other = tmp_path / "results"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert _balance(kaggle_dir, other, "--force") == 2
    err = capsys.readouterr().err
    assert str(other) in err and "not written by augment.py" in err and err.count("\n") == 1
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_force_refuses_an_earlier_output_holding_files_the_user_added(kaggle_dir, tmp_path, capsys):
    out = tmp_path / "bal"
    assert _balance(kaggle_dir, out) == 0
    (out / "NOTES.txt").write_text("what I did")
    shutil.copyfile(next((kaggle_dir / "Training" / "no_tumor").glob("*.png")), out / "Training" / "no_tumor" / "mine.png")
    capsys.readouterr()
    assert _balance(kaggle_dir, out, "--force") == 2
    err = capsys.readouterr().err
    assert "not written by augment.py" in err and "NOTES.txt" in err and err.count("\n") == 1
    assert (out / "NOTES.txt").read_text() == "what I did" and (out / "Training" / "no_tumor" / "mine.png").is_file()
    for name in ("NOTES.txt", "Training/no_tumor/mine.png"):
        (out / name).unlink()
    (out / "drafts").mkdir()  # an empty folder of the user's, and a link to one: not augment.py's either
    (out / "results").symlink_to(tmp_path, target_is_directory=True)
    assert _balance(kaggle_dir, out, "--force") == 2
    err = capsys.readouterr().err
    assert "drafts" in err and "results" in err and (out / "drafts").is_dir() and (out / "results").is_symlink()


def test_force_refuses_a_file_the_user_added_while_augment_ran(kaggle_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bal"
    assert _balance(kaggle_dir, out) == 0
    sheet = balance.contact_sheet

    def user_saves_a_note(root, rows, path, *args, **kwargs):  # during the run, after the check at its start
        (out / "NOTES.txt").write_text("written meanwhile")
        return sheet(root, rows, path, *args, **kwargs)

    monkeypatch.setattr(balance, "contact_sheet", user_saves_a_note)
    capsys.readouterr()
    assert _balance(kaggle_dir, out, "--force") == 2
    assert "NOTES.txt" in capsys.readouterr().err
    assert (out / "NOTES.txt").read_text() == "written meanwhile" and not list(tmp_path.glob("*.partial"))


def test_force_replaces_a_previous_augment_output(kaggle_dir, tmp_path):
    out = tmp_path / "bal"
    assert _balance(kaggle_dir, out) == 0
    assert (out / balance.MARKER).is_file()
    first = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert _balance(kaggle_dir, out, "--seed", "3", "--force") == 0
    now = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = {r["path"] for r in csv.DictReader(open(out / "manifest.csv"))}
    assert now == listed | (balance.OWN_FILES & now)  # nothing of the first run's is left over
    assert first - now  # the other seed made other copies: the first run's are gone
    assert json.loads((out / "augment_summary.json").read_text())["seed"] == 3


def test_balancing_an_augmented_folder_again_keeps_which_images_are_copies(kaggle_dir, tmp_path):
    assert _balance(kaggle_dir, tmp_path / "first") == 0
    first = {r["path"]: r for r in csv.DictReader(open(tmp_path / "first" / "manifest.csv"))}
    assert augment.main([str(tmp_path / "first"), "--out", str(tmp_path / "second"), "--class", "glioma_tumor",
                         "--target", "30"]) == 0
    second = {r["path"]: r for r in csv.DictReader(open(tmp_path / "second" / "manifest.csv"))}
    for path, row in first.items():  # the first round's copies are still copies of their sources
        assert second[path] == row
    copies = [r for r in second.values() if r["kind"] == "augmented"]
    assert {r["class"] for r in copies} == {"no_tumor", "glioma_tumor"}
    assert all(second[r["source"]]["kind"] != "augmented" for r in copies)  # never a copy of a copy
    from brainmri.manifest import read_manifest, source_of

    paths = sorted(second)
    assert (source_of(paths, read_manifest(tmp_path / "second")) >= 0).sum() == len(copies)


@pytest.mark.parametrize("transform, key", [
    ("{rotation: .nan}", "rotation"),   # NaN: every copy came out black
    ("{shift_x: [3, 4]}", "shift_x"),   # three image widths: the picture moved out of the frame
    ("{shift_y: -1}", "shift_y"),
    ("{zoom: .inf}", "zoom"),
])
def test_a_transform_that_would_make_blank_copies_is_refused(transform, key):
    with pytest.raises(UserError, match=f"transform 0 key '{key}'"):
        balance.check_transforms([__import__("yaml").safe_load(transform)], "t.yaml")


def test_balancing_the_same_class_again_never_overwrites_a_copy(kaggle_dir, tmp_path):
    assert _balance(kaggle_dir, tmp_path / "first", "--target", "25") == 0
    assert _balance(tmp_path / "first", tmp_path / "second", "--target", "30") == 0  # the same seed, class
    rows = list(csv.DictReader(open(tmp_path / "second" / "manifest.csv")))
    assert len({r["path"] for r in rows}) == len(rows)
    first = {r["path"]: r for r in csv.DictReader(open(tmp_path / "first" / "manifest.csv"))}
    for path, row in first.items():  # every earlier copy is still there, with its own picture
        assert (tmp_path / "second" / path).read_bytes() == (tmp_path / "first" / path).read_bytes()
    on_disk = sum(len(list((tmp_path / "second" / s / "no_tumor").iterdir())) for s in ("Training", "Testing"))
    assert on_disk == sum(r["class"] == "no_tumor" for r in rows) == 30
