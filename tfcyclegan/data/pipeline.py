"""The tf.data pipeline: decode, resize to the stage size, random crop and flip, batch.

Determinism: the order of an epoch is a numpy permutation per (seed, epoch, domain), and crop
and flip are stateless random ops seeded per element from (seed, epoch, domain, position).
Nothing depends on the iteration state of a dataset, so

- the same (seed, epoch) gives the same batches on every run,
- `skip_batches=k` gives exactly batches k, k+1, ... of the unskipped epoch (exact resume),
- parallel decoding cannot change the result (the map is ordered, the randomness per element).

Decoded, resized images are kept in memory between epochs (one stage size per domain at a time)
when they fit in `DataConfig.cache_mb`; otherwise every epoch decodes from the files again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import tensorflow as tf

from tfcyclegan.data.types import DataError, Domains, Example
from tfcyclegan.io import to_float

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

AUTOTUNE = tf.data.AUTOTUNE
LOAD_SCALE = 1.12  # the reference 286/256 rule: resize to 1.12 x size, then random crop
_DOMAIN_IDS = {"a": 0, "b": 1}
REPORTED_SIZES = (32, 48, 64, 96, 128, 256)  # stage sizes reported in stats["upsampled"]


def load_size(size: int, preprocess: str) -> int:
    """The side an image is resized to before the random crop (resize_and_crop), else size."""
    return int(round(LOAD_SCALE * size)) if preprocess == "resize_and_crop" else size


def count_upsampled(examples: Sequence[Example], size: int, preprocess: str) -> int:
    """How many images are smaller than what a stage of `size` px resizes or crops them to."""
    need = load_size(size, preprocess)
    return sum(1 for e in examples if min(e.height, e.width) < need)


def upsampled_counts(examples: Sequence[Example], preprocess: str) -> dict:
    """{"<size>": n} for the usual stage sizes: images that will be upsampled at that size."""
    return {str(s): count_upsampled(examples, s, preprocess) for s in REPORTED_SIZES}


def steps_per_epoch(domains: Domains, global_batch: int, *, names: Sequence[str] = ("a", "b")) -> int:
    """max(|A train|, |B train|) // global_batch (over the domains `names`), at least 1."""
    if global_batch < 1:
        raise ValueError(f"global_batch must be >= 1. Received: {global_batch!r}")
    return max(1, max(len(getattr(domains, name).train) for name in names) // global_batch)


# -- per-image ops (eager or inside tf.data) ------------------------------------------------------


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG/PNG (or GIF/BMP) bytes -> uint8 (H, W, 3); grey and RGBA become RGB."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, height, width) -> tf.Tensor:
    """uint8 (H, W, 3) -> uint8 (height, width, 3): bilinear, antialiased when shrinking, rounded."""
    target = tf.stack([height, width])
    shape = tf.shape(image)
    shrinking = tf.logical_or(shape[0] > height, shape[1] > width)
    # Antialiasing only matters when shrinking, and costs 2-3x when enlarging.
    out = tf.cond(
        shrinking,
        lambda: tf.image.resize(image, target, method="bilinear", antialias=True),
        lambda: tf.image.resize(image, target, method="bilinear", antialias=False),
    )
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def prepare(image: tf.Tensor, *, size: int, preprocess: str) -> tf.Tensor:
    """The deterministic part of preprocessing: uint8 (H, W, 3) -> uint8 image to crop from.

    resize_and_crop: (L, L) with L = round(1.12 size); none: (size, size); crop: the image
    itself, or resized so that its short side is `size` when it is smaller than that.
    """
    if preprocess == "resize_and_crop":
        side = load_size(size, preprocess)
        return resize(image, side, side)
    if preprocess == "none":
        return resize(image, size, size)
    if preprocess != "crop":
        raise ValueError(f"preprocess must be resize_and_crop, crop or none. Received: {preprocess!r}")
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)

    def upscale():
        scale = size / tf.cast(short, tf.float64)
        nh = tf.maximum(size, tf.cast(tf.math.ceil(tf.cast(h, tf.float64) * scale), tf.int32))
        nw = tf.maximum(size, tf.cast(tf.math.ceil(tf.cast(w, tf.float64) * scale), tf.int32))
        return resize(image, nh, nw)

    return tf.cond(short < size, upscale, lambda: image)


def augment(image: tf.Tensor, valid_hw: tf.Tensor, seed: tf.Tensor, *, size: int, flip: bool) -> tf.Tensor:
    """Random crop (size, size) inside the valid top-left (h, w) region, optional random
    horizontal flip, scale to [-1, 1]. image: uint8 (H, W, 3), maybe zero-padded beyond valid_hw.
    seed: int (2,), the stateless seed of this element. Returns float32 (size, size, 3) in [-1, 1].
    """
    u = tf.random.stateless_uniform([3], seed=seed, dtype=tf.float32)
    h, w = valid_hw[0], valid_hw[1]
    oh = tf.minimum(tf.cast(u[0] * tf.cast(h - size + 1, tf.float32), tf.int32), h - size)
    ow = tf.minimum(tf.cast(u[1] * tf.cast(w - size + 1, tf.float32), tf.int32), w - size)
    crop = tf.slice(image, tf.stack([oh, ow, 0]), [size, size, 3])
    if flip:
        crop = tf.cond(u[2] < 0.5, lambda: tf.reverse(crop, axis=[1]), lambda: crop)
    return tf.cast(crop, tf.float32) / 127.5 - 1.0


def preprocess_image(image: tf.Tensor, *, size: int, preprocess: str, flip: bool, seed) -> tf.Tensor:
    """The whole training transform of one decoded image, eagerly or in a graph.

    image: uint8 (H, W, 3). seed: int (2,). Returns float32 (size, size, 3) in [-1, 1].
    """
    prepared = prepare(image, size=size, preprocess=preprocess)
    return augment(prepared, tf.shape(prepared)[:2], tf.convert_to_tensor(seed), size=size, flip=flip)


# -- sources --------------------------------------------------------------------------------------


class _Source:
    """How the map function gets the encoded bytes of example i (file path or in-memory bytes)."""

    def __init__(self, examples: Sequence[Example]):
        self.n = len(examples)
        in_memory = [e.data is not None for e in examples]
        self.strings = tf.constant([e.data if e.data is not None else e.source.encode() for e in examples], tf.string)
        self.mode = "bytes" if all(in_memory) else "files" if not any(in_memory) else "mixed"
        self.in_memory = tf.constant(in_memory, tf.bool)

    def encoded(self, index: tf.Tensor) -> tf.Tensor:
        s = tf.gather(self.strings, index)
        if self.mode == "bytes":
            return s
        if self.mode == "files":
            return tf.io.read_file(s)
        return tf.cond(tf.gather(self.in_memory, index), lambda: s, lambda: tf.io.read_file(s))


def _prepared_shape(ex: Example, size: int, preprocess: str) -> tuple[int, int]:
    if preprocess == "resize_and_crop":
        side = load_size(size, preprocess)
        return side, side
    if preprocess == "none":
        return size, size
    short = min(ex.height, ex.width)
    if short >= size:
        return ex.height, ex.width
    scale = size / short
    return max(size, math.ceil(ex.height * scale)), max(size, math.ceil(ex.width * scale))


class _Decoded:
    """Prepared uint8 images of one domain in memory: images (N, H, W, 3) zero-padded, hw (N, 2)."""

    def __init__(self, images: tf.Tensor, hw: tf.Tensor):
        self.images, self.hw = images, hw


def _decode_all(examples: Sequence[Example], *, size: int, preprocess: str) -> _Decoded:
    shapes = np.array([_prepared_shape(e, size, preprocess) for e in examples], np.int32)
    max_h, max_w = int(shapes[:, 0].max()), int(shapes[:, 1].max())
    source = _Source(examples)

    def load(i):
        image = prepare(decode(source.encoded(i)), size=size, preprocess=preprocess)
        hw = tf.shape(image)[:2]
        return tf.image.pad_to_bounding_box(image, 0, 0, max_h, max_w), hw

    ds = tf.data.Dataset.range(len(examples)).map(load, num_parallel_calls=AUTOTUNE, deterministic=True).batch(256)
    parts = [(img.numpy(), hw.numpy()) for img, hw in ds]
    images = np.concatenate([p[0] for p in parts])
    hw = np.concatenate([p[1] for p in parts])
    return _Decoded(tf.constant(images), tf.constant(hw))


def _memory_bytes(examples: Sequence[Example], size: int, preprocess: str) -> int:
    shapes = np.array([_prepared_shape(e, size, preprocess) for e in examples])
    return int(len(examples) * shapes[:, 0].max() * shapes[:, 1].max() * 3)


def _cached(domains: Domains, name: str, examples: Sequence[Example], cfg: "DataConfig", size: int, budget: list) -> _Decoded | None:
    """The decoded images of a domain's train split if caching is on and they fit the budget."""
    if not cfg.cache:
        return None
    memo = domains._memo  # noqa: SLF001 - the Domains object owns its cache
    key = (name, "train", size, cfg.preprocess)
    need = _memory_bytes(examples, size, cfg.preprocess)
    if key in memo:
        budget[0] -= need
        return memo[key]
    if need > budget[0]:
        return None
    for old in [k for k in memo if k[0] == name]:  # one stage size per domain at a time
        del memo[old]
    memo[key] = _decode_all(examples, size=size, preprocess=cfg.preprocess)
    budget[0] -= need
    return memo[key]


# -- the epoch ------------------------------------------------------------------------------------


def _rng(seed: int, epoch: int, domain: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, epoch, _DOMAIN_IDS[domain], stream])


def epoch_order(n: int, total: int, *, seed: int, epoch: int, domain: str) -> np.ndarray:
    """Indices of the `total` examples of one epoch: permutations of range(n), concatenated
    (a shorter domain is cycled with a fresh permutation each time round), truncated."""
    rng = _rng(seed, epoch, domain, 0)
    reps = -(-total // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:total].astype(np.int64)


def element_seeds(total: int, *, seed: int, epoch: int, domain: str) -> np.ndarray:
    """int64 (total, 2): the stateless seed of each element position of the epoch."""
    return _rng(seed, epoch, domain, 1).integers(0, 2**31 - 1, size=(total, 2), dtype=np.int64)


def make_train_dataset(
    domains: Domains, cfg: "DataConfig", *, size: int, global_batch: int, seed: int, epoch: int, skip_batches: int = 0,
    names: Sequence[str] = ("a", "b"),
) -> tf.data.Dataset:
    """One epoch of unpaired training batches of the domains `names`.

    Yields a tuple with one batch per name, e.g. (real_a, real_b) (or (real_a,) for one domain):
    float32 (global_batch, size, size, 3) in [-1, 1], exactly steps_per_epoch(domains,
    global_batch, names=names) - skip_batches batches. A fully deterministic function of
    (seed, epoch); batches k.. equal those of skip_batches=k.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1. Received: {size!r}")
    steps = steps_per_epoch(domains, global_batch, names=names)
    if not 0 <= skip_batches <= steps:
        raise ValueError(f"skip_batches must be in [0, {steps}] (steps per epoch). Received: {skip_batches!r}")
    total = steps * global_batch
    start = skip_batches * global_batch
    budget = [int(cfg.cache_mb) * 2**20]
    tensors, loaders = [], []
    for name in names:
        examples = getattr(domains, name).train
        if not examples:
            raise DataError(f"Domain {name.upper()} has no training images; see the data statistics: {domains.stats.get('domains')}")
        order = epoch_order(len(examples), total, seed=seed, epoch=epoch, domain=name)[start:]
        seeds = element_seeds(total, seed=seed, epoch=epoch, domain=name)[start:]
        tensors += [order, seeds]
        loaders.append(_loader(examples, _cached(domains, name, examples, cfg, size, budget), cfg, size))

    def load(*indices_and_seeds):
        return tuple(loader(indices_and_seeds[2 * k], indices_and_seeds[2 * k + 1]) for k, loader in enumerate(loaders))

    ds = tf.data.Dataset.from_tensor_slices(tuple(tensors))
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch, drop_remainder=True).prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _loader(examples: Sequence[Example], decoded: _Decoded | None, cfg: "DataConfig", size: int):
    if decoded is not None:
        def from_memory(i, s):
            return augment(tf.gather(decoded.images, i), tf.gather(decoded.hw, i), s, size=size, flip=cfg.flip)

        return from_memory
    source = _Source(examples)

    def from_source(i, s):
        image = prepare(decode(source.encoded(i)), size=size, preprocess=cfg.preprocess)
        return augment(image, tf.shape(image)[:2], s, size=size, flip=cfg.flip)

    return from_source


def load_eval_images(
    domains: Domains, cfg: "DataConfig", *, domain: str, split: str, size: int, count: int | None = None
) -> np.ndarray:
    """float32 (n, size, size, 3) in [-1, 1]: the first `count` examples (all if None) of a split
    in its stable order, plainly resized to size x size (no crop, no flip). n = min(count, len)."""
    if domain not in ("a", "b") or split not in ("train", "test"):
        raise ValueError(f"domain must be 'a' or 'b' and split 'train' or 'test'. Received: {domain!r}, {split!r}")
    examples = getattr(getattr(domains, domain), split)
    if count is not None:
        examples = examples[:count]
    if not examples:
        return np.zeros((0, size, size, 3), np.float32)
    source = _Source(examples)

    def load(i):
        return to_float(resize(decode(source.encoded(i)), size, size))

    ds = tf.data.Dataset.range(len(examples)).map(load, num_parallel_calls=AUTOTUNE, deterministic=True).batch(256)
    return np.concatenate([batch.numpy() for batch in ds])
