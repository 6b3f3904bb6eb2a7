"""A run's state on disk: config.json, the checkpoints, losses.csv and the workdir lock.

What a resume can meet, and what it does (docs/faults.md):
- Checkpoints are found from their files, not from TensorFlow's `checkpoint` state file (which
  may be missing or garbled); the newest one whose every tensor reads back (the bundle's
  checksums are verified on read) is restored. Newer ones that do not read (a missing .index
  or data file, truncated, zeroed, a flipped bit) are moved aside into checkpoints/broken-*/,
  never deleted, and the log names them and the one used instead. The state file is then
  rewritten from what is left, so checkpoint rotation only ever deletes older, intact ones.
- A workdir whose checkpoints are all unreadable, or whose losses.csv records progress that no
  checkpoint holds, is refused: it is never restarted from step 0 by accident.
- losses.csv is cut back to the resumed step, so no step is logged twice.
- A checkpoint that cannot be written (a full disk) leaves the previous ones as they are, and
  the run stops with a message naming both.
- One training process per workdir: a lock file held with flock (released by the system when
  the process dies, so a crashed run's lock is never stale) refuses a second writer.

The layout of a workdir and loading trained generators from it are model/workdir.py's; this
module holds what only the trainer writes.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import errno
import fcntl
import io as _io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from typing import Callable

import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan.io import write_text
from tfcyclegan.model import workdir as workdir_lib

LOCK_FILE = ".lock"
STATE_FILE = "checkpoint"  # TensorFlow's CheckpointManager state
_FILE = re.compile(r"^ckpt-(\d+)(?:\.index|\.data-(\d{5})-of-(\d{5})|_temp.*)$")


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
        try:
            with open(path) as f:
                saved = json.load(f)
            if not isinstance(saved, dict):
                raise ValueError(f"a JSON {type(saved).__name__}, not an object")
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise WorkdirError(
                f"{path} is damaged ({e}): it is the settings of the run in {workdir}. Restore it from a backup, or "
                "start the run in a new --workdir; the checkpoints here cannot be resumed without it."
            ) from e
        try:
            # Through the dataclasses: a field added since (e.g. model.upsample) takes its default,
            # which is what the older run trained with, and so is no difference.
            saved = config_lib.TrainConfig.from_dict(saved).to_dict()
        except (TypeError, config_lib.ConfigError):
            pass  # compared as written; the differences are named below
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


# -- the workdir lock ------------------------------------------------------------------------------


class WorkdirLock:
    """An exclusive lock on a workdir for the life of one training process.

    flock on <workdir>/.lock: the system releases it when the process ends, however it ends, so
    a lock left by a crash is never stale. The file records who holds it (pid, host, start time,
    command) for the message a second writer gets.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._file = None
        self.previous: dict | None = None  # the record a previous, ended holder left behind

    def acquire(self) -> "WorkdirLock":
        workdir = os.path.dirname(self.path) or "."
        try:
            os.makedirs(workdir, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as e:
            raise WorkdirError(f"Cannot write to workdir {workdir!r} ({e.strerror or e}). Choose another --workdir.") from e
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.seek(0)
            holder = _read_record(handle.read())
            handle.close()
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirError(f"Cannot lock {self.path} ({e.strerror or e}); the workdir's file system may not "
                                   "support locks. Use a local --workdir.") from e
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                   if holder else "another process")
            raise WorkdirError(
                f"Another training run is writing to {os.path.dirname(self.path) or '.'} ({who}). Two runs in one "
                "workdir would overwrite each other's checkpoints. Wait for it to finish or stop it, or use another "
                "--workdir."
            ) from None
        handle.seek(0)
        self.previous = _read_record(handle.read())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 "command": " ".join(sys.argv)[:300]}) + "\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            try:
                self._file.truncate(0)
                fcntl.flock(self._file, fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        self.release()


def _read_record(text: str) -> dict | None:
    try:
        record = json.loads(text)
        return record if isinstance(record, dict) else None
    except ValueError:
        return None


# -- losses.csv ------------------------------------------------------------------------------------


def truncate_loss_csv(path: str, global_step: int) -> int:
    """Drops the rows after `global_step` (a resumed run logs those steps again); returns how many."""
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if int(row["global_step"]) <= global_step]
    if len(kept) == len(rows) or not fields:
        return 0
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    write_text(path, buffer.getvalue())
    return len(rows) - len(kept)


def logged_steps(path: str) -> int:
    """The last global step losses.csv records (0 when there is none)."""
    if not os.path.exists(path):
        return 0
    try:
        with open(path, newline="") as f:
            return max((int(row["global_step"]) for row in csv.DictReader(f)), default=0)
    except (OSError, ValueError, KeyError, TypeError):
        return 0


# -- checkpoints -----------------------------------------------------------------------------------


def checkpoint_files(directory: str) -> dict[int, list[str]]:
    """{N: the file names of checkpoint ckpt-N in `directory`} (index, data shards, temp folders)."""
    groups: dict[int, list[str]] = collections.defaultdict(list)
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            match = _FILE.match(name)
            if match:
                groups[int(match.group(1))].append(name)
    return dict(groups)


def unreadable_reason(directory: str, number: int, names: list[str]) -> str | None:
    """Why checkpoint ckpt-`number` cannot be restored, or None when every tensor in it reads back."""
    if f"ckpt-{number}.index" not in names:
        return "its .index file is missing"
    shards = [n for n in names if ".data-" in n]
    if not shards:
        return "its data file is missing"
    total = int(shards[0][-5:])
    missing = [f"ckpt-{number}.data-{i:05d}-of-{total:05d}" for i in range(total)
               if f"ckpt-{number}.data-{i:05d}-of-{total:05d}" not in names]
    if missing:
        return f"{missing[0]} is missing"
    prefix = os.path.join(directory, f"ckpt-{number}")
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)  # reading checks each tensor's checksum
    # IndexError: TensorFlow's reader on a truncated file ("Read less bytes than requested").
    except (tf.errors.OpError, ValueError, IndexError, OSError, RuntimeError) as e:
        message = (getattr(e, "message", None) or str(e)).strip().splitlines()
        return f"it cannot be read ({message[0][:200] if message else type(e).__name__})"
    return None


def write_state(directory: str, numbers: list[int]) -> None:
    """TensorFlow's checkpoint state file naming these checkpoints (the newest last), with their
    times: CheckpointManager rotates only checkpoints whose time it knows."""
    numbers = sorted(numbers)
    path = os.path.join(directory, STATE_FILE)
    if not numbers:
        if os.path.exists(path):
            os.remove(path)
        return
    lines = [f'model_checkpoint_path: "ckpt-{numbers[-1]}"']
    lines += [f'all_model_checkpoint_paths: "ckpt-{n}"' for n in numbers]
    lines += [f"all_model_checkpoint_timestamps: {os.path.getmtime(os.path.join(directory, f'ckpt-{n}.index')):.6f}"
              for n in numbers]
    lines.append("last_preserved_timestamp: 0.0")
    write_text(path, "\n".join(lines) + "\n")


class RunCheckpoints:
    """The trainer's checkpoints of one run: a verified resume, saving, and rotation.

    checkpoint: the tf.train.Checkpoint of the run; directory: <workdir>/checkpoints (read by
    every worker); save_directory: where this process saves (a scratch folder on non-chief
    workers, whose saves only take part in the collective); owner: whether this process may
    move, rewrite and rotate files in `directory` (the chief).
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, keep: int, save_directory: str | None = None,
                 owner: bool = True, log: Callable[[str], None] = print):
        self.checkpoint = checkpoint
        self.directory = directory
        self.save_directory = save_directory or directory
        self.keep = keep
        self.owner = owner
        self.log = log
        self.manager: tf.train.CheckpointManager | None = None

    def restore_newest(self, restore: Callable[[str], None], *, loss_csv: str | None = None) -> str | None:
        """Restores the newest readable checkpoint with `restore(prefix)` and returns its prefix
        (None for a new run). Unreadable newer ones are moved aside and named in the log."""
        groups = checkpoint_files(self.directory)
        chosen, broken = None, []
        for number in sorted(groups, reverse=True):
            if not any(n.endswith(".index") or ".data-" in n for n in groups[number]):
                continue  # only a temp folder of an interrupted save: not a checkpoint
            reason = unreadable_reason(self.directory, number, groups[number])
            if reason is None:
                restore(os.path.join(self.directory, f"ckpt-{number}"))
                chosen = number
                break
            broken.append((number, reason))
        aside = self._move_aside(broken, groups) if broken and self.owner else None
        for number, reason in broken:
            where = f", moved to {aside}" if aside else ""
            self.log(f"Checkpoint ckpt-{number} in {self.directory} is unusable: {reason}{where}.")
        if chosen is None and broken:
            raise WorkdirError(
                f"No checkpoint in {self.directory} can be read: "
                + "; ".join(f"ckpt-{n}: {r}" for n, r in broken)
                + (f" (moved to {aside}, not deleted)" if aside else "")
                + ". Resuming is impossible and starting again from step 0 here would mix two runs. Restore the "
                  "checkpoints from a backup, or start over in a new --workdir."
            )
        if chosen is None and loss_csv and logged_steps(loss_csv) > 0:
            raise WorkdirError(
                f"{loss_csv} records training up to global step {logged_steps(loss_csv)}, but {self.directory} holds no "
                "checkpoint: they were deleted or moved. Starting again from step 0 here would mix two runs. Put the "
                "checkpoints back, or start over in a new --workdir (or delete losses.csv to restart here on purpose)."
            )
        if chosen is not None and broken:
            self.log(f"Resuming from ckpt-{chosen}, the newest checkpoint that reads completely.")
        if self.owner:
            os.makedirs(self.directory, exist_ok=True)
            files = checkpoint_files(self.directory)
            self._backup_garbled_state(aside)
            write_state(self.directory, [n for n, names in files.items() if f"ckpt-{n}.index" in names])
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.save_directory, max_to_keep=self.keep)
        return None if chosen is None else os.path.join(self.directory, f"ckpt-{chosen}")

    def _move_aside(self, broken: list[tuple[int, str]], groups: dict[int, list[str]]) -> str:
        aside = os.path.join(self.directory, f"broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(aside, exist_ok=True)
        for number, _ in broken:
            for name in groups[number]:
                os.replace(os.path.join(self.directory, name), os.path.join(aside, name))
        return aside

    def _backup_garbled_state(self, aside: str | None) -> None:
        path = os.path.join(self.directory, STATE_FILE)
        # TensorFlow's reader returns None for a state file it cannot parse (and logs a warning).
        if not os.path.exists(path) or tf.train.get_checkpoint_state(self.directory) is not None:
            return
        aside = aside or os.path.join(self.directory, f"broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(aside, exist_ok=True)
        shutil.copy2(path, os.path.join(aside, STATE_FILE))
        self.log(f"{path} was garbled; rewritten from the checkpoint files (the garbled copy is in {aside}).")

    def save(self, number: int) -> str:
        """Writes checkpoint ckpt-`number`; then the oldest beyond `keep` are deleted. A write that
        fails (a full disk) removes its own partial files and raises WorkdirError; the previous
        checkpoints stay as they were."""
        previous = self.manager.latest_checkpoint
        try:
            return self.manager.save(checkpoint_number=number)
        except (tf.errors.OpError, OSError) as e:
            for name in checkpoint_files(self.save_directory).get(number, []):
                path = os.path.join(self.save_directory, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
            reason = (getattr(e, "message", None) or str(e)).strip().splitlines()
            raise WorkdirError(
                f"Could not write checkpoint ckpt-{number} in {self.save_directory} "
                f"({reason[0][:200] if reason else type(e).__name__}): is the disk full? Nothing was lost: "
                f"{'the previous checkpoint ' + previous + ' is intact' if previous else 'there was no checkpoint yet'}. "
                "Free some space and run the same command again to resume."
            ) from e
