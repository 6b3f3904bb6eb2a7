import json
import os
import signal

import numpy as np
import tensorflow as tf
import pytest

from tfcyclegan import config as C
from tfcyclegan.train import trainer as trainer_lib
from tfcyclegan.train.checkpoint import Position, WorkdirError, prepare_workdir
from tfcyclegan.train.optim import learning_rate_at

from conftest import tiny_config


def test_learning_rate_constant_then_linear_decay_across_stage_boundaries():
    cfg = C.TrainConfig(schedule=C.Schedule.parse("progressive"))  # 110 epochs, decay over the last 55
    lr = lambda e: learning_rate_at(cfg, e)
    assert lr(0) == lr(14) == lr(15) == lr(54) == pytest.approx(2e-4)  # 15 = first epoch at 64 px
    assert lr(55) == pytest.approx(2e-4 * 55 / 56)
    assert lr(70) == pytest.approx(2e-4 * 40 / 56)  # first epoch at 96 px
    assert lr(109) == pytest.approx(2e-4 / 56)
    assert all(lr(e) > lr(e + 1) for e in range(55, 109))
    no_decay = C.replace(cfg, {"optim.decay_epochs": 0})
    assert learning_rate_at(no_decay, 109) == pytest.approx(2e-4)


def test_resume_with_other_settings_is_refused_naming_the_fields(tmp_path):
    cfg = tiny_config()
    prepare_workdir(str(tmp_path), cfg)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
    prepare_workdir(str(tmp_path), C.replace(cfg, {"log_every_steps": 5}))  # harmless change
    with pytest.raises(WorkdirError) as err:
        prepare_workdir(str(tmp_path), C.replace(cfg, {"seed": 1, "loss.cycle": 3.0}))
    assert "seed: 0 != 1" in str(err.value) and "loss.cycle: 10.0 != 3.0" in str(err.value)


def test_unwritable_workdir_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(WorkdirError, match="Cannot write to workdir .*a_file/run"):
        prepare_workdir(str(blocker / "run"), tiny_config())


class _Crash(Exception):
    pass


def _final_state(trainer):
    m = trainer.model
    nets = [m.gen_g, m.gen_f, m.disc_a, m.disc_b]
    weights = [v.numpy() for n in nets for v in n.weights]
    opt = [v.numpy() for o in (m.optimizer_g, m.optimizer_d) for v in o.variables]
    return weights + opt


def test_killed_and_resumed_run_equals_uninterrupted_bit_for_bit(tmp_path, synthetic_cache):
    cfg = tiny_config(schedule="32:1,36:1", steps_per_epoch=5, checkpoint_every_steps=2, deterministic=True,
                      steps_per_call=2)
    straight = trainer_lib.Trainer(cfg, str(tmp_path / "straight"), data_cache_dir=synthetic_cache, quiet=True)
    result = straight.run()
    assert result.finished and result.position.global_step == 10
    assert straight.model.tracing_count == 1  # one trace for both stage sizes and every chunk length
    expected = _final_state(straight)

    workdir = str(tmp_path / "interrupted")

    def sigterm_at_3(position, losses):
        if position.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    # steps_per_call may change on resume; it must not change the result.
    first = trainer_lib.Trainer(C.replace(cfg, {"steps_per_call": 1}), workdir, data_cache_dir=synthetic_cache,
                             on_step=sigterm_at_3, quiet=True)
    stopped = first.run()
    assert stopped.stopped_by == "SIGTERM" and not stopped.finished
    assert stopped.position == Position(stage=0, epoch=0, step=3, global_step=3)
    assert stopped.last_checkpoint.endswith("ckpt-3")

    def crash_at_7(position, losses):  # a hard kill: no checkpoint after step 6
        if position.global_step >= 7:
            raise _Crash

    second = trainer_lib.Trainer(cfg, workdir, data_cache_dir=synthetic_cache, on_step=crash_at_7, quiet=True)
    assert second.progress.get().global_step == 3
    with pytest.raises(_Crash):
        second.run()

    third = trainer_lib.Trainer(cfg, workdir, data_cache_dir=synthetic_cache, quiet=True)
    assert third.progress.get() == Position(stage=1, epoch=0, step=1, global_step=6)
    assert third.run().finished
    got = _final_state(third)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # The workdir has what people look at.
    names = os.listdir(workdir)
    assert {"config.json", "checkpoints", "logs", "samples", "losses.csv", "loss_curves.png"} <= set(names)
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["epoch_0001_32px.png", "epoch_0002_36px.png"]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_cache, monkeypatch):
    cfg = tiny_config(steps_per_epoch=6, checkpoint_every_steps=2)
    trainer = trainer_lib.Trainer(cfg, str(tmp_path), data_cache_dir=synthetic_cache, quiet=True)
    real_steps = trainer.model.train_steps

    def poisoned(iterator, *, first_step, steps, global_batch):
        out = real_steps(iterator, first_step=first_step, steps=steps, global_batch=global_batch)
        if first_step >= 3:  # the 4th step (global steps count from 1)
            out = dict(out)
            out["cycle_b"] = out["cycle_b"] * np.float32("nan")
        return out

    monkeypatch.setattr(trainer.model, "train_steps", poisoned)
    with pytest.raises(trainer_lib.TrainingDiverged, match=r"cycle_b became nan at global step 4.*ckpt-2"):
        trainer.run()
    assert trainer.manager.latest_checkpoint.endswith("ckpt-2")


def test_eval_every_epochs_writes_cheap_metrics_to_tensorboard(tmp_path, synthetic_cache):
    from tensorboard.backend.event_processing import event_accumulator

    cfg = tiny_config(steps_per_epoch=2, eval_every_epochs=1, eval_count=4)
    trainer = trainer_lib.Trainer(cfg, str(tmp_path), data_cache_dir=synthetic_cache, quiet=True)
    assert trainer.run().finished
    acc = event_accumulator.EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"eval/cycle_l1_a2b", "eval/cycle_l1_b2a", "eval/identity_l1_a2b", "loss/gen_total", "learning_rate"} <= tags
    value = float(tf.make_ndarray(acc.Tensors("eval/cycle_l1_a2b")[0].tensor_proto))
    assert 0.0 < value < 2.0


def test_steps_per_call_by_stage_size_unless_given():
    cfg = C.TrainConfig()
    assert cfg.steps_per_call == 0
    assert [trainer_lib.steps_for_call(cfg, size) for size in (32, 48, 64, 96, 128, 256)] == [9, 4, 2, 1, 1, 1]
    assert trainer_lib.steps_for_call(C.TrainConfig(steps_per_call=3), 48) == 3
    with pytest.raises(C.ConfigError, match="steps_per_call must be an integer >= 0"):
        C.TrainConfig(steps_per_call=-1)
