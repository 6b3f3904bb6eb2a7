"""The attribute oracle: a small CNN that tells domain A from domain B.

It answers "did the translation change the attribute?": the flip rate of A -> B is the share
of translated A images the oracle calls B. Its own test accuracy is stored beside it, so a
flip rate can be judged at a glance (a 70 % oracle cannot certify a 90 % flip rate).

On-disk format, a directory (`tfcyclegan-evaluate train_oracle --output=DIR`):

    DIR/oracle.keras   Keras 3 model: float32 (batch, H, W, 3) in [-1, 1] -> float32 (batch, 1)
                       logits of P(domain B); fully convolutional with global average pooling,
                       trained at `size` x `size` (inputs are resized to it by `Oracle`).
    DIR/oracle.json    {"format": "tfcyclegan-oracle", "version": 1, "size", "threshold" (0.5 on
                       the probability), "data" (dataset, task, domain_a, domain_b), "counts",
                       "test_accuracy", "test_accuracy_a", "test_accuracy_b",
                       "balanced_test_accuracy", "val_accuracy", "epochs_trained", "created",
                       "software"}

Any object with `predict_b(images) -> probabilities (n,)` can stand in for an `Oracle`
(tests use fakes with known answers).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Mapping, Protocol

import numpy as np

from tfcyclegan.io import write_json

MODEL_FILE = "oracle.keras"
META_FILE = "oracle.json"
FORMAT = "tfcyclegan-oracle"
VERSION = 1
MIN_IMAGES_PER_DOMAIN = 10


class OracleError(RuntimeError):
    """An oracle cannot be loaded or trained; the message names the path or the count."""


class DomainClassifier(Protocol):
    def predict_b(self, images: np.ndarray) -> np.ndarray:
        """images float32 (n, H, W, 3) in [-1, 1] -> float (n,) probability of domain B."""


AUGMENTATIONS = ("flip", "flip_shift")


def build_oracle_model(*, filters: int = 32, stages: int = 5, dropout: float = 0.3, augment: str = "flip_shift",
                       name: str = "oracle"):
    """`stages` conv 3x3 -> batch norm -> ReLU -> max-pool stages (filters x 1, 2, 4, ...),
    global average pooling, dropout, one logit. images: float32 (batch, H, W, 3) in [-1, 1],
    H, W >= 2**stages.

    Augmentation is part of the model (active in training only), so it travels with it and
    inference is unchanged: "flip" (random horizontal flips) or "flip_shift" (also shifts of up
    to 6 % and zooms of up to 8 %: the jitter of face alignment, which a translated face also has).
    """
    import keras

    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}. Received: {augment!r}")
    inputs = keras.Input((None, None, 3), name="images", dtype="float32")
    x = keras.layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    if augment == "flip_shift":
        x = keras.layers.RandomTranslation(0.06, 0.06, fill_mode="reflect", name="augment_shift")(x)
        x = keras.layers.RandomZoom(0.08, fill_mode="reflect", name="augment_zoom")(x)
    for i, mult in enumerate((2**k for k in range(stages)), start=1):
        x = keras.layers.Conv2D(filters * mult, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)  # short runs: fast-moving statistics
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, outputs, name=name)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be float32 (n, H, W, 3) in [-1, 1]. Received shape {images.shape}")
    if images.shape[1:3] == (size, size):
        return images
    import tensorflow as tf

    resized = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    return np.clip(resized.numpy(), -1.0, 1.0)


class Oracle:
    """A trained domain classifier and its metadata (see the module docstring)."""

    def __init__(self, model, meta: Mapping[str, Any]):
        self.model = model
        self.meta = dict(meta)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def test_accuracy(self) -> float | None:
        return self.meta.get("test_accuracy")

    def predict_b(self, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """images float32 (n, H, W, 3) in [-1, 1] -> float64 (n,) probability of domain B."""
        images = _resize(images, self.size)
        logits = [np.asarray(self.model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
        if not logits:
            return np.zeros((0,))
        logits = np.concatenate(logits).reshape(-1).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-logits))

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.model.save(os.path.join(directory, MODEL_FILE))
        write_json(os.path.join(directory, META_FILE), self.meta)


def load_oracle(directory: str) -> Oracle:
    """Loads an oracle directory written by `Oracle.save`; OracleError naming the missing path."""
    import keras

    if not os.path.isdir(directory):
        raise OracleError(
            f"Oracle directory {directory!r} does not exist: train one with "
            f"tfcyclegan-evaluate train_oracle --output={directory} ..."
        )
    meta_path, model_path = os.path.join(directory, META_FILE), os.path.join(directory, MODEL_FILE)
    for path in (meta_path, model_path):
        if not os.path.isfile(path):
            raise OracleError(f"{path} is missing: {directory!r} is not a complete oracle directory.")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise OracleError(f"{meta_path} is not valid JSON: {e}") from e
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise OracleError(f"{meta_path} is not a {FORMAT} v{VERSION} file. Received: {meta.get('format')!r} v{meta.get('version')!r}")
    try:
        model = keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError) as e:
        raise OracleError(f"Cannot load the oracle model {model_path}: {e}") from e
    return Oracle(model, meta)


# -- flip rate -------------------------------------------------------------------------------------


def called_b(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """bool (n,): the oracle's decision "domain B" (probability >= threshold)."""
    return np.asarray(probabilities, np.float64).reshape(-1) >= threshold


def flip_rate(probabilities_b: np.ndarray, *, source: str, threshold: float = 0.5) -> float:
    """Share of images from `source` ("a" or "b") that the oracle assigns to the other domain.

    probabilities_b: the oracle's P(B) for the (translated) images, (n,), n >= 1.
    """
    if source not in ("a", "b"):
        raise ValueError(f"source must be 'a' or 'b'. Received: {source!r}")
    decisions = called_b(probabilities_b, threshold)
    if decisions.size == 0:
        raise ValueError("flip_rate needs at least one image")
    flipped = decisions if source == "a" else ~decisions
    return float(flipped.mean())


def accuracy(oracle: DomainClassifier, images_a: np.ndarray, images_b: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy on real images of both domains: overall, per domain, balanced (mean of the two)."""
    right_a = ~called_b(oracle.predict_b(images_a), threshold)
    right_b = called_b(oracle.predict_b(images_b), threshold)
    acc_a, acc_b = float(right_a.mean()), float(right_b.mean())
    return {
        "accuracy": float(np.concatenate([right_a, right_b]).mean()),
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "balanced_accuracy": (acc_a + acc_b) / 2.0,
    }


# -- training --------------------------------------------------------------------------------------


def _split_validation(count: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    n_val = max(1, int(round(count * fraction)))
    return order[n_val:], order[:n_val]


def train_oracle(
    train_a: np.ndarray,
    train_b: np.ndarray,
    test_a: np.ndarray,
    test_b: np.ndarray,
    *,
    size: int = 64,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    val_fraction: float = 0.15,
    patience: int = 6,
    filters: int = 32,
    stages: int = 5,
    augment: str = "flip_shift",
    seed: int = 0,
    verbose: int = 1,
    data: Mapping[str, Any] | None = None,
) -> Oracle:
    """Trains an A-vs-B classifier on train_* and measures it on test_*.

    Adam with a cosine decay to zero over `epochs`; a stratified `val_fraction` of train_* is
    held out for early stopping on the validation loss, watched from epoch epochs // 2 (early
    epochs swing too much to judge), and the best watched epoch's weights are kept.

    Images: float32 (n, H, W, 3) in [-1, 1], resized to `size`. Classes are weighted inversely
    to their counts, so an unbalanced pair does not teach "always B". Seeds Keras' global RNGs
    with `seed` (the run is reproducible up to thread scheduling). verbose: Keras fit's
    (1 = progress bar, 2 = a line per epoch, 0 = silent).
    `data` (dataset, task, domains) is stored in the metadata as given.
    """
    import keras
    import tensorflow as tf

    for name, images in (("train_a", train_a), ("train_b", train_b), ("test_a", test_a), ("test_b", test_b)):
        minimum = MIN_IMAGES_PER_DOMAIN if name.startswith("train") else 1
        if len(images) < minimum:
            raise OracleError(f"{name} has {len(images)} images; the oracle needs at least {minimum}.")
    train_a, train_b = _resize(train_a, size), _resize(train_b, size)
    test_a, test_b = _resize(test_a, size), _resize(test_b, size)

    rng = np.random.default_rng(seed)
    fit_a, val_a = _split_validation(len(train_a), val_fraction, rng)
    fit_b, val_b = _split_validation(len(train_b), val_fraction, rng)
    x_fit = np.concatenate([train_a[fit_a], train_b[fit_b]])
    y_fit = np.concatenate([np.zeros(len(fit_a)), np.ones(len(fit_b))]).astype(np.float32)
    x_val = np.concatenate([train_a[val_a], train_b[val_b]])
    y_val = np.concatenate([np.zeros(len(val_a)), np.ones(len(val_b))]).astype(np.float32)

    keras.utils.set_random_seed(seed)
    model = build_oracle_model(filters=filters, stages=stages, augment=augment)
    model.compile(
        # Cosine decay to zero over `epochs`: the last epochs settle instead of swinging.
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * -(-len(x_fit) // batch_size))
        ),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    fit_ds = (
        tf.data.Dataset.from_tensor_slices((x_fit, y_fit))
        .shuffle(len(x_fit), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(128)
    # Watched from half-way, when the cosine schedule has calmed down: early epochs swing.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=epochs // 2
    )
    class_weight = {0: len(x_fit) / (2.0 * len(fit_a)), 1: len(x_fit) / (2.0 * len(fit_b))}
    history = model.fit(
        fit_ds, validation_data=val_ds, epochs=epochs, callbacks=[stop], class_weight=class_weight, shuffle=False,
        verbose=verbose,
    )
    epochs_trained = len(history.history["loss"])
    best = int(stop.best_epoch)  # the weights restored at the end (watched from epochs // 2)

    from tfcyclegan.eval import report  # software versions

    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "size": int(size),
        "threshold": 0.5,
        "output": "logit of P(domain B); domain A is class 0",
        "data": dict(data or {}),
        "counts": {
            "train_a": len(fit_a), "train_b": len(fit_b), "val_a": len(val_a), "val_b": len(val_b),
            "test_a": len(test_a), "test_b": len(test_b),
        },
        "training": {
            "epochs": epochs, "epochs_trained": epochs_trained, "best_epoch": best + 1, "batch_size": batch_size,
            "learning_rate": learning_rate, "val_fraction": val_fraction, "patience": patience, "filters": filters, "stages": stages,
            "augment": augment, "seed": seed,
        },
        "val_accuracy": float(history.history["val_accuracy"][best]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "software": report.software_versions(),
    }
    oracle = Oracle(model, meta)
    scores = accuracy(oracle, test_a, test_b)
    oracle.meta.update(
        test_accuracy=scores["accuracy"],
        test_accuracy_a=scores["accuracy_a"],
        test_accuracy_b=scores["accuracy_b"],
        balanced_test_accuracy=scores["balanced_accuracy"],
    )
    return oracle
