"""The on-disk layout of a training workdir, and loading trained generators from it.

    <workdir>/config.json          the resolved TrainConfig (written before any training)
    <workdir>/checkpoints/ckpt-N*  tf.train.Checkpoint with the keys below
    <workdir>/logs/                TensorBoard events (scalars and image grids)
    <workdir>/samples/             a PNG sample grid per epoch
    <workdir>/loss_curves.png      written at the end of training

Checkpoint keys: gen_g (A->B), gen_f (B->A), disc_a, disc_b, optimizer_g, optimizer_d,
pool_a, pool_b (the image pools), progress (stage, epoch, step, global_step); a DCGAN's:
generator, discriminator, optimizer_g, optimizer_d, progress. Inference only needs the
generators; `restore_generators` and `restore_dcgan` read just those.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf

from tfcyclegan.config import ConfigError, TrainConfig
from tfcyclegan.model.dcgan import build_dcgan_generator
from tfcyclegan.model.networks import build_generator

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A workdir has no usable checkpoint or config; the message names the path."""


def config_path(workdir: str) -> str:
    return os.path.join(workdir, CONFIG_FILE)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, CHECKPOINT_DIR)


def read_config(workdir: str) -> TrainConfig:
    path = config_path(workdir)
    if not os.path.isfile(path):
        raise CheckpointError(f"No {CONFIG_FILE} in {workdir!r}: is this a tfcyclegan workdir (train.py --workdir=...)?")
    try:
        with open(path) as f:
            return TrainConfig.from_dict(json.load(f))
    except (json.JSONDecodeError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path} is not a valid tfcyclegan config: {e}") from e


def latest_checkpoint(workdir: str) -> str:
    """The newest checkpoint prefix in `<workdir>/checkpoints`, or CheckpointError."""
    directory = checkpoint_dir(workdir)
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise CheckpointError(f"No checkpoint in {directory!r}: train first (python train.py --workdir={workdir}).")
    return path


@dataclasses.dataclass(frozen=True)
class RestoredGenerators:
    config: TrainConfig
    gen_g: keras.Model  # A -> B
    gen_f: keras.Model  # B -> A
    global_step: int
    checkpoint_path: str


def _restore(path: str, **objects) -> int:
    """Restores `objects` (name -> trackable) from checkpoint `path`; returns its global step."""
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(progress=tf.train.Checkpoint(global_step=global_step), **objects)
    try:
        status = ckpt.restore(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    # IndexError ("Read less bytes than requested") and OSError: a truncated or unreadable data file.
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, OSError) as e:
        raise CheckpointError(f"Checkpoint {path!r} cannot be read (corrupt, truncated or from another model): {e}") from e
    return int(global_step.numpy())


def restore_generators(workdir: str, *, checkpoint_path: str | None = None) -> RestoredGenerators:
    """Builds float32 generators from `<workdir>/config.json` and loads their trained weights."""
    config = read_config(workdir)
    if config.kind != "cyclegan":
        raise CheckpointError(f"{workdir!r} holds a {config.kind.upper()} (images from noise), not a CycleGAN: it has no "
                              "translating generators. Export it (tfcyclegan-export) and use its generate signature.")
    path = checkpoint_path or latest_checkpoint(workdir)
    gen_g = build_generator(config.model, name="gen_g")
    gen_f = build_generator(config.model, name="gen_f")
    return RestoredGenerators(config, gen_g, gen_f, _restore(path, gen_g=gen_g, gen_f=gen_f), path)


@dataclasses.dataclass(frozen=True)
class RestoredDCGAN:
    config: TrainConfig
    generator: keras.Model  # z (batch, z_dim) -> images (batch, size, size, 3) in [-1, 1]
    global_step: int
    checkpoint_path: str

    @property
    def size(self) -> int:
        return self.config.schedule.stages[0].size


def restore_dcgan(workdir: str, *, checkpoint_path: str | None = None) -> RestoredDCGAN:
    """Builds the float32 generator of a DCGAN run (config.kind == "dcgan") and loads its weights."""
    config = read_config(workdir)
    if config.kind != "dcgan":
        raise CheckpointError(f"{workdir!r} holds a {config.kind}, not a DCGAN.")
    path = checkpoint_path or latest_checkpoint(workdir)
    generator = build_dcgan_generator(size=config.schedule.stages[0].size, z_dim=config.model.z_dim,
                                      filters=config.model.gen_filters, name="generator")
    return RestoredDCGAN(config, generator, _restore(path, generator=generator), path)
