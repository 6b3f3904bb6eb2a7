import itertools
import json

import pytest

from tfcyclegan import config as C


def test_named_and_literal_schedules():
    assert [(s.size, s.epochs) for s in C.Schedule.parse("progressive").stages] == [
        (48, 15), (64, 25), (96, 30), (128, 20), (256, 20)]
    assert C.Schedule.parse("progressive").total_epochs == 110
    assert [(s.size, s.epochs) for s in C.Schedule.parse("fixed").stages] == [(256, 200)]
    assert [(s.size, s.epochs) for s in C.Schedule.parse("32:2,64:1").stages] == [(32, 2), (64, 1)]


@pytest.mark.parametrize("text", ["bogus", "32", "32:x", "32:2,,"])
def test_unknown_schedule_lists_valid_names(text):
    with pytest.raises(C.ConfigError, match="progressive, fixed, demo"):
        C.Schedule.parse(text)


def test_size_not_divisible_by_4_is_refused():
    with pytest.raises(C.ConfigError, match="divisible by 4.*size=50"):
        C.Schedule.parse("50:1")


def test_size_below_16_is_refused():
    # training mirror-pads the generator's size/4 maps by one pixel: a 12 px stage's 3 px maps are too small
    assert C.Schedule.parse("16:1").stages[0].size == 16
    with pytest.raises(C.ConfigError, match=">= 16.*size=12"):
        C.Schedule.parse("12:1")


@pytest.mark.parametrize("field,kwargs,match", [
    ("model", dict(norm="layer"), "instance, batch, none"),
    ("model", dict(gen_blocks=0), "gen_blocks"),
    ("loss", dict(gan="wgan"), "lsgan, vanilla, hinge"),
    ("data", dict(task="hair"), "age, ethnicity, gender"),
    ("data", dict(domain_b="age:50-59"), "domain_b needs data.domain_a"),
    ("data", dict(dataset="utkface"), "--data_dir"),
    ("optim", dict(beta_1=1.5), r"\[0, 1\)"),
])
def test_invalid_values_name_the_field(field, kwargs, match):
    cls = {"model": C.ModelConfig, "loss": C.LossConfig, "data": C.DataConfig, "optim": C.OptimConfig}[field]
    with pytest.raises(C.ConfigError, match=match):
        cls(**kwargs)


def test_precision_and_strategy_choices():
    with pytest.raises(C.ConfigError, match="auto, float32, mixed_float16, mixed_bfloat16"):
        C.TrainConfig(precision="half")
    with pytest.raises(C.ConfigError, match="mirrored"):
        C.TrainConfig(strategy="tpu")


def test_json_round_trip_and_diff():
    cfg = C.replace(C.TrainConfig(), {"model.gen_blocks": 6, "schedule": "32:2,64:1", "seed": 3})
    again = C.TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    other = C.replace(cfg, {"seed": 4, "loss.cycle": 5.0})
    assert C.diff(cfg.to_dict(), other.to_dict()) == ["loss.cycle: 10.0 != 5.0", "seed: 3 != 4"]


def test_presets_apply_and_unknown_preset_lists_names():
    cfg = C.apply_preset(C.TrainConfig(data=C.DataConfig(dataset="folder", data_dir="/x")), "summer2winter")
    assert cfg.model.gen_blocks == 6 and cfg.model.disc_type == "downsample8" and cfg.model.disc_norm == "batch"
    cfg = C.apply_preset(C.TrainConfig(data=C.DataConfig(dataset="folder", data_dir="/x")), "selfie2anime")
    assert (cfg.optim.learning_rate, cfg.optim.beta_1) == (1e-4, 0.55)
    with pytest.raises(C.ConfigError, match="utkface_age"):
        C.apply_preset(C.TrainConfig(), "nope")


def test_decay_defaults_to_half_of_all_epochs():
    cfg = C.TrainConfig(schedule=C.Schedule.parse("progressive"))
    assert cfg.decay_epochs == 55
    with pytest.raises(C.ConfigError, match="cannot exceed"):
        C.TrainConfig(schedule=C.Schedule.parse("32:2"), optim=C.OptimConfig(decay_epochs=3))


def test_decay_over_all_epochs_follows_any_schedule():
    from absl import flags

    from tfcyclegan.cli import train as cli
    from tfcyclegan.train.optim import learning_rate_at

    for schedule, epochs in (("48:2,64:8", 10), ("48:1,64:1", 2)):
        cfg = C.TrainConfig(schedule=C.Schedule.parse(schedule), optim=C.OptimConfig(decay_epochs="all"))
        assert cfg.decay_epochs == epochs
        rates = [learning_rate_at(cfg, e) for e in range(epochs)]
        assert rates[0] < 2e-4 and all(a > b > 0 for a, b in itertools.pairwise(rates))  # falls from the first epoch
        assert C.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).optim.decay_epochs == "all"
    with pytest.raises(C.ConfigError, match="--decay_epochs=all"):
        C.TrainConfig(schedule=C.Schedule.parse("48:1,64:1"), optim=C.OptimConfig(decay_epochs=3))
    for bad in ("some", True, -1):
        with pytest.raises(C.ConfigError, match="decay_epochs"):
            C.OptimConfig(decay_epochs=bad)

    def parsed(*args):
        values = cli.define_flags(flags.FlagValues())
        values(["train", "--schedule=48:2,64:8", *args])
        return cli.config_from_flags(values)

    assert parsed("--decay_epochs=ALL").optim.decay_epochs == "all"
    assert parsed("--decay_epochs=4").decay_epochs == 4 and parsed().decay_epochs == 5
    with pytest.raises(C.ConfigError, match="--decay_epochs=.soon."):
        parsed("--decay_epochs=soon")


def test_cpu_threads_choices():
    assert C.TrainConfig().cpu_threads == "auto"
    with pytest.raises(C.ConfigError, match="cpu_threads"):
        C.TrainConfig(cpu_threads="many")
