"""The history of generated images the discriminators see (Shrivastava et al., 2017).

The official CycleGAN keeps 50 past fakes per domain; for each new fake it either returns it
unchanged (and stores it while the pool is filling) or, with probability 0.5, returns a
random stored fake and puts the new one in its place. Training the discriminators on this
history, rather than only on the latest generator's output, damps oscillation.

The pool lives inside the compiled train step. Its buffer is a variable of shape
(pool_size, None, None, 3), so one traced step serves every stage size; `reset` empties it
at the start of each stage. Under a tf.distribute strategy the variables are per replica
(ON_READ), so each replica keeps its own history, as each PyTorch process does. Randomness
is stateless, seeded by the caller (from the global step), so a resumed run draws exactly
what an uninterrupted run would.

Checkpoints: TensorFlow saves an ON_READ variable as one value (here replica 0's) and
restores that value into every replica. So the per-replica buffers are held outside what the
module tracks (`_Buffers`, a plain object), and the checkpoint holds instead a stacked copy of
every replica's pool, `replica_images` (replicas, pool_size, H, W, 3) and `replica_counts`
(replicas,), ordered by replica id across all workers: call `stack_replicas()` before
saving (a collective: every worker calls it) and `unstack_replicas()` after restoring.
"""

from __future__ import annotations

import tensorflow as tf


class _Buffers:
    """The per-replica pool. A plain object, so tf.Module does not track (and checkpoint) it."""

    def __init__(self, images: tf.Variable, count: tf.Variable):
        self.images = images
        self.count = count


class ImagePool(tf.Module):
    """A pool of `pool_size` fake images; pool_size = 0 disables it (query returns its input)."""

    def __init__(self, pool_size: int = 50, *, name: str = "image_pool"):
        super().__init__(name=name)
        self.pool_size = int(pool_size)
        per_replica = dict(
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._buffers = _Buffers(
            tf.Variable(tf.zeros([self.pool_size, 0, 0, 3]), shape=tf.TensorShape([self.pool_size, None, None, 3]),
                        name="images", **per_replica),
            tf.Variable(0, dtype=tf.int32, name="count", **per_replica),
        )
        # What a checkpoint holds (see the module docstring); mirrored, the same on every worker.
        self.replica_images = tf.Variable(
            tf.zeros([0, self.pool_size, 0, 0, 3]), shape=tf.TensorShape([None, self.pool_size, None, None, 3]),
            trainable=False, name="replica_images",
        )
        self.replica_counts = tf.Variable(tf.zeros([0], tf.int32), shape=tf.TensorShape([None]), trainable=False,
                                          name="replica_counts")
        self._strategy = tf.distribute.get_strategy()  # the one the pool is built under
        self._stack_fn = self._unstack_fn = None

    @property
    def images(self) -> tf.Variable:
        """The per-replica buffer, (pool_size, H, W, 3) on each replica."""
        return self._buffers.images

    @property
    def count(self) -> tf.Variable:
        """How many slots of the buffer are filled, on each replica."""
        return self._buffers.count

    def stack_replicas(self) -> None:
        """Copies every replica's pool into replica_images/replica_counts. Call before saving.

        Under MultiWorkerMirroredStrategy this is an all-gather: every worker must call it.
        """
        local = self._strategy.experimental_local_results
        if int(tf.size(local(self.images)[0])) == 0:
            return  # pool_size 0, or never sized by `reset`: nothing to keep (an empty all-gather crashes)
        if not isinstance(self._strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # All replicas are local, in replica-id order. (No collective: under
            # MirroredStrategy one here clashed with the train step's collective keys.)
            self.replica_images.assign(tf.stack([v.read_value() for v in local(self.images)]))
            self.replica_counts.assign(tf.stack([v.read_value() for v in local(self.count)]))
            return
        if self._stack_fn is None:
            def own_pool():
                return self.images.read_value()[tf.newaxis], self.count.read_value()[tf.newaxis]

            @tf.function
            def stack():
                images, counts = self._strategy.run(own_pool)
                return self._strategy.gather(images, axis=0), self._strategy.gather(counts, axis=0)

            self._stack_fn = stack
        images, counts = self._stack_fn()
        self.replica_images.assign(images)
        self.replica_counts.assign(counts)

    def unstack_replicas(self) -> None:
        """Gives each replica its own pool from replica_images/replica_counts. Call after restoring.

        Replica r takes the pool saved for replica r; when the run has more replicas than the
        checkpoint, replica r takes that of replica r mod (replicas saved). A checkpoint that
        holds no pool (replicas saved = 0) leaves the pools as they are.
        """
        if int(tf.shape(self.replica_counts)[0]) == 0:
            return
        if self._unstack_fn is None:
            def local():
                saved = tf.shape(self.replica_counts, out_type=tf.int32)[0]
                replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32) % saved
                self.images.assign(self.replica_images[replica])
                self.count.assign(self.replica_counts[replica])

            @tf.function
            def unstack():
                self._strategy.run(local)

            self._unstack_fn = unstack
        self._unstack_fn()

    def reset(self, height: int, width: int) -> None:
        """Empties the pool and sizes it for (height, width) images. Call outside the step."""
        self.images.assign(tf.zeros([self.pool_size, height, width, 3]))
        self.count.assign(0)

    def query(self, images: tf.Tensor, *, seed: tf.Tensor) -> tf.Tensor:
        """images: float32 (batch, H, W, 3); seed: int32/int64 (2,). Returns the same shape.

        Image i of the batch is handled after images 0..i-1, as in the official code.
        """
        if self.pool_size == 0:
            return images
        images = tf.stop_gradient(tf.cast(images, tf.float32))
        batch = tf.shape(images)[0]
        seed = tf.cast(seed, tf.int64)
        out = tf.TensorArray(tf.float32, size=batch, element_shape=images.shape[1:])
        for i in tf.range(batch):
            image = images[i]
            image_seed = seed + tf.stack([tf.constant(0, tf.int64), tf.cast(i, tf.int64) * 7919])
            draws = tf.random.stateless_uniform([2], seed=image_seed)
            count = self.count.read_value()
            if count < self.pool_size:
                self._store(count, image)
                self.count.assign_add(1)
                out = out.write(i, image)
            elif draws[0] > 0.5:
                slot = tf.minimum(tf.cast(draws[1] * self.pool_size, tf.int32), self.pool_size - 1)
                out = out.write(i, self.images[slot])
                self._store(slot, image)
            else:
                out = out.write(i, image)
        return out.stack()

    def _store(self, slot: tf.Tensor, image: tf.Tensor) -> None:
        # Per-replica (ON_READ) variables have no scatter_nd_update: write the whole buffer.
        # Even at 256 px that is a 39 MB copy, small against a step.
        self.images.assign(tf.tensor_scatter_nd_update(self.images, [[slot]], image[tf.newaxis]))
