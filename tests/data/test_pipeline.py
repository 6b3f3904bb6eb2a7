"""The tf.data pipeline: shapes and ranges, determinism, exact resume, eager == tf.data."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan.config import DataConfig
from tfcyclegan.data import (
    load_domains,
    load_eval_images,
    make_train_dataset,
    preprocess_image,
    steps_per_epoch,
)
from tfcyclegan.data import pipeline

CFG = DataConfig(dataset="synthetic", synthetic_count=80)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    return load_domains(CFG, cache_dir=str(tmp_path_factory.mktemp("cache")))


def _batches(ds):
    return [(a.numpy(), b.numpy()) for a, b in ds]


def test_shapes_ranges_and_count(domains):
    # 80 faces: 32 in their 20s (A), 32 in their 50s (B), about 10% of each in test.
    n_a, n_b = len(domains.a.train), len(domains.b.train)
    assert n_a > 20 and n_b > 20
    for size, batch in ((32, 4), (48, 3)):
        steps = steps_per_epoch(domains, batch)
        assert steps == max(n_a, n_b) // batch
        ds = make_train_dataset(domains, CFG, size=size, global_batch=batch, seed=0, epoch=0)
        assert ds.element_spec[0].shape == (batch, size, size, 3)
        out = _batches(ds)
        assert len(out) == steps
        for a, b in out:
            for x in (a, b):
                assert x.dtype == np.float32 and x.shape == (batch, size, size, 3)
                assert x.min() >= -1.0 and x.max() <= 1.0
        assert min(a.min() for a, _ in out) < -0.9 and max(a.max() for a, _ in out) > 0.9


def test_at_least_one_step():
    fake = dataclasses.make_dataclass("D", ["a", "b"])
    split = dataclasses.make_dataclass("S", ["train"])
    assert steps_per_epoch(fake(split((1, 2)), split((1, 2, 3))), 8) == 1
    assert steps_per_epoch(fake(split((1,) * 10), split((1,) * 7)), 3) == 3


def test_deterministic_per_seed_and_epoch(domains):
    kw = dict(size=32, global_batch=4)
    one = _batches(make_train_dataset(domains, CFG, seed=1, epoch=2, **kw))
    two = _batches(make_train_dataset(domains, CFG, seed=1, epoch=2, **kw))
    for (a1, b1), (a2, b2) in zip(one, two):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(b1, b2)
    other_epoch = _batches(make_train_dataset(domains, CFG, seed=1, epoch=3, **kw))
    other_seed = _batches(make_train_dataset(domains, CFG, seed=2, epoch=2, **kw))
    assert not np.array_equal(one[0][0], other_epoch[0][0])
    assert not np.array_equal(one[0][0], other_seed[0][0])


def test_skip_batches_resumes_exactly(domains):
    kw = dict(size=32, global_batch=3, seed=5, epoch=1)
    full = _batches(make_train_dataset(domains, CFG, **kw))
    for k in (1, 4, len(full)):
        rest = _batches(make_train_dataset(domains, CFG, skip_batches=k, **kw))
        assert len(rest) == len(full) - k
        for (a1, b1), (a2, b2) in zip(full[k:], rest):
            np.testing.assert_array_equal(a1, a2)
            np.testing.assert_array_equal(b1, b2)
    with pytest.raises(ValueError, match="skip_batches"):
        make_train_dataset(domains, CFG, skip_batches=len(full) + 1, **kw)


def test_memory_cache_changes_nothing(domains):
    kw = dict(size=32, global_batch=4, seed=0, epoch=0)
    cached = _batches(make_train_dataset(domains, CFG, **kw))
    assert domains._memo  # noqa: SLF001 - the decoded images are kept
    uncached_cfg = dataclasses.replace(CFG, cache=False)
    uncached = _batches(make_train_dataset(domains, uncached_cfg, **kw))
    tiny_budget = _batches(make_train_dataset(domains, dataclasses.replace(CFG, cache_mb=0), **kw))
    for (a1, b1), (a2, b2), (a3, b3) in zip(cached, uncached, tiny_budget):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(a1, a3)


def test_unequal_domains_are_paired_and_cycled():
    # 7 in A, 3 in B, batch 2: 3 steps, 6 pairs; A is a truncated permutation, B is cycled.
    order_a = pipeline.epoch_order(7, 6, seed=0, epoch=0, domain="a")
    order_b = pipeline.epoch_order(3, 6, seed=0, epoch=0, domain="b")
    assert len(set(order_a)) == 6 and set(order_a) <= set(range(7))
    assert sorted(order_b[:3]) == [0, 1, 2] and sorted(order_b[3:]) == [0, 1, 2]
    assert not np.array_equal(order_a, pipeline.epoch_order(7, 6, seed=0, epoch=1, domain="a"))


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "none"])
def test_eager_equals_tf_data(domains, preprocess):
    cfg = dataclasses.replace(CFG, preprocess=preprocess)
    size, batch, seed, epoch = 48, 2, 7, 3
    (a, b), = _batches(make_train_dataset(domains, cfg, size=size, global_batch=batch, seed=seed, epoch=epoch).take(1))
    total = steps_per_epoch(domains, batch) * batch
    for name, got in (("a", a), ("b", b)):
        examples = getattr(domains, name).train
        order = pipeline.epoch_order(len(examples), total, seed=seed, epoch=epoch, domain=name)
        seeds = pipeline.element_seeds(total, seed=seed, epoch=epoch, domain=name)
        for j in range(batch):
            image = tf.io.decode_jpeg(examples[order[j]].read_bytes(), channels=3)
            want = preprocess_image(image, size=size, preprocess=preprocess, flip=True, seed=seeds[j])
            np.testing.assert_allclose(got[j], want.numpy(), atol=1e-6)


def test_crop_takes_a_window_and_flip_flips():
    image = tf.constant(np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3))
    seen_flip = set()
    for s in range(20):
        out = preprocess_image(image, size=8, preprocess="crop", flip=True, seed=[s, 1]).numpy()
        u8 = np.round((out + 1) * 127.5).astype(np.uint8)
        windows = [image.numpy()[i:i + 8, j:j + 8] for i in range(3) for j in range(5)]
        flipped = any(np.array_equal(u8, w[:, ::-1]) for w in windows)
        plain = any(np.array_equal(u8, w) for w in windows)
        assert flipped or plain
        seen_flip.add(flipped)
    assert seen_flip == {True, False}
    small = preprocess_image(image, size=16, preprocess="crop", flip=False, seed=[0, 0])
    assert small.shape == (16, 16, 3)  # upsampled: short side 10 -> 16


def test_no_flip_none_equals_plain_resize(domains):
    cfg = dataclasses.replace(CFG, preprocess="none", flip=False)
    size = 32
    ds = make_train_dataset(domains, cfg, size=size, global_batch=2, seed=0, epoch=0)
    (a, _), = _batches(ds.take(1))
    total = steps_per_epoch(domains, 2) * 2
    order = pipeline.epoch_order(len(domains.a.train), total, seed=0, epoch=0, domain="a")
    plain = load_eval_images(domains, cfg, domain="a", split="train", size=size)
    np.testing.assert_array_equal(a[0], plain[order[0]])
    np.testing.assert_array_equal(a[1], plain[order[1]])


def test_eval_images_first_count_in_stable_order(domains):
    x = load_eval_images(domains, CFG, domain="b", split="test", size=40, count=3)
    assert x.shape == (min(3, len(domains.b.test)), 40, 40, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    again = load_eval_images(domains, CFG, domain="b", split="test", size=40)
    np.testing.assert_array_equal(x, again[: len(x)])
    assert load_eval_images(domains, CFG, domain="a", split="train", size=8, count=0).shape == (0, 8, 8, 3)


def test_dataset_options_for_distribution(domains):
    ds = make_train_dataset(domains, CFG, size=32, global_batch=2, seed=0, epoch=0)
    options = ds.options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert options.deterministic
