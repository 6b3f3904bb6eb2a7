import numpy as np
import tensorflow as tf

from tfcyclegan.model.image_pool import ImagePool


def _query_fn(strategy, pool):
    def per_replica(images, seed):
        return pool.query(images, seed=seed)

    @tf.function
    def query(images, seed):
        return strategy.run(per_replica, args=(images, seed))

    return query


def test_pool_fills_then_swaps_with_half_probability():
    strategy = tf.distribute.get_strategy()
    pool = ImagePool(4)
    pool.reset(2, 2)
    query = _query_fn(strategy, pool)
    # Filling: the first 4 images are returned unchanged and stored.
    for k in range(2):
        batch = tf.fill([2, 2, 2, 3], float(k))
        np.testing.assert_array_equal(query(batch, tf.constant([0, k], tf.int64)).numpy(), batch.numpy())
    assert pool.count.numpy() == 4
    np.testing.assert_array_equal(pool.images.numpy()[:, 0, 0, 0], [0, 0, 1, 1])
    # Full: each new image is either returned as is, or swapped for a stored one.
    swapped = 0
    for k in range(2, 102):
        out = query(tf.fill([1, 2, 2, 3], float(k)), tf.constant([0, k], tf.int64)).numpy()[0, 0, 0, 0]
        if out != k:
            swapped += 1
            assert out in range(k)
    assert 30 <= swapped <= 70  # p = 0.5 over 100 draws
    stored = pool.images.numpy()[:, 0, 0, 0]
    assert stored.max() > 1  # new images replaced old ones


def test_pool_draws_are_a_function_of_the_seed():
    results = []
    for _ in range(2):
        pool = ImagePool(2)
        pool.reset(1, 1)
        query = _query_fn(tf.distribute.get_strategy(), pool)
        outs = [query(tf.fill([1, 1, 1, 3], float(k)), tf.constant([7, k], tf.int64)).numpy().ravel()[0] for k in range(20)]
        results.append(outs)
    assert results[0] == results[1]


def test_reset_empties_and_resizes_and_size_zero_is_identity():
    pool = ImagePool(3)
    pool.reset(4, 4)
    query = _query_fn(tf.distribute.get_strategy(), pool)
    query(tf.ones([2, 4, 4, 3]), tf.constant([0, 0], tf.int64))
    assert pool.count.numpy() == 2
    pool.reset(8, 6)
    assert pool.count.numpy() == 0 and pool.images.shape.as_list() == [3, None, None, 3]
    assert tuple(pool.images.numpy().shape) == (3, 8, 6, 3)
    off = ImagePool(0)
    x = tf.random.uniform([2, 4, 4, 3])
    np.testing.assert_array_equal(off.query(x, seed=tf.constant([0, 0], tf.int64)).numpy(), x.numpy())
