"""A run's state on disk: config.json beside the checkpoints, and the checkpointed position.

The layout of a workdir and loading trained generators from it are model/workdir.py's; this
module holds what only the trainer writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan.io import write_text
from tfcyclegan.model import workdir as workdir_lib


# Fields that may change between the start of a run and its resumption: they change what is
# logged or how often a checkpoint is written, never what is trained.
RESUMABLE_CHANGES = (
    "log_every_steps", "steps_per_call", "keep_checkpoints", "checkpoint_every_steps", "sample_count",
    "eval_every_epochs", "eval_count", "oracle_dir", "worker_timeout",
)


class WorkdirError(RuntimeError):
    """The workdir cannot be used (unwritable, or its config conflicts with this run)."""


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a run is: stage index, epoch within the stage, step within the epoch."""

    stage: int
    epoch: int
    step: int
    global_step: int


class Progress(tf.Module):
    """Checkpointed position of the run, and the replica count that wrote it."""

    def __init__(self):
        super().__init__(name="progress")
        self.stage = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # The global batch is batch_size (config.json) x replicas: a step of the data stream.
        self.replicas = tf.Variable(0, dtype=tf.int64, trainable=False, name="replicas")

    def get(self) -> Position:
        return Position(int(self.stage.numpy()), int(self.epoch.numpy()), int(self.step.numpy()), int(self.global_step.numpy()))

    def set(self, position: Position) -> None:
        self.stage.assign(position.stage)
        self.epoch.assign(position.epoch)
        self.step.assign(position.step)
        self.global_step.assign(position.global_step)


def prepare_workdir(workdir: str, config: config_lib.TrainConfig, *, write: bool = True) -> None:
    """Checks the workdir is writable and that its config.json (if any) matches `config`."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test_"):
            pass
    except OSError as e:
        raise WorkdirError(f"Cannot write to workdir {workdir!r} ({e.strerror or e}). Choose another --workdir.") from e
    path = workdir_lib.config_path(workdir)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        new = config.to_dict()
        differences = [
            d for d in config_lib.diff(saved, new) if d.split(":")[0] not in RESUMABLE_CHANGES
        ]
        if differences:
            raise WorkdirError(
                f"{path} was written by a run with other settings; resuming with these would mix two "
                "experiments. Fields that differ (saved != requested):\n  " + "\n  ".join(differences)
                + "\nUse the original flags to resume, or a new --workdir for the new settings."
            )
    if write:
        write_text(path, config.to_json())
