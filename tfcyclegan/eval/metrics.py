"""Image-translation metrics: FID, KID, InceptionV3 features, cycle and identity L1.

Everything here is pure computation on arrays; nothing reads workdirs or writes files.

Features (`InceptionFeatures`): Keras InceptionV3, include_top=False, pooling="avg", so one
2048-d vector per image. Images float32 (n, H, W, 3) in [-1, 1] are resized to 299 x 299 with
`tf.image.resize(method="bilinear", antialias=True)`: antialiasing matters when shrinking
(e.g. 512 -> 299), where plain bilinear aliases and shifts FID; upsampling is unaffected. The
result is clipped to [-1, 1], which is already the input range InceptionV3 expects
(`keras.applications.inception_v3.preprocess_input` maps [0, 255] to [-1, 1]).

These are the Keras ImageNet weights, not the TF-slim "2015-12-05" graph that published FIDs
use, so our FID and KID compare runs of this project with each other, not with papers.

FID (Heusel et al., 2017): ||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^(1/2)) of Gaussians
fitted to the two feature sets. Its estimate is biased upward by roughly 1/N: below
`FID_MIN_IMAGES` images per set (the feature dimension, where the covariance becomes singular)
numbers are only comparable at equal N and the report warns. Tr((S_x S_y)^(1/2)) is computed
as the sum of square roots of the eigenvalues of S_x^(1/2) S_y S_x^(1/2), a symmetric PSD
matrix with the same eigenvalues as S_x S_y, which avoids the complex round-off of sqrtm; for
small sets, as the nuclear norm of the n x m cross-Gram matrix (see `frechet_distance`).

KID (Binkowski et al., 2018): the unbiased estimate of the squared MMD with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets (100 of 1,000 by
default, as in the paper); unbiased at any N, so the better number for small test splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable, Iterable

import numpy as np

FID_MIN_IMAGES = 2048
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_WEIGHTS_FILE
)
RANDOM_WEIGHTS = "random"
RANDOM_WEIGHTS_NOTE = "random (TESTING ONLY: FID and KID from random Inception weights mean nothing)"


class MetricsError(RuntimeError):
    """A metric cannot be computed (missing Inception weights, too few images); says why and how to fix it."""


# -- L1 errors ---------------------------------------------------------------------------------


def mean_l1(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute difference of two image batches of the same shape, on their own scale.

    For images in [-1, 1] the result is in [0, 2]; half of it is the error on a [0, 1] scale.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"mean_l1 needs equal shapes. Received: {x.shape} and {y.shape}")
    return float(np.mean(np.abs(x - y)))


# -- FID -----------------------------------------------------------------------------------------


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d), float64, of features (n, d) with n >= 2."""
    features = _check_features(features, "features", minimum=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_from_stats(mu_x, sigma_x, mu_y, sigma_y) -> float:
    """Frechet distance between N(mu_x, sigma_x) and N(mu_y, sigma_y); >= 0, float."""
    mu_x, mu_y = np.asarray(mu_x, np.float64), np.asarray(mu_y, np.float64)
    sigma_x, sigma_y = np.atleast_2d(sigma_x).astype(np.float64), np.atleast_2d(sigma_y).astype(np.float64)
    if mu_x.shape != mu_y.shape or sigma_x.shape != sigma_y.shape:
        raise ValueError(f"Mismatched statistics: means {mu_x.shape} vs {mu_y.shape}, covariances {sigma_x.shape} vs {sigma_y.shape}")
    sqrt_x = _psd_sqrt(sigma_x)
    middle = sqrt_x @ sigma_y @ sqrt_x
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu_x - mu_y
    value = float(diff @ diff + np.trace(sigma_x) + np.trace(sigma_y) - 2.0 * trace_sqrt)
    # Round-off can leave a tiny negative number for identical sets.
    return max(value, 0.0)


def frechet_distance(features_x: np.ndarray, features_y: np.ndarray) -> float:
    """FID between two feature sets (n, d) and (m, d), n, m >= 2.

    With few images (the usual case for a test split) the d x d covariances are never formed:
    with centred features X (n, d), Y (m, d), S_x = X'X / (n-1) and S_y = Y'Y / (m-1), the
    nonzero eigenvalues of S_x S_y are the squared singular values of
    A = X Y' / sqrt((n-1)(m-1)) (n x m), so Tr((S_x S_y)^(1/2)) is A's nuclear norm - exact,
    and far cheaper than a 2048 x 2048 eigendecomposition when n, m << d.
    """
    x = _check_features(features_x, "features_x", minimum=2)
    y = _check_features(features_y, "features_y", minimum=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    (n, d), m = x.shape, len(y)
    if max(n, m) * min(n, m) ** 2 >= d**3:
        return frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    trace_x = float(np.sum(xc * xc)) / (n - 1)
    trace_y = float(np.sum(yc * yc)) / (m - 1)
    trace_sqrt = float(np.sum(np.linalg.svd(xc @ yc.T, compute_uv=False))) / np.sqrt((n - 1) * (m - 1))
    diff = x.mean(axis=0) - y.mean(axis=0)
    return max(float(diff @ diff) + trace_x + trace_y - 2.0 * trace_sqrt, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


# -- KID -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KID:
    """KID estimate: mean and standard deviation over `subsets` subsets of `subset_size` images."""

    mean: float
    std: float
    subsets: int
    subset_size: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs: (n, d), (m, d) -> (n, m) float64."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(features_x: np.ndarray, features_y: np.ndarray) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel; can be slightly negative.

    Sums over i != j within each set (the diagonal k(x_i, x_i) is what biases the plain
    estimate upward), all pairs across sets.
    """
    x = _check_features(features_x, "features_x", minimum=2)
    y = _check_features(features_y, "features_y", minimum=2)
    n, m = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    term_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    term_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(term_x + term_y - 2.0 * k_xy.mean())


def kernel_inception_distance(
    features_x: np.ndarray, features_y: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> KID:
    """KID between two feature sets (n, d) and (m, d).

    Each of `subsets` draws takes min(subset_size, n) rows of x and min(subset_size, m) rows of
    y without replacement; when both sets are no larger than subset_size every draw would be
    the same, so the whole sets are used once (std 0).
    """
    x = _check_features(features_x, "features_x", minimum=2)
    y = _check_features(features_y, "features_y", minimum=2)
    size_x, size_y = min(subset_size, len(x)), min(subset_size, len(y))
    if size_x == len(x) and size_y == len(y):
        return KID(mmd2_unbiased(x, y), 0.0, 1, max(size_x, size_y))
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(x[rng.choice(len(x), size_x, replace=False)], y[rng.choice(len(y), size_y, replace=False)])
        for _ in range(subsets)
    ]
    return KID(float(np.mean(values)), float(np.std(values)), subsets, max(size_x, size_y))


def _check_features(features, name: str, *, minimum: int) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, d). Received shape {features.shape}")
    if len(features) < minimum:
        raise MetricsError(f"{name} needs at least {minimum} rows (images). Received: {len(features)}")
    if not np.all(np.isfinite(features)):
        raise MetricsError(f"{name} contains NaN or infinite values")
    return features


# -- Inception features -----------------------------------------------------------------------


def inception_cache_paths() -> list[str]:
    """Where Keras caches InceptionV3's no-top weights, in the order Keras itself uses.

    `$KERAS_HOME/models/` if KERAS_HOME is set, else `~/.keras/models/`; Keras falls back to
    `/tmp/.keras/models/` when the home directory is not writable.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [os.path.join(base, "models", INCEPTION_WEIGHTS_FILE) for base in (home, os.path.join("/tmp", ".keras"))]


def inception_cache_path() -> str:
    """The cached weights file that exists, else the primary cache location."""
    paths = inception_cache_paths()
    return next((p for p in paths if os.path.isfile(p)), paths[0])


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_weights_message(path: str) -> str:
    return (
        f"InceptionV3 ImageNet weights (needed for FID/KID) are not in the Keras cache: {path} does not exist.\n"
        "Provide them in one of these ways:\n"
        f"  1. on a machine with internet: python -c \"import keras; keras.applications.InceptionV3(include_top=False)\"\n"
        f"     (Keras downloads {INCEPTION_WEIGHTS_FILE} to {os.path.dirname(path)}/; copy that file here);\n"
        f"  2. download {INCEPTION_WEIGHTS_URL} (md5 {INCEPTION_WEIGHTS_MD5}) yourself and pass\n"
        "     --inception_weights=/path/to/that.h5 (or put it at the cache path above);\n"
        "  3. --inception_weights=download lets Keras fetch it now (needs internet).\n"
        "--inception_weights=random exists for tests only: its FID/KID mean nothing.\n"
        "A CycleGAN run can be evaluated without them: --inception_weights=none gives every figure but FID and KID."
    )


def resolve_inception_weights(weights: str = "imagenet") -> tuple[str | None, str]:
    """Checks where the Inception weights come from without downloading anything.

    weights: "imagenet" (the Keras cache only, never a download), "download" (let Keras fetch
      them if not cached), "random" (tests only) or a path to an .h5/.weights.h5 file.
    Returns (path or None, description for the report). Raises MetricsError naming the path
    when the weights are missing or corrupt.
    """
    if weights == RANDOM_WEIGHTS:
        return None, RANDOM_WEIGHTS_NOTE
    if weights == "download":
        return "download", "imagenet (Keras InceptionV3, downloaded to the Keras cache if needed)"
    if weights == "imagenet":
        path = inception_cache_path()
        if not os.path.isfile(path):
            raise MetricsError(_missing_weights_message(path))
        if _md5(path) != INCEPTION_WEIGHTS_MD5:
            raise MetricsError(
                f"{path} is corrupt (md5 differs from {INCEPTION_WEIGHTS_MD5}); delete it and provide it again.\n"
                + _missing_weights_message(path)
            )
        return path, f"imagenet (Keras InceptionV3, {path})"
    if not os.path.isfile(weights):
        raise MetricsError(f"--inception_weights={weights!r}: no such file. " + _missing_weights_message(inception_cache_path()))
    digest = _md5(weights)
    kind = "imagenet (Keras InceptionV3" if digest == INCEPTION_WEIGHTS_MD5 else "user weights (not the Keras ImageNet file"
    return weights, f"{kind}, {weights}, md5 {digest})"


def build_inception(weights: str = "imagenet", *, seed: int = 0):
    """Keras InceptionV3 feature extractor: (batch, H, W, 3) in [-1, 1] -> (batch, 2048).

    See `resolve_inception_weights` for `weights`. "random" fills every kernel from a
    He-normal with a fixed numpy seed (batch-norm statistics stay at 0 / 1), so the features
    are deterministic and of order 1 - good enough to exercise the code, meaningless as a metric.
    """
    import keras

    path, _ = resolve_inception_weights(weights)
    if path == "download":
        return keras.applications.InceptionV3(include_top=False, weights="imagenet", pooling="avg")
    model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg")
    if path is None:
        rng = np.random.default_rng(seed)
        for variable in model.weights:
            if variable.path.endswith("kernel"):
                fan_in = int(np.prod(variable.shape[:-1]))
                variable.assign(rng.standard_normal(variable.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
    else:
        try:
            model.load_weights(path)
        except (ValueError, OSError) as e:
            raise MetricsError(f"Cannot load InceptionV3 weights from {path}: {e}") from e
    return model


def resize_for_inception(images, size: int = INCEPTION_SIZE):
    """float32 (n, H, W, 3) in [-1, 1] -> float32 tf.Tensor (n, size, size, 3) in [-1, 1].

    Bilinear with antialias=True (a proper low-pass filter when shrinking), then clipped.
    """
    import tensorflow as tf

    resized = tf.image.resize(tf.convert_to_tensor(images, tf.float32), (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, -1.0, 1.0)


class InceptionFeatures:
    """Callable: images float32 (n, H, W, 3) in [-1, 1] -> float64 features (n, 2048).

    weights: see `resolve_inception_weights`. `description` is what the report prints.
    """

    def __init__(self, weights: str = "imagenet", *, batch_size: int = 16, size: int = INCEPTION_SIZE):
        import tensorflow as tf

        _, self.description = resolve_inception_weights(weights)
        self.weights = weights
        self.is_random = weights == RANDOM_WEIGHTS
        self.batch_size = batch_size
        self.size = size
        self.model = build_inception(weights)
        model = self.model
        # One trace for every call: batches are resized eagerly, then padded to batch_size.
        self._features = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec((batch_size, size, size, 3), tf.float32)],
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (n, H, W, 3). Received shape {images.shape}")
        out = []
        for batch in batched(images, self.batch_size):
            resized = resize_for_inception(batch, self.size).numpy()
            padded = np.zeros((self.batch_size, self.size, self.size, 3), np.float32)
            padded[: len(batch)] = resized
            out.append(np.asarray(self._features(padded), np.float64)[: len(batch)])
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


def batched(images: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
    """Consecutive slices of at most batch_size images."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


FeatureFn = Callable[[np.ndarray], np.ndarray]
