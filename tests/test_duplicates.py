"""The near-duplicate detector: copies join their source, different heads stay apart, and the hand-labelled
pair benchmark is a well-formed file."""

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from brainmri import duplicates
from brainmri.audit import audit, label_conflicts
from brainmri.data import load_dataset
from brainmri.errors import UserError
from brainmri.synthetic import synth_image

from conftest import REAL_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import near_duplicate_benchmark as benchmark  # noqa: E402
import near_duplicate_stress as stress  # noqa: E402

BENCHMARK = Path(__file__).resolve().parents[1] / "data" / "near_duplicate_pairs.csv"
STRESS_JOINS = BENCHMARK.with_name("near_duplicate_stress_joins.csv")
# The stress transforms at strengths the detector survives on synthetic heads; on the real samples
# (tools/near_duplicate_stress.py, docs/results.md) every strength of the issue's list reaches 0.99, and a 30%
# crop (beyond the issue's range) and a mirror with a 20% crop (beyond its list) fall short on one of the samples
# or more. Those two are short here too: the keypoints of the synthetic heads' pixel noise move.
SURVIVED = [("rescale", 0.6), ("rescale", 1.3), ("crop", 0.05), ("crop", 0.2), ("jpeg", 30), ("shift", 0.03),
            ("shift", 0.1), ("gamma", 1.8), ("watermark", 0.5), ("watermark", 1.2), ("stretch", 1.25), ("rotate", 10),
            ("rotate", 20), ("mirror", 1), ("pad", 0.3), ("blur", 2.0), ("noise", 20), ("lowres", 0.35),
            ("combined", 1), ("quarter_turn", 1), ("quarter_turn", 2), ("flip", 1), ("sharpen", 1.0),
            ("pixelate", 0.25), ("letterbox", 1.5), ("mirror_crop", 0.1), ("chain", 2), ("chain", 3)]
SHORT_OF_GOAL = [("crop", 0.3), ("mirror_crop", 0.2)]


def _heads(n: int, size: int = 256) -> list[np.ndarray]:
    planes = [("glioma_tumor", "axial"), ("no_tumor", "axial"), ("meningioma_tumor", "coronal")]
    return [synth_image(100 + 7 * k, *planes[k % 3], size)[0] for k in range(n)]


def _as_dataset(images) -> SimpleNamespace:
    return SimpleNamespace(canon=duplicates.canonical_slices(images), images=images,
                           copy_views=duplicates.copy_views(images),
                           md5=[f"file{i}" for i in range(len(images))])


@pytest.mark.parametrize("kind,strength", SURVIVED + [
    pytest.param(k, v, marks=pytest.mark.xfail(reason="short of its source on synthetic heads too", strict=True))
    for k, v in SHORT_OF_GOAL])
def test_a_transformed_copy_joins_its_source(kind, strength):
    heads = _heads(3)
    rng = np.random.default_rng(0)
    copies = [stress.transform(h, kind, strength, rng) for h in heads]
    groups, _, _ = duplicates.group_images(_as_dataset(heads + copies))
    assert [groups[i] == groups[i + 3] for i in range(3)] == [True] * 3


def test_copies_with_a_white_border_join_their_sources_and_not_each_other():
    # a light frame around the picture (a figure cut from a page) used to make every framed copy look alike
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(6)]
    framed = [stress.transform(h, "white_pad", 0.1, np.random.default_rng(k)) for k, h in enumerate(heads)]
    assert duplicates.group_images(_as_dataset(heads + framed))[0].tolist() == list(range(6)) * 2
    assert duplicates.group_images(_as_dataset(framed))[0].tolist() == list(range(6))


def test_a_light_frame_is_trimmed_and_nothing_else():
    page = np.full((200, 160), 240, np.uint8)
    page[20:140, 30:130] = 60  # the picture
    cv2.putText(page, "Fig. 3", (40, 175), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)  # a caption on the frame
    y, x = duplicates._unframed(page).shape
    assert 120 <= y <= 122 and 100 <= x <= 102  # the picture (and the blur's pixel), not the caption
    light = np.full((120, 100), 200, np.uint8)
    cv2.line(light, (0, 0), (99, 119), 40, 9)
    cv2.line(light, (99, 0), (0, 119), 40, 9)  # a light picture whose content runs to its corners: no frame
    assert duplicates._unframed(light).shape == (120, 100)
    dark = np.zeros((120, 100), np.uint8)
    dark[30:90, 20:80] = 180  # a scan's black background is left to the head box
    assert duplicates._unframed(dark).shape == (120, 100)
    for odd in (np.zeros((0, 50), np.uint8), np.full((5, 400), 255, np.uint8), np.full((50, 50), 255, np.uint8)):
        assert duplicates._unframed(odd).shape == odd.shape


def test_different_synthetic_heads_are_not_joined():
    groups, pairs, scores = duplicates.group_images(_as_dataset(_heads(12)))
    assert len(set(groups)) == 12, f"joined: {pairs.tolist()} at {scores.round(3).tolist()}"


def _scene(seed: int, size: int = 256) -> np.ndarray:
    """A picture of discs and strokes (RGB): corners that keypoints find again after a crop (the synthetic
    heads' pixel noise gives keypoints that a rescale moves)."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 30, np.uint8)
    for _ in range(40):
        at, shade = tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(60, 255))
        if rng.random() < 0.5:
            cv2.circle(image, at, int(rng.integers(4, 30)), shade, -1)
        else:
            cv2.line(image, at, tuple(int(v) for v in rng.integers(0, size, 2)), shade, int(rng.integers(1, 4)))
    return cv2.cvtColor(cv2.GaussianBlur(image, (3, 3), 0), cv2.COLOR_GRAY2RGB)


def test_keypoint_retrieval_pairs_a_cropped_copy_with_its_source():
    scenes = [_scene(seed) for seed in range(8)]
    copy = stress.transform(scenes[5], "crop", 0.2, np.random.default_rng(3))
    features = duplicates.copy_features(duplicates.copy_views(scenes + [copy]))
    assert [5, 8] in duplicates.keypoint_candidates(features).tolist()
    between = duplicates.keypoint_candidates(features[8:], features[:8])  # a test image among training images
    assert between.tolist() == [[0, 5]]


def test_the_copy_check_counts_the_better_map_where_a_weak_pair_needs_support():
    # a weak pair is dropped below SUPPORT_INLIERS matches on one map: where the map from the first image
    # explains fewer, the map the other way round must be fitted too (a review found it skipped)
    scenes = [_scene(seed) for seed in range(12)]
    features = duplicates.copy_features(duplicates.copy_views(scenes))
    pairs = np.array([(i, j) for i in range(12) for j in range(i + 1, 12)])
    inliers, _, _, _ = duplicates.copy_check(features, features, pairs)

    def both_ways(i: int, j: int) -> int:
        (pos_a, desc_a, _, _), (pos_b, desc_b, _, _) = sorted((features[i], features[j]), key=lambda f: f[3])
        matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(desc_a, desc_b)
        src, dst = pos_a[[m.queryIdx for m in matches]], pos_b[[m.trainIdx for m in matches]]
        return max(int(cv2.estimateAffine2D(x, y, method=cv2.RANSAC, ransacReprojThreshold=3.0)[1].sum())
                   for x, y in ((src, dst), (dst, src)))

    needing_support = [k for k, n in enumerate(inliers) if n < duplicates.ALIGN_INLIERS]
    assert needing_support
    best = [min(both_ways(*pairs[k]), duplicates.SUPPORT_INLIERS) for k in needing_support]
    assert [min(int(inliers[k]), duplicates.SUPPORT_INLIERS) for k in needing_support] == best


def test_keypoint_retrieval_does_not_depend_on_the_order_of_the_images():
    # A shares 1 of its 2 codes-giving descriptors with B and 1 with C; B and C are the same size, so the two
    # shares tie and position used to decide (found by a review)
    descriptors = np.random.default_rng(0).integers(0, 256, (8, 32), dtype=np.uint8)
    images = {"A": (0, 1), "B": (0, 2, 3, 4), "C": (1, 5, 6, 7), "D": (2, 3, 4), "E": (5, 6, 7)}

    def retrieved(order: str) -> list:
        features = [(None, descriptors[list(images[name])], None, name.encode()) for name in order]
        return sorted("".join(sorted(order[i] + order[j])) for i, j in duplicates.keypoint_candidates(features))

    assert retrieved("ABCDE") == retrieved("ACBDE") == retrieved("EDCBA")
    test_image = [(None, descriptors[list(images["A"])], None, b"A")]

    def partner_among(train: str) -> list:
        features = [(None, descriptors[list(images[name])], None, name.encode()) for name in train]
        return [train[j] for _, j in duplicates.keypoint_candidates(test_image, features)]

    assert partner_among("BC") == partner_among("CB") == ["B"]


def test_burned_in_text_is_left_out_of_the_aligned_correlation_and_only_that():
    def stamped(image):
        out = duplicates.copy_view(image)
        cv2.putText(out, "www.example.org", (2, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
        return out

    same = np.float32([[1, 0, 0], [0, 1, 0]])
    view = duplicates.copy_view(_scene(2))
    everywhere, without_text = duplicates._aligned_correlations(stamped(_scene(2)), view, same)
    assert everywhere < duplicates.COPY_ALIGNED_WITHOUT_TEXT <= without_text
    _, other_without_text = duplicates._aligned_correlations(stamped(_scene(3)), view, same)
    assert other_without_text < duplicates.COPY_ALIGNED


def test_a_view_structure_made_once_gives_the_same_correlations():
    view, other = duplicates.copy_view(_scene(2)), duplicates.copy_view(_scene(3))
    nudge = np.float32([[1.02, 0.01, -2], [-0.01, 0.98, 3]])
    cached = duplicates._minus_blur(view, duplicates.ALIGN_SIGMA)
    assert duplicates._aligned_correlations(other, view, nudge, cached) == \
        duplicates._aligned_correlations(other, view, nudge)


def test_exact_copies_join_whatever_the_score():
    heads = _heads(2)
    ds = _as_dataset(heads)
    ds.md5 = ["same", "same"]
    groups, _, _ = duplicates.group_images(ds)
    assert groups[0] == groups[1]


def test_retrieval_keeps_a_bounded_number_of_candidates_per_image():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(duplicates.ZOOMS), 500, duplicates.THUMB ** 2)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    pairs = duplicates.candidate_pairs(vectors, min_similarity=-1)
    assert len(pairs) <= 500 * duplicates.CANDIDATES and (pairs[:, 0] < pairs[:, 1]).all()


def _both_ways(vectors: np.ndarray, k: int, min_similarity: float) -> set:
    """candidate_pairs within one set the plain way: the full similarity matrix, both zoom directions."""
    window_in = np.max(vectors @ vectors[0].T, axis=0)
    sim = np.maximum(window_in, window_in.T)
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :k]
    return {tuple(sorted((i, int(j)))) for i, row in enumerate(top) for j in row if sim[i, j] >= min_similarity}


@pytest.mark.parametrize("zooms", [1, 4])
@pytest.mark.parametrize("chunk_floats", [2e7, 3000])  # one chunk, and many (the columns' running best)
def test_retrieval_within_one_set_finds_the_pairs_of_the_full_matrix(monkeypatch, zooms, chunk_floats):
    monkeypatch.setattr(duplicates, "CHUNK_FLOATS", chunk_floats)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(zooms, 300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    for k, min_similarity in ((6, -1.0), (2, 0.3), (1, -1.0)):
        found = {tuple(p) for p in duplicates.candidate_pairs(vectors, k=k, min_similarity=min_similarity).tolist()}
        assert found == _both_ways(vectors, k, min_similarity)


def test_label_conflicts_come_only_from_sure_pairs(data_copy):
    src = data_copy / "Training" / "glioma_tumor" / "gl_0005.png"
    (data_copy / "Training" / "no_tumor" / "mislabeled.png").write_bytes(src.read_bytes())
    ds = load_dataset(data_copy, 48)
    detector = duplicates.Detector()
    groups, pairs, scores = duplicates.group_images(ds, detector)
    rows = label_conflicts(ds, pairs, scores, detector)
    assert {("Training/glioma_tumor/gl_0005.png", "Training/no_tumor/mislabeled.png")} == {
        tuple(sorted((r["a"], r["b"]))) for r in rows}
    assert rows[0]["evidence"] == "byte-identical"
    unsure = detector.threshold + (duplicates.SAME_SLICE - detector.threshold) / 2
    i, j = ds.labels.tolist().index(0), ds.labels.tolist().index(2)  # a glioma and a no-tumor image
    def listed(score):
        rows = label_conflicts(ds, np.array([[i, j]]), np.array([score], np.float32), detector)
        return (ds.paths[i], ds.paths[j]) in {(r["a"], r["b"]) for r in rows}

    assert not listed(unsure) and listed(duplicates.SAME_SLICE)
    assert audit(ds, groups, pairs, scores, detector)["label_conflict_pairs"] == len(rows)


def test_pair_benchmark_parses_and_has_both_parts():
    with open(BENCHMARK, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 400
    assert {r["label"] for r in rows} == {"same", "adjacent", "different"}
    assert {r["part"] for r in rows} == {"choose", "report"}
    assert len({r["pair"] for r in rows}) == len(rows)


def test_the_stress_joins_file_parses_and_is_the_stress_tools_default():
    rows = benchmark.read_rows(STRESS_JOINS)
    assert len(rows) >= 100 and {r["part"] for r in rows} == {"stress"}
    assert {r["label"] for r in rows} == {"same", "adjacent", "different"}
    assert len({frozenset((r["a"], r["b"])) for r in rows}) == len({r["pair"] for r in rows}) == len(rows)
    assert set(stress.CHECKED) == {BENCHMARK, STRESS_JOINS}


def test_the_benchmark_measures_at_another_resolution_by_resizing_every_image():
    image = np.zeros((100, 60, 3), np.uint8)
    assert benchmark.rescaled(image, 1.0) is image
    assert benchmark.rescaled(image, 2.0).shape == (200, 120, 3)
    assert benchmark.rescaled(image, 0.5).shape == (50, 30, 3)


def test_benchmark_precision_and_recall_come_with_95_percent_wilson_intervals():
    truth = np.array([True] * 10 + [False] * 10)
    said = np.array([True] * 8 + [False] * 2 + [True] + [False] * 9)
    found = benchmark.precision_recall(truth, said)
    assert (found["tp"], found["fp"], found["fn"]) == (8, 1, 2)
    assert found["recall_ci"] == pytest.approx((0.490, 0.943), abs=1e-3)  # Wilson, 8 of 10
    assert found["precision_ci"][0] < 8 / 9 < found["precision_ci"][1]
    assert benchmark.precision_recall(truth, np.zeros(20, bool))["precision_ci"] == (0.0, 1.0)  # nothing said


def test_pairs_that_share_an_image_widen_the_benchmark_intervals_as_fewer_independent_pairs():
    truth = np.array([True] * 30 + [False] * 30)
    said = np.array([True] * 24 + [False] * 6 + [True] * 3 + [False] * 27)
    apart = benchmark.precision_recall(truth, said, np.arange(60))
    alone = benchmark.precision_recall(truth, said)
    assert apart["recall_ci"] == pytest.approx(alone["recall_ci"])  # every pair its own cluster: plain Wilson
    # the same 60 outcomes, each cluster three pairs that share an image and agree: 20 draws, not 60
    tripled = benchmark.precision_recall(truth, said, np.arange(60) // 3)
    twenty = benchmark.precision_recall(truth[::3], said[::3])
    low, high = tripled["recall_ci"]
    assert tripled["recall"] == alone["recall"] and high - low > alone["recall_ci"][1] - alone["recall_ci"][0]
    assert (low, high) == pytest.approx(twenty["recall_ci"], abs=1e-4)
    everything = benchmark.precision_recall(truth, truth, np.arange(60) // 3)
    assert everything["recall_ci"] == pytest.approx(benchmark.precision_recall(truth[::3], truth[::3])["recall_ci"])


def test_one_more_miss_never_raises_a_clustered_interval():
    from brainmri.metrics import wilson_interval

    groups = np.arange(60) // 3
    bounds = [wilson_interval(np.arange(60) >= misses, groups) for misses in range(61)]
    assert all(a[0] >= b[0] and a[1] >= b[1] for a, b in zip(bounds, bounds[1:]))


def test_the_benchmark_clusters_labelled_pairs_that_share_an_image():
    pairs = np.array([(0, 1), (1, 2), (3, 4), (5, 6), (6, 3), (7, 8)])
    clusters = benchmark.pair_clusters(pairs)
    assert clusters[0] == clusters[1] and clusters[2] == clusters[3] == clusters[4]
    assert len(set(clusters.tolist())) == 3


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="the real dataset is not beside the project")
@pytest.mark.parametrize("pairs", [BENCHMARK, STRESS_JOINS], ids=["benchmark", "stress_joins"])
def test_every_benchmark_path_exists_in_the_real_data(pairs):
    with open(pairs, newline="") as f:
        missing = [p for r in csv.DictReader(f) for p in (r["a"], r["b"]) if not (REAL_DATA / p).is_file()]
    assert missing == []


def test_audit_of_a_single_group_says_the_shortcut_cannot_be_scored(data_copy):
    from brainmri.audit import format_audit

    ds = load_dataset(data_copy, 48)
    report = audit(ds, np.zeros(len(ds.md5), np.int64))
    assert report["shortcut"]["size_only_accuracy"] is None and "too few groups" in format_audit(report)


def _lifted(image: np.ndarray, offset: int = 22) -> np.ndarray:
    """A re-exposed copy: the black background lifted to grey, the way a brightness change leaves it."""
    return np.clip(image.astype(np.int16) * 0.85 + offset, 0, 255).astype(np.uint8)


def test_a_copy_with_a_lifted_background_joins_its_source():
    # the background no longer reads as background, so the copy's head box is the whole picture and its
    # canonical slice is framed differently from its source's; the copy check on the images finds it
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(4)]
    crops = [h[20:236, 12:244] for h in heads]
    groups, _, _ = duplicates.group_images(_as_dataset(heads + [_lifted(c) for c in crops]))
    assert [groups[i] == groups[i + 4] for i in range(4)] == [True] * 4


def test_the_copy_check_tells_a_copy_from_another_head():
    heads = _heads(3)
    copy = _lifted(cv2.resize(heads[0][30:226, 40:236], (180, 180)))
    features = duplicates.copy_features(duplicates.copy_views(heads + [copy]))
    _, copies, _, similar = duplicates.copy_check(features, features, np.array([[0, 3], [1, 3], [2, 3], [1, 2]]))
    assert copies.tolist() == [True, False, False, False] and not similar.any()


def test_the_copy_check_counts_the_matches_that_sit_still():
    # slices of one scan keep their place in the frame: a weak pair needs matches that did not move
    scene = _scene(4)
    moved = cv2.warpAffine(scene, np.float32([[1, 0, 40], [0, 1, 30]]), scene.shape[1::-1])
    features = duplicates.copy_features(duplicates.copy_views([scene, _lifted(scene), moved]))
    inliers, copies, still, _ = duplicates.copy_check(features, features, np.array([[0, 1], [0, 2]]))
    assert copies.all() and inliers.min() >= duplicates.COPY_INLIERS
    assert still[0] >= duplicates.STILL_MATCHES > still[1]


def test_the_copy_check_is_deterministic():
    heads = _heads(6)
    features = duplicates.copy_features(duplicates.copy_views(heads))
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])
    found = duplicates.copy_check(features, features, pairs)
    again = duplicates.copy_check(duplicates.copy_features(duplicates.copy_views(heads)), features, pairs)
    assert all((a == b).all() for a, b in zip(found, again))


def test_the_stress_tool_groups_each_transform_on_its_own():
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(4)]
    result = stress.run(heads, 2, duplicates.Detector(), seed=0)
    assert result["images_per_grouping"] == 6  # 4 distinct images + one copy of each of the 2 sources
    assert set(result["copies_with_source"]) == {f"{k} {s}" for k, v in stress.STRENGTHS.items() for s in v}
    assert result["copies_with_source"]["jpeg 90"] == 1.0


def test_a_chained_stress_copy_goes_through_that_many_different_transforms_of_the_issues_list(monkeypatch):
    applied = []
    real = stress.transform

    def recording(image, kind, strength, rng):
        if kind != "chain":
            applied.append((kind, strength))
        return real(image, kind, strength, rng)

    monkeypatch.setattr(stress, "transform", recording)
    head = cv2.cvtColor(_heads(1)[0], cv2.COLOR_GRAY2RGB)
    for links in (2, 3):
        applied.clear()
        out = stress.transform(head, "chain", links, np.random.default_rng(links))
        assert out.dtype == np.uint8 and out.ndim == 3
        assert len(applied) == links and len({kind for kind, _ in applied}) == links
        assert all(strength in stress.ISSUE_LIST[kind] for kind, strength in applied)
    assert max(stress.ISSUE_LIST["crop"]) == 0.2  # the issue's range: 5-20%


def test_every_extra_stress_transform_gives_an_rgb_image_and_extra_runs_them_instead(monkeypatch):
    head = cv2.cvtColor(_heads(1, size=200)[0], cv2.COLOR_GRAY2RGB)
    rng = np.random.default_rng(0)
    for kind, strengths in stress.EXTRA.items():
        for strength in strengths:
            out = stress.transform(head, kind, strength, rng)
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, (kind, strength, out.shape)
    chosen = []
    monkeypatch.setattr(stress, "run", lambda images, n, det, seed, scans, strengths, **_: chosen.append(strengths) or {
        "pairs_joined_across_scans": []})
    monkeypatch.setattr(stress, "distinct_images", lambda root, count, seed: (["a.png"], [head]))
    assert stress.main(["data", "--extra", "--checked"]) == 0 and stress.main(["data", "--checked"]) == 0
    assert chosen == [stress.EXTRA, stress.STRENGTHS]


def test_the_stress_tool_does_not_count_joins_labelled_as_one_scan_as_wrong(monkeypatch):
    # distinct images 0 and 3 are one picture (3 a slightly shifted copy of 0, standing for two slices of one
    # scan that the loose pHash selection let through): joining them is right once a label says so
    monkeypatch.setattr(stress, "STRENGTHS", {"jpeg": (90,), "shift": (0.03,)})
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(3)]
    heads.append(stress.transform(heads[0], "shift", 0.03, np.random.default_rng(1)))
    unlabelled = stress.run(heads, 1, duplicates.Detector(), seed=0)
    labelled = stress.run(heads, 1, duplicates.Detector(), seed=0, scans=np.array([0, 1, 2, 0]))
    assert unlabelled["distinct_joined"] == labelled["distinct_joined"] == 0.5
    assert unlabelled["distinct_wrongly_joined"] == 0.5
    assert [(p["a"], p["b"]) for p in unlabelled["pairs_joined_across_scans"]] == [(0, 3)]
    assert labelled["distinct_wrongly_joined"] == 0.0
    assert labelled["pairs_joined_across_scans"] == []


def test_hand_checked_pairs_tie_images_to_one_scan_through_neighbours():
    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    checked = [{"a": "a.jpg", "b": "b.jpg", "label": "adjacent"}, {"a": "c.jpg", "b": "b.jpg", "label": "same"},
               {"a": "d.jpg", "b": "e.jpg", "label": "different"}, {"a": "x.jpg", "b": "e.jpg", "label": "same"}]
    scans = stress.scans_of(paths, checked)
    assert scans[0] == scans[1] == scans[2] and len({scans[0], scans[3], scans[4]}) == 3
    groups = np.array([0, 0, 0, 1, 1])
    assert stress.joined_with_another(groups, scans).tolist() == [False, False, False, True, True]
    assert stress.pairs_across_scans(groups, scans) == {(3, 4)}
    # through an image that was not picked: d and x, x and e adjacent, so d and e are one scan
    through = checked + [{"a": "d.jpg", "b": "x.jpg", "label": "adjacent"}]
    assert stress.scans_of(paths, through)[3] == stress.scans_of(paths, through)[4]
    assert stress.labelled_among(paths, checked) == 3


def test_pairs_two_looks_call_one_patient_tie_scans_into_patients_not_into_scans():
    paths = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    checked = [{"a": "a.jpg", "b": "b.jpg", "label": "adjacent", "patient": ""},
               {"a": "b.jpg", "b": "c.jpg", "label": "different", "patient": "same"},  # another level, one head
               {"a": "c.jpg", "b": "d.jpg", "label": "different", "patient": "cannot_tell"}]
    scans, patients = stress.scans_of(paths, checked), stress.patients_of(paths, checked)
    assert scans[0] == scans[1] != scans[2] and patients[0] == patients[1] == patients[2] != patients[3]
    assert (stress.patients_of(paths, [{k: v for k, v in r.items() if k != "patient"} for r in checked])
            == scans).all()  # a file without the column: every scan its own patient
    groups = np.array([0, 0, 0, 1])
    assert stress.joined_with_another(groups, scans).tolist() == [True, True, True, False]
    assert stress.joined_with_another(groups, patients).tolist() == [False, False, False, False]


def test_the_stress_tool_reports_joins_to_another_patient_beside_joins_to_another_scan():
    heads = _heads(3)
    heads.append(stress.transform(heads[0], "shift", 0.03, np.random.default_rng(1)))
    found = stress.run(heads, 1, duplicates.Detector(), seed=0, scans=np.arange(4),
                       patients=np.array([0, 1, 2, 0]))
    assert found["distinct_wrongly_joined"] == 0.5 and found["distinct_joined_to_another_patient"] == 0.0
    alone = stress.run(heads, 1, duplicates.Detector(), seed=0)
    assert alone["distinct_joined_to_another_patient"] == alone["distinct_wrongly_joined"] == 0.5


def test_a_patient_column_outside_its_words_is_a_one_line_error(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("pair,a,b,label,patient\n0,x.jpg,y.jpg,different,maybe\n")
    with pytest.raises(UserError, match="pair 0 has patient 'maybe'"):
        benchmark.read_rows(path)
    path.write_text("pair,a,b,label,patient\n0,x.jpg,y.jpg,different,same\n1,x.jpg,z.jpg,same,\n")
    assert [r["patient"] for r in benchmark.read_rows(path)] == ["same", ""]


def test_the_stress_tool_end_to_end_on_a_folder(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setattr(stress, "STRENGTHS", {"jpeg": (90,)})
    heads = _heads(4)
    # "one scan" with head 0 that the loose pHash selection keeps (it drops a mere shift as a copy)
    heads.append(stress.transform(heads[0], "quarter_turn", 1, np.random.default_rng(1)))
    for k, head in enumerate(heads):
        folder = tmp_path / "data" / ("glioma_tumor" if k % 2 else "no_tumor")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"h{k}.png"), head)
    path = {k: f"{'glioma_tumor' if k % 2 else 'no_tumor'}/h{k}.png" for k in range(5)}
    checked = tmp_path / "checked.csv"
    checked.write_text(f"pair,a,b,label,part\n7,{path[1]},{path[2]},different,stress\n")
    to_label, out = tmp_path / "to_label.csv", tmp_path / "out.json"
    argv = [str(tmp_path / "data"), "--sources", "2", "--distinct", "3", "--checked", str(checked),
            "--to-label", str(to_label), "--json", str(out)]
    assert stress.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["checked_pairs_among_picked"] == 1 and result["distinct_wrongly_joined"] == 0.4
    assert [({p["a"], p["b"]}, p["label"]) for p in result["pairs_joined_across_scans"]] == [({path[0], path[4]}, "")]
    rows = list(csv.DictReader(open(to_label, newline="")))
    assert [(r["pair"], {r["a"], r["b"]}, r["label"]) for r in rows] == [("8", {path[0], path[4]}, "")]
    checked.write_text(checked.read_text() + f"8,{path[0]},{path[4]},adjacent,stress\n")
    argv = [a for a in argv if a not in ("--to-label", str(to_label))]  # a pair file is never written over
    assert stress.main(argv) == 0
    written = json.loads(out.read_text())
    assert written["distinct_wrongly_joined"] == written["distinct_joined_to_another_patient"] == 0.0
    assert written["joined_unchecked"] == written["patient_unchecked"] == 0
    assert "warning" not in capsys.readouterr().err
    sides, real_run = [], stress.run

    def run(images, *args, **kwargs):
        sides.append(images[0].shape[0])
        return real_run(images, *args, **kwargs)

    monkeypatch.setattr(stress, "run", run)
    assert stress.main(argv) == 0 and stress.main(argv + ["--scale", "2"]) == 0  # another resolution
    assert sides == [256, 512] and json.loads(out.read_text())["scale"] == 2.0
    assert stress.main(argv + ["--scale", "20"]) == 2 and "--scale 20" in capsys.readouterr().err


def test_a_pair_file_without_a_label_column_is_a_one_line_error(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("pair,a,b\n0,x.jpg,y.jpg\n")
    with pytest.raises(UserError, match="no column label"):
        benchmark.read_rows(bad)


def test_found_pairs_are_kept_in_the_cache_and_reused(tmp_path, monkeypatch):
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(4)]
    ds = _as_dataset(heads + [stress.transform(heads[1], "crop", 0.1, np.random.default_rng(0))])
    cached = duplicates.Detector(cache_dir=str(tmp_path))
    first = duplicates.group_images(ds, cached)
    assert len(list(tmp_path.glob("near-duplicates-*.npz"))) == 1

    def no_search(*args, **kwargs):
        raise AssertionError("searched again although the cache holds the answer")

    monkeypatch.setattr(duplicates, "scored_pairs", no_search)
    again = duplicates.group_images(ds, cached)
    assert all((x == y).all() for x, y in zip(first, again))
    with pytest.raises(AssertionError, match="searched again"):  # other settings: another key
        duplicates.group_images(ds, duplicates.Detector(threshold=0.8, cache_dir=str(tmp_path)))
    changed = _as_dataset(heads[:4] + [heads[0]])
    with pytest.raises(AssertionError, match="searched again"):  # other images: another key
        duplicates.group_images(changed, cached)


def test_an_unreadable_pair_cache_is_searched_again(tmp_path):
    ds = _as_dataset([cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(3)])
    cached = duplicates.Detector(cache_dir=str(tmp_path))
    first = duplicates.group_images(ds, cached)
    (cache,) = tmp_path.glob("near-duplicates-*.npz")
    cache.write_bytes(b"not an npz")
    again = duplicates.group_images(ds, cached)
    assert all((x == y).all() for x, y in zip(first, again))
    assert np.load(cache)["scores"].shape == first[2].shape  # written anew


def test_jobs_sharing_the_cache_folder_do_not_take_each_others_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    pairs, scores = np.array([[0, 1]]), np.array([0.95], np.float32)

    def search():
        return pairs, scores

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: duplicates._cached(tmp_path, "shared", search), range(8)))
    assert all((p == pairs).all() and (s == scores).all() for p, s in answers)
    assert [f.name for f in tmp_path.iterdir()] == ["near-duplicates-shared.npz"]  # no temporary file left


def test_a_cache_that_cannot_be_written_still_gives_the_answer(tmp_path, caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    ds = _as_dataset([cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(3)])
    groups, _, _ = duplicates.group_images(ds, duplicates.Detector(cache_dir=str(blocked)))
    assert len(groups) == 3 and "not cached" in caplog.text


def test_an_empty_cache_dir_keeps_no_pair_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    duplicates.group_images(_as_dataset(_heads(3)), duplicates.Detector(cache_dir=""))
    assert list(tmp_path.iterdir()) == []


def test_the_run_detector_keeps_its_pairs_in_the_cache_folder():
    from brainmri.config import Config

    assert duplicates.Detector.of(Config(cache_dir="somewhere")).cache_dir == "somewhere"


def test_grouping_does_not_depend_on_the_training_image_size(data_copy):
    # the copy check looks at views of the full image, not at the resized training images: backbones trained
    # at different sizes are compared on the same folds
    small, large = load_dataset(data_copy, 32), load_dataset(data_copy, 96)
    assert (duplicates.group_images(small)[0] == duplicates.group_images(large)[0]).all()


def test_the_copy_check_gives_the_same_answer_either_way_round():
    heads = _heads(7)
    copies = [_lifted(cv2.resize(h[18 + 3 * k:230 - 2 * k, 10 + 2 * k:240 - 3 * k], (200, 200)))
              for k, h in enumerate(heads)]
    features = duplicates.copy_features(duplicates.copy_views(heads + copies))
    pairs = np.array([(k, 7 + k) for k in range(7)] + [(0, 1), (2, 5)])
    one_way = duplicates.copy_check(features, features, pairs)
    other_way = duplicates.copy_check(features, features, pairs[:, ::-1])
    assert all((a == b).all() for a, b in zip(one_way, other_way))


def test_groups_do_not_depend_on_the_order_of_the_images():
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(5)]
    mirrored = [stress.transform(h, "mirror_crop", 0.1, np.random.default_rng(k)) for k, h in enumerate(heads[:3])]
    images = heads + [_lifted(h[15:235, 20:240]) for h in heads] + mirrored
    order = np.random.default_rng(3).permutation(len(images))
    groups = duplicates.group_images(_as_dataset(images))[0]
    shuffled = duplicates.group_images(_as_dataset([images[i] for i in order]))[0]
    assert [groups[10 + k] == groups[k] for k in range(3)] == [True] * 3  # the mirrored copies found
    same_group = lambda g: {(i, j) for i in range(len(g)) for j in range(len(g)) if g[i] == g[j]}
    assert same_group(groups[order]) == same_group(shuffled)


def test_a_lifted_copy_in_test_is_found_among_the_training_images():
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(4)]
    test = _as_dataset([_lifted(heads[2][20:236, 12:244]), heads[3]])
    test.md5 = ["test0", "test1"]  # (not byte-identical to any training file)
    train = _as_dataset(heads[:3])
    assert duplicates.copies_in(train, test).tolist() == [True, False]


def test_mirrored_copy_features_are_those_of_the_flipped_views_without_a_copy_of_the_pixels():
    views = duplicates.copy_views(_heads(3))
    mirrored = duplicates.copy_features(views, mirrored=True)
    flipped = duplicates.copy_features(np.ascontiguousarray(views[:, :, ::-1]))
    for (pos, desc, view, key), (pos_f, desc_f, view_f, key_f) in zip(mirrored, flipped):
        assert np.array_equal(pos, pos_f) and np.array_equal(desc, desc_f) and key == key_f
        assert np.array_equal(view, view_f) and np.shares_memory(view, views)  # a flipped view, not a copy


@pytest.mark.parametrize("mirrored_side", ["test", "train"])
def test_a_mirrored_cropped_copy_is_found_on_either_side_of_a_split(mirrored_side):
    heads = _heads(12)  # ten training images to find it among
    copy = stress.transform(heads[2], "mirror_crop", 0.15, np.random.default_rng(1))
    if mirrored_side == "test":
        train, test = _as_dataset(heads[:2] + heads[3:11] + [heads[2]]), _as_dataset([copy, heads[11]])
    else:
        train, test = _as_dataset(heads[:2] + heads[3:11] + [copy]), _as_dataset([heads[2], heads[11]])
    test.md5 = ["test0", "test1"]
    assert duplicates.copies_in(train, test).tolist() == [True, False]


def test_empty_and_single_image_sets_group_without_error():
    assert len(duplicates.group_images(_as_dataset([]))[0]) == 0
    assert duplicates.group_images(_as_dataset(_heads(1)))[0].tolist() == [0]
    assert duplicates.Detector().pairs(_as_dataset(_heads(2)), _as_dataset([]))[0].shape == (0, 2)


def test_a_weak_pair_without_keypoint_support_stays_out_at_any_threshold(monkeypatch):
    # a pair whose correlation sits in the weak band, and that no affine map supports: it must not count as
    # a near-duplicate, whatever threshold the run asks for (it used to fall to 0.4, still kept at 0.3)
    ds = _as_dataset(_heads(2))
    monkeypatch.setattr(duplicates, "verify", lambda *a, **k: np.full(len(a[2]), 0.8, np.float32))
    def checked(inliers: int, still: int):
        return lambda fa, fb, pairs, **_: (np.full(len(pairs), inliers, np.int64), np.zeros(len(pairs), bool),
                                      np.full(len(pairs), still, np.int64), np.zeros(len(pairs), bool))

    monkeypatch.setattr(duplicates, "copy_check", checked(0, 0))
    for threshold in (0.3, 0.72):
        pairs, scores = duplicates.Detector(threshold=threshold).pairs(ds)
        assert len(pairs) == 0, (threshold, scores)
    kept = {}
    for inliers, still in ((12, 0), (7, 0), (7, duplicates.STILL_MATCHES)):
        monkeypatch.setattr(duplicates, "copy_check", checked(inliers, still))
        kept[inliers, still] = len(duplicates.Detector().pairs(ds)[0])
    # a map on many matches is support; a handful of matches is support only where they sit still (chance
    # gives two unrelated slices a handful of matches on some map, rarely ones that did not move)
    assert kept == {(12, 0): 1, (7, 0): 0, (7, duplicates.STILL_MATCHES): 1}


def _stamped(head: np.ndarray) -> np.ndarray:
    """A synthetic head with a hospital's label and a side marker burned in (white text, the same place)."""
    out = cv2.cvtColor(head, cv2.COLOR_GRAY2RGB)
    cv2.putText(out, "ST. ELSEWHERE 1.5T", (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(out, "R", (230, 140), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _supported(inliers: np.ndarray, still: np.ndarray) -> np.ndarray:
    """The weak-pair support rule as the module states it: SUPPORT_INLIERS matches on one map, and from
    ALIGN_INLIERS on, or else STILL_MATCHES of them still."""
    return (inliers >= duplicates.SUPPORT_INLIERS) & ((inliers >= duplicates.ALIGN_INLIERS)
                                                      | (still >= duplicates.STILL_MATCHES))


def test_spread_keypoints_cover_the_head_where_text_takes_the_strongest():
    head = cv2.cvtColor(_heads(1)[0], cv2.COLOR_GRAY2RGB)
    cv2.putText(head, "www.example.org", (4, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    view = duplicates.copy_views([head])
    side, cells = duplicates.COPY_SIDE, duplicates.SUPPORT_GRID
    off_text = {}
    for spread in (False, True):
        (where, _, _, _), = duplicates.copy_features(view, spread=spread)
        on_text_rows = (where[:, 1] > side * 100 / 256) & (where[:, 1] < side * 140 / 256)
        off_text[spread] = int((~on_text_rows).sum())
        if spread:
            cell = (where[:, 1] * cells // side).astype(int) * cells + (where[:, 0] * cells // side).astype(int)
            assert np.bincount(cell).max() <= duplicates.SPREAD_PER_CELL
    assert off_text[False] < 10  # the 150 strongest crowd on the text's rows
    assert off_text[True] > 50  # spread, most are elsewhere


def test_a_label_burned_into_two_different_heads_gives_their_weak_pair_no_support(monkeypatch):
    # the same text at the same place lines up on one map with many still matches; counted on keypoints
    # spread over the picture, the heads themselves have to agree, and these do not (they are other heads).
    # Heads 0 and 2, 0 and 5: on the 150 strongest keypoints their label gave them 9 and 8 matches on one
    # map, 12 and 6 of them still (support); spread, 5 and 5
    heads = [_stamped(h) for h in _heads(6)]
    copy = stress.transform(heads[0], "jpeg", 50, np.random.default_rng(0))
    views = duplicates.copy_views([heads[0], heads[2], heads[5], copy])
    inliers, still = duplicates.keypoint_support(views, None, np.array([[0, 1], [0, 2], [0, 3]]))
    assert _supported(inliers, still).tolist() == [False, False, True]  # a copy of head 0 keeps its support
    monkeypatch.setattr(duplicates, "verify", lambda *a, **k: np.full(len(a[2]), 0.8, np.float32))  # weak band
    for i, j in ((0, 2), (0, 5)):  # so the whole search drops the pair
        assert len(duplicates.Detector().pairs(_as_dataset([heads[i], heads[j]]))[0]) == 0, (i, j)


def test_keypoint_support_is_the_same_between_two_sets_as_within_one_and_either_way_round():
    heads = [_stamped(h) for h in _heads(4)]
    views = duplicates.copy_views(heads + [stress.transform(heads[0], "shift", 0.03, np.random.default_rng(0))])
    within = np.array([(0, 2), (0, 4), (1, 3), (1, 4)])  # 0 and 1 against 2 to 4: two sets as well
    found = duplicates.keypoint_support(views, None, within)
    assert all((a == b).all() for a, b in zip(found, duplicates.keypoint_support(views, None, within[:, ::-1])))
    between = duplicates.keypoint_support(views[:2], views[2:], within - [0, 2])
    assert all((a == b).all() for a, b in zip(found, between))
    assert all((a == b).all() for a, b in zip(found, duplicates.keypoint_support(views, None, within)))  # again
    assert [len(x) for x in duplicates.keypoint_support(views, None, np.zeros((0, 2), np.int64))] == [0, 0]


def test_counting_only_gives_a_weak_pair_the_same_support_as_the_full_copy_check():
    # keypoint_support stops at the first map that explains ALIGN_INLIERS matches; the support decision must be
    # the one the full check (which goes on to test for copies) would give
    heads = [_stamped(h) for h in _heads(6)]
    rng = np.random.default_rng(0)
    copies = [stress.transform(h, "jpeg", 30, rng) for h in heads[:3]]
    features = duplicates.copy_features(duplicates.copy_views(heads + copies), spread=True)
    pairs = np.array([(i, j) for i in range(9) for j in range(i + 1, 9)])
    full = duplicates.copy_check(features, features, pairs)
    counted = duplicates.copy_check(features, features, pairs, counts_only=True)
    assert (_supported(full[0], full[2]) == _supported(counted[0], counted[2])).all()
    assert _supported(full[0], full[2]).any() and not _supported(full[0], full[2]).all()  # both kinds of pair
    # and pairs where the two part ways: a map of ALIGN_INLIERS matches or more that is not one picture
    assert ((full[0] >= duplicates.ALIGN_INLIERS) & ~full[1] & ~full[3]).any()
    assert not counted[1].any() and not counted[3].any()  # counting only: no copies called


def test_the_benchmark_counts_a_pair_raised_to_the_same_slice_score_as_the_same_slice():
    # the copy check raises a copy to SAME_SLICE as a float32; as a Python float that is 0.8999999762, which
    # fell below the Python float 0.9 and so was not counted as "same slice"

    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    scores = np.array([duplicates.SAME_SLICE, duplicates.JOIN_ALWAYS, 0.95], np.float32)
    groups = np.array([0, 0, 1, 1, 2, 2])
    labelled = np.array([[1, 0], [2, 3], [4, 5], [0, 2]])
    said = benchmark.said_of(labelled, pairs, scores, groups, same_slice=True)
    assert said["same_slice_pair"].tolist() == [True, False, True, False]
    assert said["pair"].tolist() == [True, True, True, False]
    assert said["group"].tolist() == [True, True, True, False]
    assert "same_slice_pair" not in benchmark.said_of(labelled, pairs, scores, groups, same_slice=False)


def test_the_copy_check_finds_by_a_similarity_map_the_crops_an_affine_map_skews():
    # a crop's affine fit is often skewed by a few percent (its matches crowd into part of the picture), too
    # far for the aligned correlation; on these heads, a third of the 25% crops
    heads = [cv2.cvtColor(h, cv2.COLOR_GRAY2RGB) for h in _heads(12)]
    rng = np.random.default_rng(0)
    crops = [stress.transform(h, "crop", 0.25, rng) for h in heads]
    features = duplicates.copy_features(duplicates.copy_views(heads + crops))
    _, copies, _, similar = duplicates.copy_check(features, features, np.array([(k, 12 + k) for k in range(12)]))
    assert (copies | similar).sum() >= 11 and (copies | similar).sum() >= copies.sum() + 3
    assert not (copies & similar).any()  # a pair is one or the other
    flipped = duplicates.copy_check(features, features, np.array([(12 + k, k) for k in range(12)]))
    assert (flipped[1] == copies).all() and (flipped[3] == similar).all()  # the same whichever way round
    others = np.array([(k, 12 + (k + 1) % 12) for k in range(12)])  # each head against another's crop
    _, copies, _, similar = duplicates.copy_check(features, features, others)
    assert not copies.any() and not similar.any()


def test_a_pair_one_picture_under_a_similarity_map_only_joins_but_is_not_the_same_slice(monkeypatch):
    # the similarity map also makes more adjacent slices of one scan look like one picture (the pair
    # benchmark): such a pair joins its groups (JOIN_ALWAYS), it is not listed as the same slice
    ds = _as_dataset(_heads(2))
    monkeypatch.setattr(duplicates, "verify", lambda *a, **k: np.full(len(a[2]), 0.5, np.float32))
    monkeypatch.setattr(duplicates, "copy_check", lambda fa, fb, pairs, **_: (
        np.full(len(pairs), 20, np.int64), np.zeros(len(pairs), bool), np.zeros(len(pairs), np.int64),
        np.ones(len(pairs), bool)))
    detector = duplicates.Detector()
    pairs, scores = detector.pairs(ds)
    assert pairs.tolist() == [[0, 1]] and scores[0] == np.float32(duplicates.JOIN_ALWAYS)
    assert not detector.same_slice(scores).any()
    assert duplicates.group_images(ds, detector)[0].tolist() == [0, 0]


def test_the_benchmark_counts_a_group_of_one_patient_right_only_in_its_patient_precision():
    truth = np.array([True, True, False, False, False])
    one_patient = np.array([False, False, True, False, False])  # labelled different, one person's head
    grouped = np.array([True, True, True, True, False])
    found = benchmark.patient_precision(truth, one_patient, grouped)
    assert (found["precision"], found["tp"], found["fp"]) == (0.75, 3, 1)
    assert benchmark.precision_recall(truth, grouped)["precision"] == 0.5


def test_the_pair_tools_never_write_over_an_existing_pair_file(tmp_path, capsys):
    labelled = tmp_path / "pairs.csv"
    labelled.write_text("pair,a,b,label\n0,x.jpg,y.jpg,same\n")
    before = labelled.read_text()
    assert benchmark.main(["sample", str(tmp_path / "nowhere"), str(labelled)]) == 2
    assert "may hold labels" in capsys.readouterr().err and labelled.read_text() == before
    argv = [str(tmp_path / "nowhere"), "--checked", str(labelled), "--to-label", str(labelled)]
    assert stress.main(argv) == 2
    assert "may hold labels" in capsys.readouterr().err and labelled.read_text() == before
    with pytest.raises(FileExistsError):
        benchmark.write_rows(labelled, [])
    assert labelled.read_text() == before


@pytest.mark.parametrize("rows, message", [
    ("0,x.jpg,x.jpg,same,report\n", "pair 0 joins x.jpg with itself"),
    ("0,x.jpg,y.jpg,same,report\n1,y.jpg,x.jpg,different,choose\n", "pairs 0 and 1 are one pair"),
    ("0,x.jpg,y.jpg,same,Report\n", "pair 0 has part 'Report'"),
])
def test_a_pair_file_that_would_be_miscounted_is_a_one_line_error(tmp_path, rows, message):
    path = tmp_path / "pairs.csv"
    path.write_text("pair,a,b,label,part\n" + rows)
    with pytest.raises(UserError, match=message):
        benchmark.read_rows(path)


def test_measuring_pairs_whose_images_are_not_in_the_data_is_a_one_line_error(tmp_path):
    for k, head in enumerate(_heads(2)):
        (tmp_path / "data" / "no_tumor").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / "no_tumor" / f"h{k}.png"), head)
    path = tmp_path / "pairs.csv"
    path.write_text("pair,a,b,label,part\n0,no_tumor/h0.png,no_tumor/h9.png,same,report\n")
    with pytest.raises(UserError, match="pair 0: no_tumor/h9.png is not in"):
        benchmark.measure(tmp_path / "data", path)
    path.write_text("pair,a,b,label\n0,no_tumor/h0.png,no_tumor/h1.png,same\n")
    with pytest.raises(UserError, match="no column part"):
        benchmark.measure(tmp_path / "data", path)
