"""Configuration: a tree of frozen dataclasses, validated on construction.

Every knob of a run lives here. Flags (train.py) map onto these classes; the resolved
tree is written as JSON beside the checkpoints (`<workdir>/config.json`) and compared on
resume, so a run can only be continued with the settings it was started with.

Defaults follow the CycleGAN paper and the official code (Zhu et al., 2017): ResNet-9
generator, 70x70 PatchGAN, LSGAN, cycle weight 10, identity weight 0.5 x 10, Adam 2e-4 with
beta_1 = 0.5, an image pool of 50, batch 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

GAN_LOSSES = ("lsgan", "vanilla", "hinge")
NORMS = ("instance", "batch", "none")
DISCRIMINATORS = ("patchgan", "downsample8")
UPSAMPLES = ("transpose", "nearest", "bilinear")
KINDS = ("cyclegan", "dcgan")
DATASETS = ("synthetic", "utkface", "folder", "tfds")
TASKS = ("age", "ethnicity", "gender")
PREPROCESS = ("resize_and_crop", "crop", "none")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
CPU_THREADS = ("auto", "tensorflow")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the valid values."""


def _choice(field: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{field} must be one of {', '.join(valid)}. Received: {field}={value!r}")


def _positive(field: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field} must be a finite number {bound}. Received: {field}={value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The four networks.

    gen_blocks: residual blocks of the ResNet generator (9 for 256 px in the paper, 6 for 128).
    disc_type: "patchgan" is the 70x70 PatchGAN (output about H/8 - 2); "downsample8" is the
      stride-2 discriminator of the UTKFace reference design (output exactly H/8 x W/8).
    norm, disc_norm: normalization of the generator and of the discriminator; "instance" has
      no affine parameters, as in the official code, which gives the exact parameter counts
      11,378,179 (G) and 2,764,737 (D).
    upsample: how the generator doubles H and W (twice). "transpose" is the official k3 s2
      transposed convolution, whose kernel overlaps unevenly (one tap on even output rows and
      columns, two on odd ones) and leaves a period-2 / period-4 checkerboard that training
      must cancel; "nearest" and "bilinear" resize 2x, then apply a reflect-padded 3x3
      convolution (Odena et al., 2016, "Deconvolution and Checkerboard Artifacts"): every
      output pixel sees the same taps. Same parameter count.
    """

    gen_filters: int = 64
    gen_blocks: int = 9
    disc_filters: int = 64
    disc_layers: int = 3
    disc_type: str = "patchgan"
    norm: str = "instance"
    disc_norm: str = "instance"
    upsample: str = "transpose"
    z_dim: int = 100  # DCGAN: the length of the noise vector z

    def __post_init__(self):
        for name in ("gen_filters", "gen_blocks", "disc_filters", "disc_layers", "z_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model.{name} must be an integer >= 1. Received: {value!r}")
        _choice("model.disc_type", self.disc_type, DISCRIMINATORS)
        _choice("model.norm", self.norm, NORMS)
        _choice("model.disc_norm", self.disc_norm, NORMS)
        _choice("model.upsample", self.upsample, UPSAMPLES)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights. identity is a multiple of cycle, as in the official code (0.5 x 10 = 5)."""

    gan: str = "lsgan"
    cycle: float = 10.0
    identity: float = 0.5

    def __post_init__(self):
        _choice("loss.gan", self.gan, GAN_LOSSES)
        _positive("loss.cycle", self.cycle, allow_zero=True)
        _positive("loss.identity", self.identity, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam for both generators (one optimizer) and both discriminators (another).

    decay_epochs: the learning rate is constant, then decays linearly over the last
      `decay_epochs` epochs of the whole schedule; None means half of all epochs, "all" every
      epoch (the rate falls from the first one, whatever the schedule's length).
    """

    learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_epochs: int | str | None = None

    def __post_init__(self):
        _positive("optim.learning_rate", self.learning_rate)
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"optim.{name} must be in [0, 1). Received: {value!r}")
        decay = self.decay_epochs
        valid = decay is None or decay == "all" or (isinstance(decay, int) and not isinstance(decay, bool) and decay >= 0)
        if not valid:
            raise ConfigError(f"optim.decay_epochs must be an integer >= 0, \"all\" or None. Received: {decay!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the two domains come from and how images are prepared.

    dataset: "synthetic" (embedded, generated on first use), "utkface" (a folder or tarball of
      UTKFace images in data_dir), "folder" (trainA/ trainB/ testA/ testB/ in data_dir) or
      "tfds" (tfds_name, e.g. "cycle_gan/horse2zebra", already prepared in data_dir).
    task: picks the two domains from UTKFace labels (synthetic and utkface datasets).
    domain_a, domain_b: custom filters such as "age:20-29,gender:1"; they override task.
    synthetic_seed: seed of the generated faces (dataset="synthetic"); independent of the
      training seed, so runs with different seeds share one generated set.
    cache_mb: memory budget for decoded, resized training images kept between epochs
      (cache=True); a domain that does not fit is decoded from its files every epoch.
    """

    dataset: str = "synthetic"
    data_dir: str | None = None
    task: str = "age"
    domain_a: str | None = None
    domain_b: str | None = None
    tfds_name: str | None = None
    test_fraction: float = 0.1
    preprocess: str = "resize_and_crop"
    flip: bool = True
    cache: bool = True
    synthetic_count: int = 600
    synthetic_seed: int = 0
    cache_mb: int = 1024

    def __post_init__(self):
        _choice("data.dataset", self.dataset, DATASETS)
        _choice("data.task", self.task, TASKS)
        _choice("data.preprocess", self.preprocess, PREPROCESS)
        if not isinstance(self.test_fraction, (int, float)) or not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in [0, 1). Received: {self.test_fraction!r}")
        if self.domain_a is None and self.domain_b is not None:
            raise ConfigError(f"data.domain_b needs data.domain_a. Received: domain_b={self.domain_b!r}")
        if self.dataset in ("utkface", "folder") and not self.data_dir:
            raise ConfigError(
                f"data.dataset={self.dataset!r} reads your own copy: pass --data_dir=<path>. Received: data_dir=None"
            )
        if self.dataset == "tfds" and not self.tfds_name:
            raise ConfigError("data.dataset='tfds' needs --tfds_name, e.g. cycle_gan/horse2zebra. Received: None")
        _positive("data.synthetic_count", self.synthetic_count)
        if not isinstance(self.synthetic_seed, int) or isinstance(self.synthetic_seed, bool) or self.synthetic_seed < 0:
            raise ConfigError(f"data.synthetic_seed must be an integer >= 0. Received: {self.synthetic_seed!r}")
        _positive("data.cache_mb", self.cache_mb, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One resolution stage: `epochs` epochs at `size` x `size` pixels (size divisible by 4)."""

    size: int
    epochs: int

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 16 or self.size % 4:
            raise ConfigError(
                "Stage size must be an integer >= 16 divisible by 4 (the generator downsamples twice, and "
                f"training mirror-pads its size/4 maps, which needs 4 pixels). Received: size={self.size!r}"
            )
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"Stage epochs must be an integer >= 1. Received: epochs={self.epochs!r}")


SCHEDULES: Mapping[str, str] = {
    "progressive": "48:15,64:25,96:30,128:20,256:20",
    "fixed": "256:200",
    "demo": "32:2,48:1",
    "dcgan": "64:300",  # the reference DCGAN run (--model=dcgan's default)
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The stages in order. Weights and optimizer state carry across stages."""

    stages: tuple[Stage, ...]

    def __post_init__(self):
        if not self.stages:
            raise ConfigError("A schedule needs at least one stage. Received: ()")
        object.__setattr__(self, "stages", tuple(self.stages))

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        """A named schedule (progressive, fixed, demo) or a literal like "32:2,64:1"."""
        text = text.strip()
        if text in SCHEDULES:
            text = SCHEDULES[text]
        stages = []
        for part in text.split(","):
            size, sep, epochs = part.strip().partition(":")
            if not sep or not size.strip().isdigit() or not epochs.strip().isdigit():
                raise ConfigError(
                    f"Unknown schedule {text!r}: use one of {', '.join(SCHEDULES)} or a list of "
                    "size:epochs such as 32:2,64:1."
                )
            stages.append(Stage(int(size), int(epochs)))
        return cls(tuple(stages))

    def __str__(self) -> str:
        return ",".join(f"{s.size}:{s.epochs}" for s in self.stages)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole run.

    kind: "cyclegan" (translation between two domains) or "dcgan" (unconditional generation
      from noise, trained on domain A; train.dcgan).
    batch_size: per replica; the global batch is batch_size x replicas.
    checkpoint_every_steps: also checkpoint inside an epoch every N steps (0: only per epoch).
    steps_per_epoch: cap on the steps of an epoch (None: max(|A|, |B|) // global batch).
    eval_every_epochs: every K epochs, cycle/identity L1 (and flip rates with an oracle from
      oracle_dir, see tfcyclegan-evaluate train_oracle) on up to eval_count held-out images
      per domain, written to TensorBoard under eval/ (0: never).
    worker_timeout: seconds a multi-worker run waits for the other workers (None: the
      $TFCYCLEGAN_WORKER_TIMEOUT environment variable, else 600; see tfcyclegan.runtime.cluster).
    """

    kind: str = "cyclegan"
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    data: DataConfig = DataConfig()
    schedule: Schedule = Schedule.parse("demo")
    batch_size: int = 1
    pool_size: int = 50
    seed: int = 0
    deterministic: bool = False
    precision: str = "auto"
    strategy: str = "auto"
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    steps_per_epoch: int | None = None
    steps_per_call: int = 0  # 0: by stage size (train.trainer.steps_for_call)
    log_every_steps: int = 10
    sample_count: int = 4
    eval_every_epochs: int = 0
    eval_count: int = 64
    oracle_dir: str | None = None
    worker_timeout: float | None = None
    cpu_threads: str = "auto"

    def __post_init__(self):
        for name in ("batch_size", "keep_checkpoints", "log_every_steps", "sample_count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1. Received: {name}={value!r}")
        for name in ("pool_size", "checkpoint_every_steps", "eval_every_epochs", "eval_count", "steps_per_call"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0. Received: {name}={value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ConfigError(f"steps_per_epoch must be an integer >= 1 or None. Received: {self.steps_per_epoch!r}")
        _choice("precision", self.precision, PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("cpu_threads", self.cpu_threads, CPU_THREADS)
        _choice("kind", self.kind, KINDS)
        if self.kind == "cyclegan" and (self.data.domain_a is None) != (self.data.domain_b is None):
            raise ConfigError(
                "data.domain_a and data.domain_b go together: give both or neither (a DCGAN, --model=dcgan, takes "
                f"domain_a alone). Received: domain_a={self.data.domain_a!r}, domain_b={self.data.domain_b!r}"
            )
        if self.kind == "dcgan":
            sizes = sorted({stage.size for stage in self.schedule.stages})
            if len(sizes) > 1 or sizes[0] & (sizes[0] - 1):
                raise ConfigError(
                    "A DCGAN generates one size, a power of two (32, 64, 128, ...): give a schedule with one size, e.g. "
                    f"--schedule=64:300. Received: schedule={self.schedule}"
                )
            if self.eval_every_epochs:
                raise ConfigError("eval_every_epochs measures translations (CycleGAN); for a DCGAN run "
                                  "tfcyclegan-evaluate on its workdir. Received: eval_every_epochs="
                                  f"{self.eval_every_epochs}")
        if self.worker_timeout is not None:
            _positive("worker_timeout", self.worker_timeout)
        decay = self.optim.decay_epochs
        if isinstance(decay, int) and decay > self.schedule.total_epochs:
            raise ConfigError(
                f"optim.decay_epochs ({decay}) cannot exceed the schedule's {self.schedule.total_epochs} epochs; "
                "give at most that many, or --decay_epochs=all to decay over every epoch."
            )

    @property
    def decay_epochs(self) -> int:
        if self.optim.decay_epochs == "all":
            return self.schedule.total_epochs
        if self.optim.decay_epochs is not None:
            return self.optim.decay_epochs
        return self.schedule.total_epochs // 2

    # -- JSON round trip ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["schedule"] = str(self.schedule)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TrainConfig":
        raw = dict(raw)
        nested = {"model": ModelConfig, "loss": LossConfig, "optim": OptimConfig, "data": DataConfig}
        for key, sub in nested.items():
            if key in raw:
                raw[key] = sub(**raw[key])
        if "schedule" in raw:
            raw["schedule"] = Schedule.parse(raw["schedule"])
        return cls(**raw)


def replace(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """Returns `config` with dotted overrides applied, e.g. {"model.gen_blocks": 6, "seed": 1}."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        head, dot, tail = key.partition(".")
        if dot:
            nested.setdefault(head, {})[tail] = value
        else:
            top[key] = value
    for head, fields in nested.items():
        top[head] = dataclasses.replace(getattr(config, head), **fields)
    if isinstance(top.get("schedule"), str):
        top["schedule"] = Schedule.parse(top["schedule"])
    return dataclasses.replace(config, **top)


def diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of fields that differ between two config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(diff(va, vb, name + "."))
        elif va != vb:
            out.append(f"{name}: {va!r} != {vb!r}")
    return out


_CPU_QUALITY: Mapping[str, Any] = {
    "data.dataset": "utkface", "schedule": "48:2,64:8", "steps_per_epoch": 900, "model.upsample": "bilinear",
    "loss.identity": 0.1, "model.disc_filters": 32,
}

# Presets, one per reference system. Explicit flags override them (docs/training.md, "Presets").
PRESETS: Mapping[str, Mapping[str, Any]] = {
    # UTKFace attribute tasks: the progressive schedule of the design card.
    "utkface_age": {"data.dataset": "utkface", "data.task": "age", "schedule": "progressive"},
    "utkface_ethnicity": {"data.dataset": "utkface", "data.task": "ethnicity", "schedule": "progressive"},
    "utkface_gender": {"data.dataset": "utkface", "data.task": "gender", "schedule": "progressive"},
    # The same tasks in at most 40 minutes on a 2-core CPU (docs/quality.md has the A/B study and
    # the figures): 48 then 64 px, 9,000 steps, resize-then-convolve upsampling (no checkerboard),
    # identity weight 0.1 (0.5 holds the colours an age change must move), a 32-filter PatchGAN
    # (more faces judged target than with 64 filters at 12 % less CPU: the A/B study). The default
    # decay stays: --decay_epochs=all lowered cycle L1 but judged fewer 20s -> 50s faces target.
    **{f"utkface_{task}_cpu": {**_CPU_QUALITY, "data.task": task} for task in TASKS},
    # README command 1: the synthetic age task, sized so that within about 3 CPU minutes the hair
    # visibly changes and the faces stay recognisable (docs/quality.md, "The demo").
    "demo": {
        "data.dataset": "synthetic", "data.task": "age", "schedule": "32:30", "steps_per_epoch": 40,
        "batch_size": 4, "model.gen_filters": 32, "model.gen_blocks": 3, "model.disc_filters": 16,
        "model.upsample": "bilinear", "optim.learning_rate": 5e-4,
    },
    # selfie2anime (U-GAT-IT data): 256 px, Adam 1e-4 with betas 0.55/0.999, batch 1, cycle 10.
    "selfie2anime": {
        "data.dataset": "folder", "schedule": "256:100", "optim.learning_rate": 1e-4,
        "optim.beta_1": 0.55, "optim.beta_2": 0.999, "batch_size": 1, "loss.cycle": 10.0,
        "precision": "auto",
    },
    # face2anime: 128 px, pool 50, batch 1, flips, lr 2e-4.
    "face2anime": {
        "data.dataset": "folder", "schedule": "128:100", "pool_size": 50, "batch_size": 1,
        "data.flip": True, "optim.learning_rate": 2e-4,
    },
    # summer2winter_yosemite: 128 px, 6 residual blocks, batch-norm (stride-2, H/8) discriminator.
    "summer2winter": {
        "data.dataset": "folder", "schedule": "128:200", "model.gen_blocks": 6,
        "model.disc_type": "downsample8", "model.disc_norm": "batch",
    },
    # grumpifycat: random crop and flip augmentation with the cycle loss.
    "grumpifycat": {
        "data.dataset": "folder", "schedule": "256:200", "data.preprocess": "resize_and_crop",
        "data.flip": True, "loss.cycle": 10.0,
    },
}


def apply_preset(config: TrainConfig, name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}. Valid presets: {', '.join(PRESETS)}")
    return replace(config, PRESETS[name])
