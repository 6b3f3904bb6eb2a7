"""tfcyclegan-train (and python train.py): train a CycleGAN, or resume one.

    tfcyclegan-train --dataset=synthetic --schedule=demo --workdir=runs/demo   # embedded data, CPU minutes
    tfcyclegan-train --task=age --data_dir=~/UTKFace --schedule=progressive    # UTKFace 20s <-> 50s
    tfcyclegan-train --dataset=folder --data_dir=~/selfie2anime --preset=selfie2anime

Re-running the same command in the same workdir resumes from the newest checkpoint.
Precedence of settings: TrainConfig defaults < --preset < flags given on the command line.
Exit status: 0 trained (or stopped cleanly by a signal or --max_steps), 1 an error the message
names, 2 bad flags.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys

from absl import app, flags, logging

from tfcyclegan import config as config_lib
from tfcyclegan.cli import run_command

# flag name -> dotted TrainConfig field. Each flag's default is None: "not given".
FLAG_FIELDS = {
    "dataset": "data.dataset", "data_dir": "data.data_dir", "task": "data.task",
    "domain_a": "data.domain_a", "domain_b": "data.domain_b", "tfds_name": "data.tfds_name",
    "test_fraction": "data.test_fraction", "preprocess": "data.preprocess", "synthetic_count": "data.synthetic_count",
    "schedule": "schedule", "batch_size": "batch_size", "pool_size": "pool_size", "seed": "seed",
    "deterministic": "deterministic", "precision": "precision", "strategy": "strategy",
    "checkpoint_every_steps": "checkpoint_every_steps", "keep_checkpoints": "keep_checkpoints",
    "steps_per_epoch": "steps_per_epoch", "steps_per_call": "steps_per_call", "log_every_steps": "log_every_steps",
    "sample_count": "sample_count", "eval_every_epochs": "eval_every_epochs", "eval_count": "eval_count",
    "oracle": "oracle_dir", "worker_timeout": "worker_timeout", "cpu_threads": "cpu_threads",
    "learning_rate": "optim.learning_rate", "beta_1": "optim.beta_1", "beta_2": "optim.beta_2",
    "gan_loss": "loss.gan", "lambda_cycle": "loss.cycle", "lambda_identity": "loss.identity",
    "gen_filters": "model.gen_filters", "gen_blocks": "model.gen_blocks", "disc_filters": "model.disc_filters",
    "disc_layers": "model.disc_layers", "disc_type": "model.disc_type", "norm": "model.norm",
    "disc_norm": "model.disc_norm", "upsample": "model.upsample", "z_dim": "model.z_dim", "model": "kind",
}


def define_flags(flag_values: flags.FlagValues | None = None) -> flags.FlagValues:
    """Defines train.py's flags on `flag_values` (absl's global FLAGS by default); returns them."""
    fv = flag_values if flag_values is not None else flags.FLAGS
    d = _Definitions(fv)
    d.DEFINE_string("workdir", None, "Run folder: config.json, checkpoints/, logs/, samples/. Default runs/<task>.")
    d.DEFINE_enum("model", None, list(config_lib.KINDS), "cyclegan (default: translation between two domains) or dcgan "
                  "(new images from noise, trained on domain A or a folder of images; default schedule 64:300).")
    d.DEFINE_integer("z_dim", None, "DCGAN: length of the noise vector (default 100).")
    d.DEFINE_boolean("no_augment", False, "No random crop and flip: each image resized to the stage size as it is.")
    d.DEFINE_enum("preset", None, list(config_lib.PRESETS), "A reference system's settings; explicit flags override.")
    d.DEFINE_enum("dataset", None, list(config_lib.DATASETS), "Default: utkface with --data_dir, else synthetic.")
    d.DEFINE_string("data_dir", None, "UTKFace folder or tarball, or a trainA/trainB folder.")
    d.DEFINE_enum("task", None, list(config_lib.TASKS), "UTKFace attribute task: age (20s->50s), ethnicity, gender.")
    d.DEFINE_string("domain_a", None, "Custom domain A filter, e.g. age:20-29,gender:1 (with --domain_b).")
    d.DEFINE_string("domain_b", None, "Custom domain B filter, e.g. age:50-59,gender:1 (with --domain_a).")
    d.DEFINE_string("tfds_name", None, "With --dataset=tfds, e.g. cycle_gan/horse2zebra.")
    d.DEFINE_float("test_fraction", None, "Held-out share of each domain (default 0.1).")
    d.DEFINE_enum("preprocess", None, list(config_lib.PREPROCESS), "resize_and_crop (1.12x then crop), crop or none.")
    d.DEFINE_boolean("no_flip", False, "Turn off random horizontal flips.")
    d.DEFINE_integer("synthetic_count", None, "Images generated for --dataset=synthetic (default 600).")
    d.DEFINE_string("schedule", None, f"{', '.join(config_lib.SCHEDULES)} or size:epochs,... e.g. 32:2,64:1.")
    d.DEFINE_integer("batch_size", None, "Per-replica batch (default 1).")
    d.DEFINE_integer("pool_size", None, "Image pool size (default 50; 0 disables).")
    d.DEFINE_integer("seed", None, "Seed for weights, data order and augmentation (default 0).")
    d.DEFINE_boolean("deterministic", None, "Op determinism: a resumed run equals an uninterrupted one bit for bit.")
    d.DEFINE_enum("precision", None, list(config_lib.PRECISIONS), "auto: mixed_float16 on GPU; on CPU mixed_bfloat16 where a timed probe finds it faster (decided once per CPU model), else float32.")
    d.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES), "auto: multi_worker with TF_CONFIG, else mirrored.")
    d.DEFINE_float("worker_timeout", None, "Multi-worker: seconds a worker waits for the others (start-up, every "
                   "collective) before it stops with a message. Default $TFCYCLEGAN_WORKER_TIMEOUT, else 600.")
    d.DEFINE_integer("checkpoint_every_steps", None, "Also checkpoint every N steps (default: once per epoch).")
    d.DEFINE_integer("keep_checkpoints", None, "Checkpoints kept (default 3).")
    d.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch (default max(|A|,|B|) / global batch).")
    d.DEFINE_integer("steps_per_call", None, "Train steps per compiled call (default 0: 4 at 48 px, 2 at 64, 1 from 96 px).")
    d.DEFINE_enum("cpu_threads", None, list(config_lib.CPU_THREADS), "auto: on a machine without a GPU, two ops at "
                  "a time on half the cores each (faster here than TensorFlow's default); tensorflow: its default.")
    d.DEFINE_integer("log_every_steps", None, "TensorBoard / losses.csv interval (default 10).")
    d.DEFINE_integer("sample_count", None, "Images per domain in the per-epoch sample grid (default 4).")
    d.DEFINE_integer("eval_every_epochs", None, "Cycle/identity L1 (+ flip rate with --oracle) every K epochs.")
    d.DEFINE_integer("eval_count", None, "Held-out images per domain for --eval_every_epochs (default 64).")
    d.DEFINE_string("oracle", None, "Attribute oracle folder (tfcyclegan-evaluate train_oracle) for flip rates.")
    d.DEFINE_float("learning_rate", None, "Adam learning rate (default 2e-4).")
    d.DEFINE_float("beta_1", None, "Adam beta_1 (default 0.5).")
    d.DEFINE_float("beta_2", None, "Adam beta_2 (default 0.999).")
    d.DEFINE_string("decay_epochs", None, "Linear LR decay over the last N epochs, or 'all' (default half of all).")
    d.DEFINE_enum("gan_loss", None, list(config_lib.GAN_LOSSES), "Adversarial loss (default lsgan).")
    d.DEFINE_float("lambda_cycle", None, "Cycle-consistency weight (default 10).")
    d.DEFINE_float("lambda_identity", None, "Identity weight as a multiple of lambda_cycle (default 0.5).")
    d.DEFINE_integer("gen_filters", None, "Generator base filters (default 64).")
    d.DEFINE_integer("gen_blocks", None, "Generator residual blocks (default 9).")
    d.DEFINE_integer("disc_filters", None, "Discriminator base filters (default 64).")
    d.DEFINE_integer("disc_layers", None, "PatchGAN stride-2 layers (default 3: the 70x70 PatchGAN).")
    d.DEFINE_enum("disc_type", None, list(config_lib.DISCRIMINATORS), "patchgan or downsample8.")
    d.DEFINE_enum("norm", None, list(config_lib.NORMS), "Generator normalization (default instance).")
    d.DEFINE_enum("disc_norm", None, list(config_lib.NORMS), "Discriminator normalization (default instance).")
    d.DEFINE_enum("upsample", None, list(config_lib.UPSAMPLES), "Generator upsampling: transpose (the official k3 s2 "
                  "transposed conv; leaves a checkerboard to unlearn), nearest or bilinear (2x resize + 3x3 conv).")
    d.DEFINE_integer("max_steps", None, "Stop (with a checkpoint) after this global step; rerun to continue.")
    d.DEFINE_string("cache_dir", None, "Where generated/indexed data is cached (default $TFCYCLEGAN_CACHE_DIR or ~/.cache/tfcyclegan).")
    d.DEFINE_boolean("dry_run", False, "Print the resolved config and data statistics as JSON, then exit.")
    return fv


class _Definitions:
    """flags.DEFINE_* bound to one FlagValues (tests define the flags on a private set)."""

    def __init__(self, flag_values: flags.FlagValues):
        bind = lambda define: functools.partial(define, flag_values=flag_values)  # noqa: E731
        self.DEFINE_string, self.DEFINE_integer = bind(flags.DEFINE_string), bind(flags.DEFINE_integer)
        self.DEFINE_float, self.DEFINE_boolean = bind(flags.DEFINE_float), bind(flags.DEFINE_boolean)
        self.DEFINE_enum = bind(flags.DEFINE_enum)


def _decay_epochs(text: str) -> int | str:
    value = text.strip().lower()
    if value == "all":
        return value
    if value.isdigit():
        return int(value)
    raise config_lib.ConfigError(
        f"--decay_epochs takes a number of epochs (e.g. --decay_epochs=5) or 'all'. Received: --decay_epochs={text!r}")


def config_from_flags(values: flags.FlagValues) -> config_lib.TrainConfig:
    """Builds the TrainConfig of a command line. Raises ConfigError with the valid values."""
    config = config_lib.TrainConfig()
    if values.preset and values.preset not in config_lib.PRESETS:
        raise config_lib.ConfigError(f"Unknown preset {values.preset!r}. Valid: {', '.join(config_lib.PRESETS)}")
    # Preset and flags go in one replace: a preset may name a dataset whose data_dir only
    # the command line gives.
    overrides = dict(config_lib.PRESETS[values.preset]) if values.preset else {}
    overrides.update({field: values[name].value for name, field in FLAG_FIELDS.items() if values[name].value is not None})
    timeout = values.worker_timeout
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise config_lib.ConfigError(
            f"--worker_timeout must be a positive number of seconds, e.g. --worker_timeout=600 (to wait forever, "
            f"leave it out and set $TFCYCLEGAN_WORKER_TIMEOUT=0). Received: --worker_timeout={timeout!r}")
    if values.decay_epochs is not None:  # a number or "all": not one flag type, so not in FLAG_FIELDS
        overrides["optim.decay_epochs"] = _decay_epochs(values.decay_epochs)
    if values.no_flip:
        overrides["data.flip"] = False
    if values.no_augment:
        overrides.update({"data.flip": False, "data.preprocess": "none"})
    if overrides.get("kind") == "dcgan":
        # The reference DCGAN run: 64 px for 300 epochs at a constant learning rate.
        overrides.setdefault("schedule", "dcgan")
        overrides.setdefault("optim.decay_epochs", 0)
    if "data.dataset" not in overrides and values.data_dir:
        overrides["data.dataset"] = "utkface"
    return config_lib.replace(config, overrides)


def default_workdir(config: config_lib.TrainConfig) -> str:
    data = config.data
    if data.dataset == "utkface":
        name = data.task if data.domain_a is None else "custom"
    elif data.dataset == "synthetic":
        name = f"synthetic_{data.task}"
    elif data.dataset == "tfds":
        name = (data.tfds_name or "tfds").replace("/", "_")
    else:
        name = os.path.basename(os.path.normpath(data.data_dir or "folder"))
    return os.path.join("runs", f"{name}_dcgan" if config.kind == "dcgan" else name)


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    FLAGS = flags.FLAGS
    try:
        config = config_from_flags(FLAGS)
    except config_lib.ConfigError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    # Imported here so --help and flag errors answer without loading TensorFlow.
    from tfcyclegan import data as data_lib
    from tfcyclegan.runtime.cluster import ClusterError
    from tfcyclegan.train import trainer
    from tfcyclegan.train.checkpoint import WorkdirError

    workdir = FLAGS.workdir or default_workdir(config)
    try:
        if FLAGS.dry_run:
            domains = data_lib.load_domains(config.data, cache_dir=FLAGS.cache_dir)
            print(json.dumps({"workdir": workdir, "config": config.to_dict(), **domains.stats}, indent=2))
            return 0
        result = trainer.run(config, workdir, max_steps=FLAGS.max_steps, data_cache_dir=FLAGS.cache_dir)
    except (config_lib.ConfigError, data_lib.DataError, WorkdirError, trainer.TrainingDiverged, ClusterError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"workdir": workdir, "finished": result.finished, "stopped_by": result.stopped_by,
                      "global_step": result.position.global_step, "checkpoint": result.last_checkpoint}))
    return 0


def run() -> None:
    """Console entry point: tfcyclegan-train, python train.py, python -m tfcyclegan.cli.train."""
    run_command(define_flags, main)


if __name__ == "__main__":
    run()
