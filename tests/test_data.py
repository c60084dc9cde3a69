import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from brainmri.batches import make_batches
from brainmri.data import decode, find_images, load_dataset
from brainmri.errors import UserError


def test_kaggle_layout(kaggle_dir):
    items, classes = find_images(kaggle_dir)
    assert classes == ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
    assert {s for _, _, s in items} == {"Training", "Testing"}
    ds = load_dataset(kaggle_dir, 32)
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (32, 32, 3)
    assert len(ds.paths) == len(items) and not ds.skipped


def test_flat_layout(flat_dir):
    ds = load_dataset(flat_dir, 32)
    assert set(ds.subsets) == {""} and len(set(ds.labels)) == 4


def test_decodes_every_mode_and_extension(tmp_path):
    grey = (np.arange(40 * 50) % 256).astype(np.uint8).reshape(40, 50)
    cv2.imwrite(str(tmp_path / "g.PNG"), grey)
    cv2.imwrite(str(tmp_path / "c.JPEG"), np.dstack([grey] * 3))
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    cv2.imwrite(str(tmp_path / "w.tif"), grey.astype(np.uint16) * 200)
    for name in ("g.PNG", "c.JPEG", "a.png", "w.tif"):
        img = decode(tmp_path / name)
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8, name
        assert img.max() > 200, name  # 16-bit is stretched into 0-255, not truncated


def test_float_image_with_nan_or_inf_is_refused_not_turned_black(tmp_path):
    grey = (np.arange(40 * 50) % 256).astype(np.float32).reshape(40, 50)
    for name, bad in (("nan.tif", np.nan), ("inf.tif", np.inf)):
        pixels = grey.copy()
        pixels[3, 4] = bad  # one masked-out pixel made the whole stretch NaN: a black image, silently
        cv2.imwrite(str(tmp_path / name), pixels)
        with pytest.raises(ValueError, match="NaN or infinite"):
            decode(tmp_path / name)
    cv2.imwrite(str(tmp_path / "fine.tif"), grey / 255 - 0.5)  # any finite range is stretched to 0-255
    img = decode(tmp_path / "fine.tif")
    assert img.min() == 0 and img.max() == 255


def test_one_hot_pixel_does_not_darken_a_16_bit_image(tmp_path):
    grey = (np.arange(64 * 64) % 200).astype(np.uint16).reshape(64, 64) * 16  # an MRI-like 16-bit range
    cv2.imwrite(str(tmp_path / "plain.png"), grey)
    hot = grey.copy()
    hot[5, 5] = 65535  # one saturated pixel (a conversion artefact): min-max made the picture nearly black
    cv2.imwrite(str(tmp_path / "hot.png"), hot)
    plain, spoiled = decode(tmp_path / "plain.png").astype(float), decode(tmp_path / "hot.png").astype(float)
    assert abs(spoiled.mean() - plain.mean()) < 2 and spoiled.max() == 255
    opaque = np.full_like(hot, 65535)  # an alpha channel at its maximum is not part of the grey range
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([hot, hot, hot, opaque]))
    assert abs(decode(tmp_path / "rgba.png").astype(float).mean() - plain.mean()) < 2


def test_bad_files_are_skipped_and_counted(data_copy, tmp_path):
    folder = data_copy / "Training" / "glioma_tumor"
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / "lost.jpg").symlink_to(data_copy / "nowhere.jpg")  # a link whose image was moved or deleted
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((5, 5), np.uint8))
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # decoded, cached, read from the cache
        ds = load_dataset(data_copy, 32, cache_dir=cache)
        reasons = dict(ds.skipped)
        assert set(reasons) == {f"Training/glioma_tumor/{name}" for name in
                                ("zero.jpg", "corrupt.png", "tiny.png", "notes.txt", "lost.jpg")}
        assert "empty" in reasons["Training/glioma_tumor/zero.jpg"] and "too small" in reasons["Training/glioma_tumor/tiny.png"]
        assert "not an image" in reasons["Training/glioma_tumor/notes.txt"]
        assert "broken link" in reasons["Training/glioma_tumor/lost.jpg"]
        assert not any(name in p for p in ds.paths for name in ("notes.txt", "lost.jpg"))


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF APP1 segment whose one tag is Orientation (0x0112), as cameras and phones write."""
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
            + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00")
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_exif_orientation_is_applied_as_every_viewer_shows_the_image(tmp_path):
    picture = np.zeros((40, 80), np.uint8)
    picture[:, :20] = 255  # a bright band on the left: where a turn puts it says which way the image was turned
    jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
    (tmp_path / "turned.jpg").write_bytes(_with_exif_orientation(jpeg, 6))  # 6: turn 90 degrees clockwise to show
    (tmp_path / "upright.jpg").write_bytes(_with_exif_orientation(jpeg, 1))
    turned, upright = decode(tmp_path / "turned.jpg"), decode(tmp_path / "upright.jpg")
    assert upright.shape[:2] == (40, 80) and upright[:, :20].mean() > 200
    assert turned.shape[:2] == (80, 40) and turned[:20].mean() > 200 and turned[20:].mean() < 50


def test_missing_and_mismatched_folders(data_copy, tmp_path):
    with pytest.raises(UserError, match="data folder not found.*kaggle datasets download"):
        find_images(tmp_path / "nowhere")
    (tmp_path / "scan.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"data folder .*scan.jpg is a file, not a folder"):
        find_images(tmp_path / "scan.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        find_images(tmp_path / "empty")
    for f in (data_copy / "Training" / "no_tumor").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="no_tumor holds no images"):
        find_images(data_copy)
    (data_copy / "Testing" / "no_tumor").rename(data_copy / "Testing" / "normal")
    with pytest.raises(UserError, match="differ between"):
        find_images(data_copy)


def test_missing_class_folder(flat_dir):
    with pytest.raises(UserError, match=r"class folder\(s\) \['astrocytoma'\] missing"):
        find_images(flat_dir, ("glioma_tumor", "astrocytoma"))


def test_cache_serves_the_same_arrays(kaggle_dir, tmp_path):
    first = load_dataset(kaggle_dir, 32, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("images-*.npz"))) == 1
    second = load_dataset(kaggle_dir, 32, cache_dir=tmp_path)
    assert np.array_equal(first.images, second.images) and first.paths == second.paths and first.md5 == second.md5
    assert np.array_equal(first.canon, second.canon) and np.array_equal(first.copy_views, second.copy_views)


def test_pipeline_keeps_raw_pixel_range(kaggle_dir):
    """Models normalise inside; the pipeline must hand over 0-255 floats, never 0-1."""
    ds = load_dataset(kaggle_dir, 32)
    x, y = next(iter(make_batches(ds.images, ds.labels, 4, 8, shuffle=True)))  # tf.data, or a PyDataset
    assert np.asarray(x).dtype.name == "float32" and float(np.asarray(x).max()) > 1.5
    assert y.shape == (8, 4)


def test_real_dataset_layout_and_counts():
    """The study's dataset, where this machine has it (../shared/datasets); skipped elsewhere."""
    from conftest import REAL_DATA

    if not REAL_DATA.is_dir():
        pytest.skip(f"real dataset not present at {REAL_DATA}")
    items, classes = find_images(REAL_DATA)
    counts = {c: sum(1 for _, label, _ in items if label == c) for c in classes}
    assert counts == {"glioma_tumor": 926, "meningioma_tumor": 937, "no_tumor": 500, "pituitary_tumor": 901}
    assert sum(1 for *_, s in items if s == "Testing") == 394


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    from brainmri.atomic import replace_with, save_arrays, write_atomic

    target = tmp_path / "summary.json"
    write_atomic(target, "old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_with(target, half_then_fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    save_arrays(tmp_path / "cache.npz", x=np.arange(3))
    assert np.load(tmp_path / "cache.npz")["x"].tolist() == [0, 1, 2]


def test_two_jobs_writing_the_synthetic_set_at_once_leave_one_whole_copy(tmp_path, monkeypatch):
    import threading

    from brainmri import pipeline
    from brainmri.config import load_config

    cfg = load_config(None, ["synthetic=true", "synthetic_per_class=4", f"cache_dir={tmp_path}"])
    real_write, calls = pipeline.write_synthetic, []

    def write_while_another_job_writes(folder, *args, **kwargs):
        real_write(folder, *args, **kwargs)
        calls.append(folder)
        if len(calls) == 1:  # a second fold job starts and finishes while this one is between writing and renaming
            other = threading.Thread(target=pipeline.data_root, args=(cfg,))
            other.start()
            other.join()

    monkeypatch.setattr(pipeline, "write_synthetic", write_while_another_job_writes)
    root = pipeline.data_root(cfg)
    assert len(calls) == 2 and calls[0] != calls[1]  # each job its own temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]  # no partial folder left behind
    monkeypatch.setattr(pipeline, "write_synthetic", real_write)
    alone = pipeline.data_root(load_config(None, ["synthetic=true", "synthetic_per_class=4",
                                                  f"cache_dir={tmp_path / 'alone'}"]))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert files == sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*")) and find_images(root)[1]


def test_a_damaged_image_cache_is_rebuilt_with_a_warning(kaggle_dir, tmp_path, caplog):
    first = load_dataset(kaggle_dir, 32, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("images-*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])  # a disk filled up, a copy cut short
    again = load_dataset(kaggle_dir, 32, cache_dir=tmp_path)
    assert again.paths == first.paths and (again.images == first.images).all()
    assert "cannot be read" in caplog.text
    assert load_dataset(kaggle_dir, 32, cache_dir=tmp_path).paths == first.paths  # the rebuilt cache reads


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (its data is a few bytes: OpenCV refuses the size)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def test_every_unreadable_file_is_one_value_error_whoever_decodes_it(tmp_path):
    """decode() is what gradcam.py, augment.py and --estimate-planes read with: each bad file must be a
    ValueError they skip and count, as training does, never cv2.error or OSError (raw tracebacks)."""
    (tmp_path / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    cv2.imwrite(str(tmp_path / "thin.png"), np.full((1, 1000), 128, np.uint8))
    (tmp_path / "folder.jpg").mkdir()  # a folder named like an image: open() fails as for a file it may not read
    for name, reason in (("huge.png", "not a readable image"), ("thin.png", "too small"),
                         ("folder.jpg", "cannot be read")):
        with pytest.raises(ValueError, match=reason):
            decode(tmp_path / name)


def test_every_image_under_a_class_folder_is_listed_once_and_nothing_is_dropped_unsaid(data_copy, tmp_path):
    folder = data_copy / "Training" / "glioma_tumor"
    some = sorted(folder.glob("*.png"))[:2]
    had = sum(p.is_file() for p in folder.iterdir())
    elsewhere = tmp_path / "more_slices"
    elsewhere.mkdir()
    for i, p in enumerate(some):
        shutil.copyfile(p, elsewhere / f"extra{i}.png")
    (folder / "more").symlink_to(elsewhere, target_is_directory=True)  # a linked subfolder: its images count
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a link back up: each folder once, no hang
    (folder / ".thumbnails").mkdir()  # a hidden folder (a viewer's cache): not data
    shutil.copyfile(some[0], folder / ".thumbnails" / "t.png")
    shutil.copyfile(some[0], data_copy / "Training" / "stray.png")  # an image in no class folder
    items, _ = find_images(data_copy)
    listed = [rel for rel, label, _ in items if label == "glioma_tumor" and rel.startswith("Training/")]
    assert "Training/glioma_tumor/more/extra0.png" in listed and "Training/glioma_tumor/more/extra1.png" in listed
    assert len(listed) == len(set(listed)) == had + 2 and not any(".thumbnails" in rel or "loop" in rel for rel in listed)
    reasons = dict(load_dataset(data_copy, 32).skipped)
    assert reasons == {"Training/stray.png": "not in a class folder"}


def test_a_class_folder_of_broken_links_says_so(data_copy):
    folder = data_copy / "Testing" / "no_tumor"
    for p in folder.iterdir():
        p.unlink()
    (folder / "a.jpg").symlink_to(data_copy / "gone.jpg")
    with pytest.raises(UserError, match=r"no_tumor holds no images \(broken link \(its target is missing\): 1\)"):
        find_images(data_copy)


def test_a_file_that_could_not_be_read_is_read_again_next_time(data_copy, tmp_path, monkeypatch):
    """Permissions or I/O are mended outside the file's content (its size and time, the cache's key, stay): a
    cache must not keep such a file skipped, as it rightly keeps a corrupt one."""
    from brainmri import data

    one = sorted((data_copy / "Training" / "glioma_tumor").glob("*.png"))[0]
    read = data.read_bytes

    def locked(path):
        if Path(path) == one:
            raise ValueError("cannot be read (Permission denied)")
        return read(path)

    monkeypatch.setattr(data, "read_bytes", locked)
    first = load_dataset(data_copy, 32, cache_dir=tmp_path / "cache")
    assert [why for _, why in first.skipped] == ["cannot be read (Permission denied)"]
    monkeypatch.setattr(data, "read_bytes", read)  # the permissions mended
    again = load_dataset(data_copy, 32, cache_dir=tmp_path / "cache")
    assert not again.skipped and len(again.paths) == len(first.paths) + 1


def test_a_folder_that_cannot_be_read_is_a_counted_skip(data_copy, monkeypatch):
    import os

    locked = data_copy / "Training" / "glioma_tumor" / "locked"
    locked.mkdir()
    shutil.copyfile(next((data_copy / "Training" / "glioma_tumor").glob("*.png")), locked / "a.png")
    scandir = os.scandir

    def no_permission(path="."):  # as listing a folder without read permission fails (the tests may run as root)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", no_permission)
    reasons = dict(load_dataset(data_copy, 32).skipped)
    assert reasons == {"Training/glioma_tumor/locked": "folder cannot be read (Permission denied)"}


def test_a_link_to_another_part_of_the_data_is_a_counted_skip_not_this_classs_images(data_copy):
    """Followed, a link to the Training folder (or to another class) would list every class's images under this
    class's label."""
    folder = data_copy / "Training" / "glioma_tumor"
    (folder / "up").symlink_to(data_copy / "Training", target_is_directory=True)
    (folder / "theirs").symlink_to(data_copy / "Training" / "no_tumor", target_is_directory=True)
    (folder / "above").symlink_to(data_copy.parent, target_is_directory=True)  # a folder holding the whole data
    items, _ = find_images(data_copy)
    assert not any(f"/{name}/" in rel for rel, _, _ in items for name in ("up", "theirs", "above"))
    reasons = dict(load_dataset(data_copy, 32).skipped)
    assert set(reasons) == {f"Training/glioma_tumor/{name}" for name in ("up", "theirs", "above")}
    assert all("another part of the data folder" in why for why in reasons.values())


def test_two_class_folders_that_are_one_folder_are_refused(data_copy):
    """A class folder linked to another's (or Testing's to Training's) listed each image under two labels or
    in two subsets: trained and tested on at once."""
    testing = data_copy / "Testing" / "no_tumor"
    shutil.rmtree(testing)
    testing.symlink_to(data_copy / "Training" / "no_tumor", target_is_directory=True)
    with pytest.raises(UserError, match=r"Testing/no_tumor and .*Training/no_tumor are one folder"):
        find_images(data_copy)
