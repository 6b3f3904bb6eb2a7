"""FID, KID, L1 and the Inception feature extractor, checked against independent computations."""

import os

import numpy as np
import pytest
import scipy.linalg

from tfcyclegan.eval import metrics


def _features(seed, n, d, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ mixing) * scale + shift


# -- FID -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, d", [(200, 8), (20, 64), (10, 2048)])  # also fewer images than dimensions
def test_fid_of_a_set_against_itself_is_zero(n, d):
    x = _features(0, n, d)
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8 * d)


@pytest.mark.parametrize("n, m, d", [(300, 250, 10), (20, 15, 64)])  # covariance and cross-Gram routes
def test_fid_matches_scipy_sqrtm(n, m, d):
    x, y = _features(1, n, d), _features(2, m, d, shift=0.3, scale=1.5)
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_x @ s_y).real  # the textbook formula, computed another way
    expected = np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2 * covmean)
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet_distance(y, x) == pytest.approx(expected, rel=1e-6)  # symmetric
    from_stats = metrics.frechet_distance_from_stats(*metrics.gaussian_stats(x), *metrics.gaussian_stats(y))
    assert from_stats == pytest.approx(expected, rel=1e-6)


def test_fid_of_diagonal_gaussians_is_analytic():
    mu_x, mu_y = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_x, var_y = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = np.sum((mu_x - mu_y) ** 2) + np.sum((np.sqrt(var_x) - np.sqrt(var_y)) ** 2)  # 5 + 1 + 0 + 4
    got = metrics.frechet_distance_from_stats(mu_x, np.diag(var_x), mu_y, np.diag(var_y))
    assert got == pytest.approx(expected) == pytest.approx(10.0)


def test_fid_grows_with_the_shift():
    x = _features(3, 200, 6)
    values = [metrics.frechet_distance(x, _features(4, 200, 6, shift=s)) for s in (0.0, 0.5, 1.0)]
    assert values[0] < values[1] < values[2]


def test_fid_rejects_bad_features():
    with pytest.raises(metrics.MetricsError, match="at least 2"):
        metrics.frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(metrics.MetricsError, match="NaN"):
        metrics.frechet_distance(np.full((3, 4), np.nan), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2-D"):
        metrics.frechet_distance(np.zeros((3, 4, 1)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.frechet_distance(np.zeros((3, 4)), np.zeros((5, 3)))


# -- KID -----------------------------------------------------------------------------------------


def _mmd2_unbiased_loops(x, y):
    """The U-statistic written out pair by pair, independent of the vectorized version."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_pairwise_loops():
    x, y = _features(5, 12, 5), _features(6, 9, 5, shift=0.4)
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-10)
    kid = metrics.kernel_inception_distance(x, y)  # both sets smaller than a subset: used whole
    assert (kid.subsets, kid.std) == (1, 0.0)
    assert kid.mean == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-10)


def test_kid_subsets_average_the_unbiased_estimate():
    x, y = _features(7, 40, 4), _features(8, 30, 4, shift=0.5)
    kid = metrics.kernel_inception_distance(x, y, subsets=20, subset_size=10, seed=3)
    rng = np.random.default_rng(3)
    expected = [
        _mmd2_unbiased_loops(x[rng.choice(40, 10, replace=False)], y[rng.choice(30, 10, replace=False)]) for _ in range(20)
    ]
    assert kid.mean == pytest.approx(np.mean(expected), rel=1e-9)
    assert kid.std == pytest.approx(np.std(expected), rel=1e-9)
    assert (kid.subsets, kid.subset_size) == (20, 10)
    assert metrics.kernel_inception_distance(x, y, subsets=20, subset_size=10, seed=3) == kid  # seeded


def _exact_mmd2(points_x, points_y):
    """MMD^2 of two uniform distributions over finite point sets: exact expectations over pairs."""
    k = metrics.polynomial_kernel
    return k(points_x, points_x).mean() + k(points_y, points_y).mean() - 2 * k(points_x, points_y).mean()


@pytest.mark.parametrize("same", [True, False])
def test_kid_is_unbiased_on_a_known_case(same):
    # Samples from uniform distributions over a few points in 2-D: the true MMD^2 is a finite sum.
    points_x = np.array([[1.0, 0.0], [0.0, 2.0], [-1.5, 1.0]])
    points_y = points_x if same else np.array([[2.0, 1.0], [0.5, -1.0], [0.0, 0.0]])
    truth = _exact_mmd2(points_x, points_y)
    rng = np.random.default_rng(11)
    m, trials = 4, 6000
    unbiased, biased = [], []
    for _ in range(trials):
        x, y = points_x[rng.integers(0, 3, m)], points_y[rng.integers(0, 3, m)]
        unbiased.append(metrics.mmd2_unbiased(x, y))
        k = metrics.polynomial_kernel
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())  # the V-statistic
    stderr = np.std(unbiased) / np.sqrt(trials)
    assert abs(np.mean(unbiased) - truth) < 4 * stderr
    # The plain (biased) estimate is off by far more than the noise: the test can fail.
    assert np.mean(biased) - truth > 10 * stderr
    if same:
        assert truth == pytest.approx(0.0, abs=1e-12)


# -- L1 ----------------------------------------------------------------------------------------------


def test_mean_l1():
    x = np.zeros((2, 4, 4, 3), np.float32)
    y = np.full((2, 4, 4, 3), -0.5, np.float32)
    y[0] = 1.0
    assert metrics.mean_l1(x, y) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="equal shapes"):
        metrics.mean_l1(x, y[:1])


# -- Inception weights and features ----------------------------------------------------------------


def test_missing_inception_weights_say_how_to_provide_them(tmp_path, monkeypatch):
    cached = tmp_path / "models" / metrics.INCEPTION_WEIGHTS_FILE
    monkeypatch.setattr(metrics, "inception_cache_paths", lambda: [str(cached)])
    with pytest.raises(metrics.MetricsError) as e:
        metrics.resolve_inception_weights("imagenet")
    message = str(e.value)
    assert str(cached) in message and "--inception_weights=" in message and metrics.INCEPTION_WEIGHTS_MD5 in message
    cached.parent.mkdir()
    cached.write_bytes(b"not weights")
    with pytest.raises(metrics.MetricsError, match="corrupt"):
        metrics.resolve_inception_weights("imagenet")
    missing = str(tmp_path / "nowhere.h5")
    with pytest.raises(metrics.MetricsError, match="nowhere.h5"):
        metrics.resolve_inception_weights(missing)
    assert metrics.resolve_inception_weights("random") == (None, metrics.RANDOM_WEIGHTS_NOTE)


def test_cache_path_follows_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert metrics.inception_cache_paths()[0] == os.path.join(str(tmp_path), "models", metrics.INCEPTION_WEIGHTS_FILE)


def test_resize_is_antialiased():
    # A 1-pixel checkerboard shrunk 3x: antialiasing averages it to grey, point sampling would keep +-1.
    board = np.indices((300, 300)).sum(0) % 2 * 2.0 - 1.0
    images = np.repeat(board[None, :, :, None], 3, axis=-1).astype(np.float32)
    out = metrics.resize_for_inception(images, size=100).numpy()
    assert out.shape == (1, 100, 100, 3)
    assert np.abs(out).max() < 0.4
    small = metrics.resize_for_inception(np.full((2, 32, 32, 3), 0.5, np.float32)).numpy()
    np.testing.assert_allclose(small, 0.5, atol=1e-6)


def test_random_inception_features():
    features = metrics.InceptionFeatures("random", batch_size=4)
    assert features.is_random and "TESTING ONLY" in features.description
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    out = features(images)
    assert out.shape == (5, metrics.FEATURE_DIM) and out.dtype == np.float64
    assert np.all(np.isfinite(out)) and out.std() > 1e-3
    assert not np.allclose(out[0], out[1])
    # Batching does not change the features; any input size is resized to 299.
    np.testing.assert_allclose(features(images[3:]), out[3:], rtol=1e-4, atol=1e-5)
    assert features(rng.uniform(-1, 1, (1, 80, 60, 3)).astype(np.float32)).shape == (1, metrics.FEATURE_DIM)
