"""The stage driver: epochs, learning-rate decay, checkpoints, summaries, samples, resume.

`run(config, workdir)` trains through `config.schedule` and can be called again on the same
workdir to resume: it restores the newest checkpoint (networks, optimizers, image pools,
stage/epoch/step) and continues the data stream at the batch it stopped at. The data order
and augmentation are functions of (seed, epoch), and every random draw of the train step is
seeded by (seed, global step), so with `deterministic=True` a run that was killed and resumed
ends with exactly the weights of one that never stopped.

Everything that touches the disk or the terminal lives here, not in the train step.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfcyclegan import config as config_lib
from tfcyclegan import data as data_lib
from tfcyclegan import pictures
from tfcyclegan.io import save_png
from tfcyclegan.model import networks
from tfcyclegan.model import workdir as workdir_lib
from tfcyclegan.runtime import cluster
from tfcyclegan.runtime import precision as precision_lib
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.train.checkpoint import (
    Position, Progress, RunCheckpoints, WorkdirError, WorkdirLock, prepare_workdir, truncate_loss_csv,
)
from tfcyclegan.train.optim import learning_rate_at
from tfcyclegan.train.dcgan import DCGAN
from tfcyclegan.train.step import CycleGAN

class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    position: Position
    finished: bool
    stopped_by: str | None  # "SIGTERM", "SIGINT", "max_steps" or None
    last_checkpoint: str | None
    last_losses: dict[str, float]


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop after the current step."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def generic_image_shape(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Forgets the static H and W of a dataset of image-batch tuples ((real_a, real_b), (real,)).

    The compiled step is then traced once for every stage size. That saves a trace per stage
    and, more important, makes a run resumed in the middle of a later stage execute the very
    graph an uninterrupted run executes there: a trace specialised to a static size lets
    grappler pick other fusions, and the weights would differ in the last bits.
    """

    def generic(image):
        shape = [image.shape[0], None, None, image.shape[-1]]
        return tf.compat.v1.placeholder_with_default(image, shape)

    return dataset.map(lambda *images: tuple(generic(image) for image in images))


def steps_for_call(config: config_lib.TrainConfig, size: int) -> int:
    """Training steps per compiled call at stage `size`: config.steps_per_call, or with 0 by size.

    A call has a fixed cost (Python, the function call, reading the losses back) that a small
    step feels, so small stages run several steps per call (4 at 48 px). From 96 px up a call is
    one step, so a stop request (Ctrl-C, SIGTERM) never waits long.
    """
    if config.steps_per_call:
        return config.steps_per_call
    return max(1, round(4 * (48 / size) ** 2))


def read_loss_csv(path: str) -> dict[int, dict[str, float]]:
    """Rows of losses.csv by global step, in step order; a step logged twice (a resumed run redoes
    the steps after its last checkpoint) keeps its latest row."""
    rows: dict[int, dict[str, float]] = {}
    if not os.path.exists(path):
        return rows
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["global_step"])] = {k: float(v) for k, v in row.items() if k != "global_step"}
    return dict(sorted(rows.items()))


def plot_loss_curves(csv_path: str, png_path: str, panels) -> bool:
    """losses.csv as the model's panels (e.g. adversarial, cycle, identity, discriminators),
    stage changes dotted. panels: ((title, (loss name, ...)), ...)."""
    rows = read_loss_csv(csv_path)
    if not rows:
        return False
    steps = list(rows)
    names = {name for _, group in panels for name in group}
    series = {name: [(step, row[name]) for step, row in rows.items() if name in row] for name in names}
    sizes = [row["size"] for row in rows.values()]
    changes = [steps[i] for i in range(1, len(steps)) if sizes[i] != sizes[i - 1]]
    return pictures.plot_curves(series, png_path, panels=panels, title="Losses (dotted lines: stage changes)",
                                marks=changes)


def _write_loss_rows(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    new_file = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new_file:
            writer.writeheader()
        writer.writerows(rows)


def model_class(config: config_lib.TrainConfig) -> type:
    """The GAN the config names (config.kind): CycleGAN or DCGAN."""
    return DCGAN if config.kind == "dcgan" else CycleGAN


def domain_names(config: config_lib.TrainConfig) -> tuple[str, ...]:
    """The domains a training batch holds: ("a", "b") for a CycleGAN, ("a",) for a DCGAN."""
    return ("a",) if config.kind == "dcgan" else ("a", "b")


@dataclasses.dataclass
class _RunState:
    """What run() carries from epoch to epoch."""

    position: Position
    last_checkpoint: str | None
    last_losses: dict[str, float] = dataclasses.field(default_factory=dict)


class Trainer:
    """Holds a run's state between epochs. Most users call `run()` instead.

    The chief holds the workdir's lock from construction to the end of run() (or close()).
    """

    def __init__(self, config: config_lib.TrainConfig, workdir: str, *, data_cache_dir: str | None = None,
                 on_step: Callable[[Position, dict[str, float]], None] | None = None, quiet: bool = False):
        self.config = config
        self.workdir = workdir
        self.on_step = on_step
        self.quiet = quiet
        # Before anything starts TensorFlow's runtime: thread pools are fixed when it starts.
        self.threads = strategy_lib.configure_cpu_threads(config.cpu_threads)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)  # initial weights; the step's draws are stateless
        self.strategy = strategy_lib.make_strategy(config.strategy, timeout=config.worker_timeout)
        self.precision = precision_lib.resolve_precision(config.precision, networks.time_residual_block)
        self.chief = cluster.is_chief(self.strategy)
        # One writer per workdir, from here to the end of run() (or close()).
        self._lock = WorkdirLock(workdir).acquire() if self.chief else None
        try:
            self._build(config, workdir, data_cache_dir)
        except BaseException:
            self.close()
            raise

    def _build(self, config: config_lib.TrainConfig, workdir: str, data_cache_dir: str | None) -> None:
        prepare_workdir(workdir, config, write=self.chief)
        self.domains = data_lib.load_domains(config.data, cache_dir=data_cache_dir,
                                             single=len(domain_names(config)) == 1)
        self.global_batch = config.batch_size * self.strategy.num_replicas_in_sync
        self.steps_per_epoch = self._steps_per_epoch(self.global_batch)
        # Creating the variables broadcasts the chief's initial weights, a collective without a
        # timeout: meet first (a worker stuck loading its data is named after the timeout), and
        # bound the build and the restore (a worker that hangs inside them).
        timeout = config.worker_timeout
        cluster.wait_for_workers(self.strategy, "build the model", timeout)
        with cluster.watchdog(self.strategy, "build the model and restore the checkpoint", timeout):
            with self.strategy.scope():
                self.model = model_class(config)(config, self.strategy, precision=self.precision)
            self.progress = Progress()
            self.checkpoint = tf.train.Checkpoint(progress=self.progress, **self.model.checkpoint_items())
            checkpoints = workdir_lib.checkpoint_dir(workdir)
            directory = checkpoints
            if not self.chief:
                # Every worker must take part in a save (it is collective), but only the chief's
                # copy is kept; the others write to a scratch folder and delete it.
                directory = os.path.join(workdir, f".worker_{self.strategy.cluster_resolver.task_id}_checkpoints")
            self._oracle = None
            self.loss_csv = os.path.join(workdir, "losses.csv")
            # Every worker resumes from the chief's checkpoints (a workdir on shared storage); each
            # picks the newest that reads completely, the same one (checked just below).
            self.checkpoints = RunCheckpoints(self.checkpoint, checkpoints, keep=config.keep_checkpoints,
                                              save_directory=directory, owner=self.chief, log=self._log)
            self.restored_from = self.checkpoints.restore_newest(self._restore, loss_csv=self.loss_csv)
        cluster.check_workers_agree(self.strategy, self.progress.get().global_step, checkpoints)
        if self.chief and self.restored_from:
            dropped = truncate_loss_csv(self.loss_csv, self.progress.get().global_step)
            if dropped:
                self._log(f"losses.csv: {dropped} rows after global step {self.progress.get().global_step} removed "
                          "(they are trained again).")
        self.logdir = os.path.join(workdir, "logs")
        self.writer = tf.summary.create_file_writer(self.logdir) if self.chief else tf.summary.create_noop_writer()
        self.samples_dir = os.path.join(workdir, "samples")
        if self.chief:
            os.makedirs(self.samples_dir, exist_ok=True)

    @property
    def manager(self) -> tf.train.CheckpointManager:
        return self.checkpoints.manager

    def close(self) -> None:
        """Releases the workdir (run() does it when it ends)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None

    # -- helpers ------------------------------------------------------------------------------

    def _restore(self, path: str) -> None:
        """Restores `path` (networks, optimizers, each replica's pools, position) and checks
        that this run's replica count can continue from it."""
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise WorkdirError(
                f"Checkpoint {path} does not match what this version of tfcyclegan saves for this config "
                f"({str(e)[:300]}): it was written by another version or model. Resume it with the version that wrote "
                "it, or start a new --workdir."
            ) from e
        self.restored_from = path
        self.model.after_restore()
        saved, now = int(self.progress.replicas.numpy()), self.strategy.num_replicas_in_sync
        position = self.progress.get()
        if saved == now or position.step == 0:
            if saved != now:
                self._log(f"Resuming at an epoch boundary with {now} replicas (global batch {self.global_batch}); "
                          f"{path} was written with {saved} (global batch {self.config.batch_size * saved}).")
            return
        # The data stream continues at batch `step` of the epoch's order: that batch only
        # exists for the global batch that wrote the checkpoint.
        batch = self.config.batch_size
        old_steps = self._steps_per_epoch(batch * saved)
        epoch_end = position.global_step + old_steps - position.step
        raise WorkdirError(
            f"Checkpoint {path} stopped in the middle of an epoch (stage {position.stage + 1}, epoch "
            f"{position.epoch + 1}, step {position.step} of {old_steps}) of a run on {saved} replica(s), global batch "
            f"{batch * saved} (--batch_size={batch} x {saved}); this run has {now} replica(s), global batch "
            f"{batch * now}. The rest of that epoch cannot be replayed with another global batch. Finish the epoch on "
            f"{saved} replica(s) (the same GPUs/workers as before) by rerunning the command there with "
            f"--max_steps={epoch_end}; from the checkpoint at the epoch's end any number of replicas can continue."
        )

    def _steps_per_epoch(self, global_batch: int) -> int:
        """max(|A|, |B|) / global batch, capped by --steps_per_epoch."""
        natural = data_lib.steps_per_epoch(self.domains, global_batch, names=domain_names(self.config))
        return min(natural, self.config.steps_per_epoch) if self.config.steps_per_epoch else natural

    def epoch_offset(self, stage: int) -> int:
        return sum(s.epochs for s in self.config.schedule.stages[:stage])

    def save(self, position: Position) -> str:
        self.progress.set(position)
        self.progress.replicas.assign(self.strategy.num_replicas_in_sync)
        self.model.before_save()
        path = self.checkpoints.save(position.global_step)
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
        return path

    def _log(self, message: str) -> None:
        if not self.quiet and self.chief:
            tqdm.write(message, file=sys.stderr)

    def _held_out(self, domain: str, size: int, count: int | None) -> np.ndarray:
        """Test-split images of a domain (train split when the test split is empty)."""
        split = "test" if getattr(self.domains, domain).test else "train"
        return data_lib.load_eval_images(self.domains, self.config.data, domain=domain, split=split, size=size, count=count)

    def _write_samples(self, samples, global_epoch: int, size: int, step: int) -> str:
        grid = self.model.sample_grid(samples)
        path = os.path.join(self.samples_dir, f"epoch_{global_epoch + 1:04d}_{size}px.png")
        save_png(grid, path)
        with self.writer.as_default():
            tf.summary.image("samples", grid[np.newaxis], step=step)
        return path

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, max_steps: int | None = None) -> RunResult:
        """Trains from the restored position to the end of the schedule, a stop signal or
        `max_steps`; always ends with a checkpoint. Releases the workdir when it returns or raises."""
        try:
            return self._run(max_steps)
        finally:
            self.close()

    def _run(self, max_steps: int | None) -> RunResult:
        cfg = self.config
        stages = cfg.schedule.stages
        position = self.progress.get()
        if position.stage >= len(stages):
            self._log(f"Run in {self.workdir} is already complete ({cfg.schedule}, global step {position.global_step}); "
                      "nothing to do. Use a new --workdir to train again.")
            return RunResult(position, True, None, self.restored_from, {})
        if cfg.precision == "auto":
            self._log(f"Precision: {self.precision} (--precision=auto on "
                      f"{precision_lib.describe_device(networks.time_residual_block)}).")
        if self.threads:
            self._log(f"CPU threads: {self.threads}.")
        if self.restored_from:
            self._log(f"Resuming from {self.restored_from}: stage {position.stage + 1}/{len(stages)}, "
                      f"epoch {position.epoch + 1}, step {position.step}, global step {position.global_step}")
        run = _RunState(position=position, last_checkpoint=self.restored_from)
        with _StopFlag() as stop:
            while run.position.stage < len(stages):
                stage = stages[run.position.stage]
                if run.position.epoch == 0 and run.position.step == 0:
                    self.model.start_stage(stage.size)
                samples = self.model.sample_inputs(self._held_out, stage.size, cfg.sample_count) if self.chief else None
                while run.position.epoch < stage.epochs:
                    stopped = self._train_epoch(run, stage, samples, stop, max_steps)
                    if stopped:
                        return RunResult(run.position, run.position.stage >= len(stages), stopped,
                                         run.last_checkpoint, run.last_losses)
                    if run.position.epoch == 0:
                        break  # that was the stage's last epoch
        if self.chief:
            plot_loss_curves(self.loss_csv, os.path.join(self.workdir, "loss_curves.png"), self.model.loss_panels)
            self.model.after_training(self.samples_dir)
            self._log(f"Training complete: {run.position.global_step} steps. Checkpoint {run.last_checkpoint}")
        return RunResult(run.position, True, None, run.last_checkpoint, run.last_losses)

    def _train_epoch(self, run: "_RunState", stage: config_lib.Stage, samples, stop: "_StopFlag",
                     max_steps: int | None) -> str | None:
        """Trains the rest of the epoch at run.position, then writes samples and the epoch's
        checkpoint. Returns the stop reason when training must stop, else None."""
        cfg = self.config
        position = run.position
        global_epoch = self.epoch_offset(position.stage) + position.epoch
        lr = learning_rate_at(cfg, global_epoch)
        self.model.set_learning_rate(lr)
        dataset = data_lib.make_train_dataset(
            self.domains, cfg.data, size=stage.size, global_batch=self.global_batch, seed=cfg.seed,
            epoch=global_epoch, skip_batches=position.step, names=domain_names(cfg),
        )
        iterator = strategy_lib.iterate(self.strategy, generic_image_shape(dataset))
        bar = tqdm(
            total=self.steps_per_epoch, initial=position.step, unit="step", file=sys.stderr,
            desc=f"stage {position.stage + 1}/{len(cfg.schedule.stages)} {stage.size}px "
                 f"epoch {position.epoch + 1}/{stage.epochs}",
            disable=self.quiet or not self.chief, dynamic_ncols=True, mininterval=1.0,
        )
        rows = []
        while position.step < self.steps_per_epoch:
            n = self._chunk(position, max_steps)
            start = time.perf_counter()
            out = self.model.train_steps(iterator, first_step=position.global_step, steps=n, global_batch=self.global_batch)
            values = {k: v.numpy() for k, v in out.items()}
            elapsed = time.perf_counter() - start
            self._check_finite(values, position)
            position = run.position = dataclasses.replace(position, step=position.step + n,
                                                          global_step=position.global_step + n)
            losses = run.last_losses = {k: float(v[-1]) for k, v in values.items()}
            images_per_sec = n * self.global_batch / max(elapsed, 1e-9)
            bar.update(n)
            bar.set_postfix(**self.model.progress_fields(losses), ips=f"{images_per_sec:.1f}", refresh=False)
            if position.global_step % cfg.log_every_steps == 0 or position.step == self.steps_per_epoch:
                means = {k: float(np.mean(v)) for k, v in values.items()}
                self._summaries(means, lr, images_per_sec, stage.size, position.global_step)
                rows.append({"global_step": position.global_step, "size": stage.size, "learning_rate": lr,
                             "images_per_sec": round(images_per_sec, 3), **{k: round(v, 6) for k, v in means.items()}})
            if self.on_step is not None:
                self.on_step(position, losses)
            stop_reason = self._stop_reason(stop, position, max_steps)
            periodic = cfg.checkpoint_every_steps and position.global_step % cfg.checkpoint_every_steps == 0
            if (stop_reason or periodic) and position.step < self.steps_per_epoch:
                run.last_checkpoint = self.save(position)
                if self.chief:
                    _write_loss_rows(self.loss_csv, rows)
                rows = []
            if stop_reason and position.step < self.steps_per_epoch:
                bar.close()
                self._log_stop(stop_reason, position, run.last_checkpoint)
                self.writer.flush()
                return stop_reason
        bar.close()
        # End of epoch: samples, then a checkpoint at the start of the next epoch.
        if self.chief:
            path = self._write_samples(samples, global_epoch, stage.size, position.global_step)
            _write_loss_rows(self.loss_csv, rows)
            self._log(f"epoch {global_epoch + 1}/{cfg.schedule.total_epochs} done: lr {lr:.2e}, "
                      f"{self.model.epoch_summary(run.last_losses)}, samples {path}")
        if self.chief and cfg.eval_every_epochs and (global_epoch + 1) % cfg.eval_every_epochs == 0:
            self._evaluate(stage.size, position.global_step)
        position = dataclasses.replace(position, epoch=position.epoch + 1, step=0)
        if position.epoch == stage.epochs:
            position = dataclasses.replace(position, stage=position.stage + 1, epoch=0)
        run.position = position
        run.last_checkpoint = self.save(position)
        self.writer.flush()
        stop_reason = self._stop_reason(stop, position, max_steps)
        if stop_reason:
            self._log_stop(stop_reason, position, run.last_checkpoint)
        return stop_reason

    def _evaluate(self, size: int, step: int) -> dict[str, float]:
        """The cheap metrics on held-out images, to TensorBoard (eval/...) and the log."""
        from tfcyclegan.eval import evaluate, oracle  # only runs that ask for it pay the import

        if self._oracle is None and self.config.oracle_dir:
            self._oracle = oracle.load_oracle(self.config.oracle_dir)
        images = [self._held_out(domain, size, self.config.eval_count) for domain in ("a", "b")]
        metrics = evaluate.cheap_metrics(self.model.gen_g, self.model.gen_f, *images, oracle=self._oracle)
        with self.writer.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(f"eval/{name}", value, step=step)
        self._log("eval: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        return metrics

    def _stop_reason(self, stop: _StopFlag, position: Position, max_steps: int | None) -> str | None:
        """A signal on any worker (agreed across the cluster), else max_steps reached, else None."""
        reason = cluster.agreed_stop(self.strategy, stop.signal_name)
        if reason is None and max_steps is not None and position.global_step >= max_steps:
            reason = "max_steps"
        return reason

    def _log_stop(self, reason: str, position: Position, checkpoint: str | None) -> None:
        self._log(f"Stopped by {reason} at global step {position.global_step}; checkpoint "
                  f"{checkpoint} written. Run the same command again to resume.")

    def _chunk(self, position: Position, max_steps: int | None) -> int:
        """Steps for the next compiled call: up to steps_per_call, never past an event."""
        cfg = self.config
        n = min(steps_for_call(cfg, cfg.schedule.stages[position.stage].size), self.steps_per_epoch - position.step)
        for every in (cfg.log_every_steps, cfg.checkpoint_every_steps):
            if every:
                n = min(n, every - position.global_step % every)
        if max_steps is not None:
            n = min(n, max(1, max_steps - position.global_step))
        return max(1, n)

    def _check_finite(self, values: dict[str, np.ndarray], position: Position) -> None:
        for name in self.model.loss_names:
            bad = np.flatnonzero(~np.isfinite(values[name]))
            if bad.size:
                step = position.global_step + int(bad[0]) + 1
                kept = self.manager.latest_checkpoint or "none yet"
                raise TrainingDiverged(
                    f"Loss {name} became {values[name][bad[0]]} at global step {step} "
                    f"(stage {position.stage + 1}, epoch {position.epoch + 1}). Training stopped; the last good "
                    f"checkpoint is kept: {kept}. Try a lower --learning_rate or --precision=float32."
                )

    def _summaries(self, means: dict[str, float], lr: float, images_per_sec: float, size: int, step: int) -> None:
        with self.writer.as_default():
            for name, value in means.items():
                tf.summary.scalar(f"loss/{name}", value, step=step)
            tf.summary.scalar("learning_rate", lr, step=step)
            tf.summary.scalar("images_per_sec", images_per_sec, step=step)
            tf.summary.scalar("stage_size", size, step=step)


def run(config: config_lib.TrainConfig, workdir: str, *, max_steps: int | None = None, data_cache_dir: str | None = None,
        on_step: Callable[[Position, dict[str, float]], None] | None = None, quiet: bool = False) -> RunResult:
    """Trains (or resumes) `config` in `workdir`. See the module docstring."""
    with cluster.explain_cluster_errors(workdir_lib.checkpoint_dir(workdir), timeout=config.worker_timeout):
        trainer = Trainer(config, workdir, data_cache_dir=data_cache_dir, on_step=on_step, quiet=quiet)
        return trainer.run(max_steps=max_steps)
