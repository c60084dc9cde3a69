"""Report-ready Grad-CAM figures: colour bar, scaling statement, lesion outlines, 'N of M shown', no tint."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from brainmri import plots
from brainmri.synthetic import lesion_mask


def _slices(n=8, size=32, seed=0):
    """Grey RGB slices, a blob map each (peak 1) and a square lesion mask each."""
    rng = np.random.default_rng(seed)
    images = np.repeat(rng.integers(40, 200, (n, size, size, 1)).astype(np.uint8), 3, -1)
    yy, xx = np.mgrid[:size, :size]
    heats = np.stack([np.exp(-((yy - 10 - i) ** 2 + (xx - 12) ** 2) / 40.0) for i in range(n)]).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 8:14, 10:16] = 255
    return images, heats, masks


@pytest.fixture()
def figures(monkeypatch):
    """The figures the plotting functions would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "save", lambda fig, path, formats=plots.FORMATS: kept.append(fig) or [path])
    yield kept
    for fig in kept:
        plt.close(fig)


def _texts(fig) -> str:
    """Every piece of text on the figure, figure-level and inside axes."""
    return "\n".join(t.get_text() for t in fig.findobj(plt.Text))


def _slice_axes(fig):
    """The axes that show an image (not the colour bar)."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_grid_says_how_many_images_it_shows_when_cut(figures, tmp_path):
    images, heats, _ = _slices(30)
    plots.cam_grid(images, heats, ["pred glioma 0.90"] * 30, tmp_path / "grid", "Where the model looked", total=64)
    shown = len(_slice_axes(figures[0]))
    assert 0 < shown < 30
    assert f"{shown} of 64 images shown" in _texts(figures[0])


def test_grid_that_shows_everything_says_nothing_about_a_cut(figures, tmp_path):
    images, heats, _ = _slices(4)
    plots.cam_grid(images, heats, ["pred glioma 0.90"] * 4, tmp_path / "grid", "Where the model looked")
    assert len(_slice_axes(figures[0])) == 4
    assert "images shown" not in _texts(figures[0])


@pytest.mark.parametrize("kind", ["grid", "panel"])
def test_figure_has_a_colour_bar_from_0_to_1_and_says_how_maps_are_scaled(figures, tmp_path, kind):
    images, heats, _ = _slices(3)
    if kind == "grid":
        plots.cam_grid(images, heats, ["a", "b", "c"], tmp_path / "grid", "Where the model looked for glioma")
    else:
        plots.cam_panel(images[0], [heats[0]], ["glioma (p 0.90)"], tmp_path / "panel")
    (bar_ax,) = [ax for ax in figures[0].axes if ax.get_label() == "<colorbar>"]
    assert bar_ax.get_xlim() == (0, 1)
    assert "1 = the image's maximum" in bar_ax.get_xlabel()
    assert "divided by its own maximum" in _texts(figures[0])


def test_title_in_words_and_layer_in_a_smaller_line(figures, tmp_path):
    images, heats, _ = _slices(1)
    plots.cam_panel(images[0], [heats[0]], ["glioma (p 0.90)"], tmp_path / "panel",
                    title="Where the model looked for glioma", subtitle="Grad-CAM, layer relu3 (8x8 map)")
    texts = {t.get_text(): t for t in figures[0].texts}
    title, sub = texts["Where the model looked for glioma"], texts["Grad-CAM, layer relu3 (8x8 map)"]
    assert sub.get_fontsize() < title.get_fontsize()


def test_all_zero_map_leaves_the_slice_untouched(figures, tmp_path):
    """A map with no evidence (Grad-CAM's ReLU left nothing) must not tint the slice at all."""
    images, heats, _ = _slices(2)
    heats[1] = 0
    assert np.array_equal(plots.overlay(images[1], heats[1]), images[1])
    assert np.array_equal(plots.overlay(images[1][..., 0], heats[1]), images[1])  # a grey 2-D slice too
    weak = np.full_like(heats[1], plots.CAM_FLOOR)  # weak everywhere: still grey
    assert np.array_equal(plots.overlay(images[1], weak), images[1])
    plots.cam_grid(images, heats, ["a", "b"], tmp_path / "grid", "Where the model looked")
    drawn = [ax.images[0].get_array() for ax in _slice_axes(figures[0])]
    assert np.array_equal(drawn[1], images[1])
    assert not np.array_equal(drawn[0], images[0])  # where the map is strong, it shows


def test_lesion_outline_is_drawn_where_a_mask_is_given(figures, tmp_path):
    images, heats, masks = _slices(3)
    given = [masks[0], None, np.zeros_like(masks[2])]  # a lesion, no mask, an empty mask (no tumor)
    plots.cam_grid(images, heats, ["a", "b", "c"], tmp_path / "grid", "Where the model looked", masks=given)
    plots.cam_panel(images[0], [heats[0]], ["glioma"], tmp_path / "panel", mask=masks[0])
    plots.cam_panel(images[0], [heats[0]], ["glioma"], tmp_path / "panel")
    assert [len(ax.collections) > 0 for ax in _slice_axes(figures[0])] == [True, False, False]
    assert all(ax.collections for ax in _slice_axes(figures[1]))  # the slice and the overlay
    assert not any(ax.collections for ax in _slice_axes(figures[2]))
    assert "outline" in _texts(figures[0]) and "outline" not in _texts(figures[2])


def test_captions_are_legible_and_apart_at_report_width(figures, tmp_path):
    """At 6.3 in wide, captions of at least 7 pt must not run into each other (long class names included)."""
    images, heats, _ = _slices(12)
    captions = ["true meningioma\npred meningioma 0.72"] * 12
    plots.cam_grid(images, heats, captions, tmp_path / "grid", "Where the model looked", flagged=[True] * 12)
    fig = figures[0]
    assert fig.get_figwidth() == pytest.approx(6.3)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for ax in _slice_axes(fig) for t in ax.texts]
    assert len(boxes) == 12 and all(t.get_fontsize() >= 7 for ax in _slice_axes(fig) for t in ax.texts)
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
        assert 0 <= a.x0 and a.x1 <= fig.bbox.width


def test_old_call_signatures_still_draw(tmp_path):
    """gradcam.py on other branches calls cam_panel(image, heats, titles, path) and image_gallery(overlays, ...)."""
    images, heats, _ = _slices(2)
    (panel,) = plots.cam_panel(images[0], [heats[0], heats[1]], ["true glioma", "predicted pituitary"], tmp_path / "p")
    grid = [plots.overlay(im, h) for im, h in zip(images, heats)]
    (gallery,) = plots.image_gallery(grid, ["a", "b"], tmp_path / "grid", "gradcam")
    assert panel.is_file() and gallery.is_file()


def test_lesion_mask_found_for_synthetic_images_only(kaggle_dir, tmp_path):
    image = next((kaggle_dir / "Training" / "glioma_tumor").glob("*.png"))
    mask = lesion_mask(kaggle_dir, image.relative_to(kaggle_dir), 32)
    assert mask.shape == (32, 32) and mask.max() == 255
    assert lesion_mask(kaggle_dir, tmp_path / "elsewhere.png", 32) is None  # outside the data root
    assert lesion_mask(None, image, 32) is None
    assert lesion_mask(tmp_path, "Training/glioma_tumor/x.png", 32) is None  # real data: no masks/
