"""A run survives what happens to its workdir: damaged checkpoints, a garbled state file, a
second writer, a crash, a full disk. Nothing the user did not ask to replace is deleted.

Each case copies one small finished run (checkpoints at global steps 2, 4 and 6), damages it
the way the case says, and resumes it.
"""

import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from tfcyclegan.train import trainer as trainer_lib
from tfcyclegan.train.checkpoint import WorkdirError, checkpoint_files

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = dict(steps_per_epoch=6, checkpoint_every_steps=2, keep_checkpoints=3, schedule="32:2", log_every_steps=1)


@pytest.fixture(scope="module")
def finished_at_6(tmp_path_factory, synthetic_cache):
    """A run stopped at global step 6, with checkpoints ckpt-2, ckpt-4, ckpt-6 and 6 rows in losses.csv."""
    workdir = str(tmp_path_factory.mktemp("run") / "run")
    trainer = trainer_lib.Trainer(tiny_config(**CONFIG), workdir, data_cache_dir=synthetic_cache, quiet=True)
    assert trainer.run(max_steps=6).position.global_step == 6
    assert sorted(checkpoint_files(os.path.join(workdir, "checkpoints"))) == [2, 4, 6]
    return workdir


@pytest.fixture
def damaged(finished_at_6, tmp_path):
    """A fresh copy of the run at 6 for one test to damage."""
    copy = str(tmp_path / "run")
    shutil.copytree(finished_at_6, copy)
    return copy


def _resume(workdir, cache, capsys=None):
    """Builds a Trainer on the workdir (restoring it); returns (trainer, its log)."""
    trainer = trainer_lib.Trainer(tiny_config(**CONFIG), workdir, data_cache_dir=cache, quiet=capsys is None)
    log = capsys.readouterr().err if capsys is not None else ""
    return trainer, log


def _ckpt(workdir, number, kind="data"):
    directory = Path(workdir) / "checkpoints"
    if kind == "index":
        return directory / f"ckpt-{number}.index"
    return next(directory.glob(f"ckpt-{number}.data-*"))


def _aside(workdir):
    return sorted(str(p.relative_to(Path(workdir) / "checkpoints")) for p in (Path(workdir) / "checkpoints").glob("broken-*/*"))


def test_deleted_newest_checkpoint_resumes_from_the_previous_one(damaged, synthetic_cache):
    for path in (Path(damaged) / "checkpoints").glob("ckpt-6.*"):
        path.unlink()
    trainer, _ = _resume(damaged, synthetic_cache)
    assert trainer.progress.get().global_step == 4
    assert trainer.restored_from.endswith("ckpt-4")
    # The state file names what is there, so rotation knows ckpt-2 and ckpt-4.
    assert tf.train.get_checkpoint_state(os.path.join(damaged, "checkpoints")).all_model_checkpoint_paths[-2:] == [
        os.path.join(damaged, "checkpoints", "ckpt-2"), os.path.join(damaged, "checkpoints", "ckpt-4")]
    trainer.close()


@pytest.mark.parametrize("damage", ["missing_index", "truncated", "zeroed", "bit_flip"])
def test_unreadable_newest_checkpoint_is_moved_aside_and_the_previous_one_used(damaged, synthetic_cache, capsys, damage):
    data = _ckpt(damaged, 6)
    if damage == "missing_index":
        _ckpt(damaged, 6, "index").unlink()
    elif damage == "truncated":
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "zeroed":
        data.write_bytes(bytes(data.stat().st_size))
    else:
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x10
        data.write_bytes(bytes(raw))
    trainer, log = _resume(damaged, synthetic_cache, capsys)
    assert trainer.progress.get().global_step == 4
    assert "ckpt-6" in log and "unusable" in log and "broken-" in log, log
    assert "Resuming from ckpt-4, the newest checkpoint that reads completely" in log
    moved = _aside(damaged)
    assert moved and all(name.split("/")[1].startswith("ckpt-6") for name in moved), moved  # moved, not deleted
    assert sorted(checkpoint_files(os.path.join(damaged, "checkpoints"))) == [2, 4]
    trainer.close()


def test_garbled_state_file_is_rewritten_from_the_checkpoint_files(damaged, synthetic_cache, capsys):
    (Path(damaged) / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: \x00\x01 garbage {{{\n")
    trainer, log = _resume(damaged, synthetic_cache, capsys)
    assert trainer.progress.get().global_step == 6
    assert "garbled" in log
    assert tf.train.latest_checkpoint(os.path.join(damaged, "checkpoints")).endswith("ckpt-6")
    assert any(name.endswith("/checkpoint") for name in _aside(damaged))  # the garbled copy is kept
    trainer.close()


def test_a_workdir_whose_checkpoints_all_fail_is_refused_and_nothing_is_deleted(damaged, synthetic_cache):
    for number in (2, 4, 6):
        data = _ckpt(damaged, number)
        os.truncate(data, 10)
    with pytest.raises(WorkdirError, match=r"No checkpoint in .* can be read.*ckpt-6.*ckpt-4.*ckpt-2.*new --workdir"):
        _resume(damaged, synthetic_cache)
    assert len(_aside(damaged)) == 6  # three .index and three data files, moved, not deleted
    # And a second attempt is refused too (the losses.csv still records the progress).
    with pytest.raises(WorkdirError, match=r"losses.csv records training up to global step 6"):
        _resume(damaged, synthetic_cache)


def test_losses_csv_is_cut_back_to_the_resumed_step(damaged, synthetic_cache):
    for path in (Path(damaged) / "checkpoints").glob("ckpt-6.*"):
        path.unlink()
    trainer, _ = _resume(damaged, synthetic_cache)
    with open(os.path.join(damaged, "losses.csv"), newline="") as f:
        steps = [int(row["global_step"]) for row in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]
    assert trainer.run(max_steps=8).position.global_step == 8
    with open(os.path.join(damaged, "losses.csv"), newline="") as f:
        steps = [int(row["global_step"]) for row in csv.DictReader(f)]
    assert steps == list(range(1, 9))  # every step once


def test_rotation_after_a_fallback_deletes_only_older_intact_checkpoints(damaged, synthetic_cache):
    os.truncate(_ckpt(damaged, 6), 10)
    trainer, _ = _resume(damaged, synthetic_cache)
    trainer.run(max_steps=10)  # saves 6 (end of epoch), 8 and 10; keep 3
    assert sorted(checkpoint_files(os.path.join(damaged, "checkpoints"))) == [6, 8, 10]
    assert all(name.split("/")[1].startswith("ckpt-6") for name in _aside(damaged))  # the broken one is still there


def test_two_trainers_in_one_workdir_the_second_is_refused(damaged, synthetic_cache):
    first, _ = _resume(damaged, synthetic_cache)
    with pytest.raises(WorkdirError, match=rf"Another training run is writing to .*\(pid {os.getpid()} on "):
        _resume(damaged, synthetic_cache)
    first.close()
    second, _ = _resume(damaged, synthetic_cache)  # released: the next one may write
    second.close()


def _train_py(workdir, cache, *flags, preexec_fn=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    args = ["--gen_filters=8", "--gen_blocks=1", "--disc_filters=8", "--synthetic_count=120", "--batch_size=2",
            "--pool_size=4", "--log_every_steps=1", "--checkpoint_every_steps=2", "--keep_checkpoints=3", *flags]
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={cache}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=preexec_fn)


def test_a_second_train_py_is_refused_and_a_killed_runs_lock_is_not_stale(tmp_path, synthetic_cache):
    workdir = tmp_path / "run"
    first = _train_py(workdir, synthetic_cache, "--schedule=32:50", "--steps_per_epoch=40")
    deadline = time.time() + 300
    while not list((workdir / "checkpoints").glob("ckpt-*.index")):  # the first is training
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.5)
    second = _train_py(workdir, synthetic_cache, "--schedule=32:50", "--steps_per_epoch=40")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 1, err[-2000:]
    assert f"Another training run is writing to {workdir} (pid {first.pid} on " in err
    first.send_signal(signal.SIGKILL)  # a crash: no chance to release anything
    first.communicate(timeout=60)
    third = _train_py(workdir, synthetic_cache, "--schedule=32:50", "--steps_per_epoch=40", "--max_steps=1")
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0, err[-2000:]  # the system released the killed run's lock
    assert "Resuming from" in err


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_so(tmp_path, synthetic_cache):
    workdir = tmp_path / "run"
    proc = _train_py(workdir, synthetic_cache, "--schedule=32:1", "--steps_per_epoch=8", "--max_steps=4")
    assert proc.wait(timeout=300) == 0, proc.communicate()[1][-2000:]
    data = _ckpt(workdir, 4)
    limit = data.stat().st_size // 2  # a new checkpoint's data file cannot be written whole

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _train_py(workdir, synthetic_cache, "--schedule=32:1", "--steps_per_epoch=8", "--max_steps=6",
                     preexec_fn=small_disk)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Could not write checkpoint ckpt-6" in err and "is the disk full?" in err, err[-3000:]
    assert "ckpt-4 is intact" in err
    assert "Traceback" not in err
    files = checkpoint_files(str(workdir / "checkpoints"))
    assert sorted(files) == [2, 4]  # the failed save left nothing behind, and nothing older was deleted
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints" / "ckpt-4"))
    assert reader.get_tensor("progress/global_step/.ATTRIBUTES/VARIABLE_VALUE") == 4
