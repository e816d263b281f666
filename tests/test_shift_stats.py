"""The shift score's statistics (stats leaf): Ledoit-Wolf Mahalanobis distances, cross-fitted
development scores, the shift percentile and the reference file."""

import io

import numpy as np
import pytest

from thyroid.stats import shift


def _gaussian(n, dimension, seed, offset=0.0):
    """Correlated features: a few latent factors plus noise, the shape of pooled activations."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(4, dimension))
    return rng.normal(size=(n, 4)) @ mixing + rng.normal(size=(n, dimension)) + offset


def _folds(n, k=5, seed=0):
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def test_fresh_images_like_the_development_ones_are_rarely_unusual_and_shifted_ones_are():
    development = _gaussian(300, 40, seed=1)
    reference = shift.fit_reference(development, _folds(300), "test features")
    fresh = reference.shift(_gaussian(2000, 40, seed=2))
    moved = reference.shift(_gaussian(300, 40, seed=3, offset=1.5))
    unusual_share = float(np.mean(shift.is_unusual(fresh)))
    print(f"fresh unusual {unusual_share:.3f}, median shift {np.median(fresh):.1f}; "
          f"moved median shift {np.median(moved):.1f}")
    assert unusual_share <= 0.03
    assert 35 <= np.median(fresh) <= 65      # a fresh image sits among the development ones
    assert np.mean(shift.is_unusual(moved)) > 0.9
    assert fresh.min() >= 0 and fresh.max() <= 100


def test_development_scores_are_cross_fitted_not_in_sample():
    development = _gaussian(120, 30, seed=4)
    folds = _folds(120, k=4)
    scores = shift.cross_fitted_scores(development, folds)
    part = folds[2]
    others = np.setdiff1d(np.arange(120), part)
    expected = shift.fit_distance(development[others]).scores(development[part])
    np.testing.assert_allclose(scores[part], expected)
    in_sample = shift.fit_distance(development).scores(development)
    assert np.median(scores) > np.median(in_sample)   # a reference without the image is farther


def test_shift_counts_development_scores_strictly_below():
    development = np.array([1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(shift.shift_of_scores(development, [0.5, 2.0, 2.5, 9.0]),
                               [0.0, 25.0, 75.0, 100.0])
    assert list(shift.is_unusual(np.array([99.0, 99.5]))) == [False, True]


@pytest.mark.parametrize("parts, words", [
    ([np.arange(0, 10)], "at least two folds"),
    ([np.arange(0, 10), np.arange(5, 20)], "in several"),
    ([np.arange(0, 10), np.arange(10, 15)], "in none"),
])
def test_cross_fitting_refuses_folds_that_do_not_cover_every_image_once(parts, words):
    with pytest.raises(ValueError, match=words):
        shift.cross_fitted_scores(_gaussian(20, 5, seed=0), parts)


def test_bad_features_are_refused_with_their_reason():
    reference = shift.fit_reference(_gaussian(40, 6, seed=0), _folds(40), "f")
    with pytest.raises(ValueError, match="7 columns; the reference was fitted on 6"):
        reference.scores(np.zeros((3, 7)))
    rows = _gaussian(40, 6, seed=0)
    rows[3, 2] = np.nan
    with pytest.raises(ValueError, match="1 rows hold NaN"):
        shift.fit_distance(rows)
    with pytest.raises(ValueError, match="at least 5 images"):
        shift.fit_distance(_gaussian(4, 6, seed=0))


def test_the_reference_file_round_trips(tmp_path):
    development = _gaussian(60, 12, seed=5)
    reference = shift.fit_reference(development, _folds(60), "efficientnet_lite0 test")
    path = tmp_path / shift.FILE_NAME
    path.write_bytes(shift.reference_bytes(reference))
    loaded = shift.read_reference(str(path))
    probe = _gaussian(25, 12, seed=6, offset=0.5)
    np.testing.assert_array_equal(loaded.shift(probe), reference.shift(probe))
    assert loaded.features == "efficientnet_lite0 test" and loaded.dimension == 12
    with np.load(path, allow_pickle=False) as stored:    # plain arrays, no pickles
        assert set(stored.files) == set(shift.ARRAYS)


def _arrays(reference):
    with np.load(io.BytesIO(shift.reference_bytes(reference)), allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def _spoil(arrays, name, value):
    changed = dict(arrays)
    if value is None:
        del changed[name]
    else:
        changed[name] = value
    return changed


SPOILED = [
    ("mean", None, "no mean"),
    ("format", np.int64(2), "format 2"),
    ("precision", np.zeros((3, 3)), "precision has shape"),
    ("scale", np.full(8, np.nan), "scale holds NaN"),
    ("scale", -np.ones(8), "scale must be positive"),
    ("development_scores", np.array([3.0, 1.0]), "sorted"),
    ("development_scores", np.array([1.0, np.inf]), "finite"),
    ("development_scores", np.zeros((2, 2)), "one score per image"),
    ("features", np.str_(""), "features must name"),
    ("mean", np.zeros(8, np.int64), "mean has shape"),
    ("precision", np.triu(np.ones((8, 8))), "precision is not symmetric"),
]


@pytest.mark.parametrize("name, value, words", SPOILED)
def test_a_spoiled_reference_file_is_refused_in_one_line_naming_it(tmp_path, name, value, words):
    arrays = _arrays(shift.fit_reference(_gaussian(30, 8, seed=7), _folds(30), "f"))
    path = tmp_path / "shift_reference.npz"
    np.savez(path, **_spoil(arrays, name, value))
    with pytest.raises(shift.ShiftReferenceError) as caught:
        shift.read_reference(str(path))
    message = str(caught.value)
    assert words in message and message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    (b"not a zip file at all", "not a readable shift reference"),
    ("npy", "a single array"),
])
def test_missing_or_foreign_files_are_refused_in_one_line(tmp_path, content, words):
    path = tmp_path / "shift_reference.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(shift.ShiftReferenceError) as caught:
        shift.read_reference(str(path))
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
