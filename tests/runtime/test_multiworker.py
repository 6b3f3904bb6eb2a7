"""Multi-worker training as local processes on loopback (TF_CONFIG with 127.0.0.1 ports, CPU).

Each worker is a subprocess running tests/runtime/multiworker_worker.py (schedule.Trainer, as
train.py runs it) or train.py itself: MultiWorkerMirroredStrategy must be created before
TensorFlow starts in a process, which the pytest process is long past.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfcyclegan import data as data_lib
from tfcyclegan.runtime import cluster

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "runtime" / "multiworker_worker.py"
TINY_FLAGS = ["--gen_filters=8", "--gen_blocks=1", "--disc_filters=8", "--synthetic_count=120", "--batch_size=2"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config: dict | None = None, **extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return {**env, **extra}


def _cluster(ports: list[int], index: int) -> dict:
    return {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}


def _worker(config_path: Path, workdir: Path, cache: str, *args, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), f"--config={config_path}", f"--workdir={workdir}",
                             f"--cache={cache}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process {proc.args} still running after {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def _results(procs: list[subprocess.Popen], timeout: float = 300) -> list[dict]:
    """Waits for every worker; each must exit 0. Their JSON reports (last stdout line), in order.
    Any still running (because an assertion failed first) are killed."""
    try:
        results = []
        for proc in procs:
            code, out, err = _finish(proc, timeout=timeout)
            assert code == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        _kill(*procs)


@pytest.fixture(scope="module")
def warm_cache(synthetic_cache):
    """Generates the tiny synthetic faces once, so concurrent workers only read the cache."""
    data_lib.load_domains(tiny_config().data, cache_dir=synthetic_cache)
    return synthetic_cache


# -- bad input: clear errors before any work --------------------------------------------------------

def test_train_py_with_a_malformed_tf_config_fails_before_any_work(tmp_path, warm_cache):
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={warm_cache}",
                           *TINY_FLAGS], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", '))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "train.py: TF_CONFIG is not valid JSON" in proc.stderr
    assert not workdir.exists()  # nothing written, nothing trained


def test_a_worker_that_never_starts_makes_the_other_give_up_with_a_message(tmp_path, warm_cache):
    """Worker 1 of TF_CONFIG never comes up: worker 0 stops after --worker_timeout, which wins
    over $TFCYCLEGAN_WORKER_TIMEOUT."""
    workdir = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--workdir={workdir}", f"--cache_dir={warm_cache}",
                           "--worker_timeout=5", *TINY_FLAGS], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(_cluster(_free_ports(2), 0), **{cluster.WORKER_TIMEOUT_ENV: "600"}))
    assert proc.returncode != 0
    assert "Gave up after 5 s waiting for the other workers to start (this process is worker 0" in proc.stderr, \
        proc.stderr[-3000:]
    assert "raise --worker_timeout" in proc.stderr
    assert not workdir.exists()
    assert time.perf_counter() - start < 240


# -- two workers against one process ---------------------------------------------------------------

# Why "close" and not "equal": the two-worker run sums two half-batch gradients in an
# all-reduce, the single process sums the whole batch inside each convolution's backward
# pass; float32 rounds the two orders differently (~1e-7 relative). Adam then amplifies the
# rounding where a gradient is essentially zero (the biases of convolutions followed by
# instance norm have a true gradient of 0, and Adam's normalized first steps move them by
# about +-lr whatever the sign of the noise), and the L1 cycle loss's sign flips on pixels
# that are equal to rounding. So we compare, per network, the *update* of the weights
# (final - initial) and require the two runs' updates to differ by < UPDATE_RTOL of its norm
# (measured: 0.2-0.5%); the Adam moments after step 1, which are that step's gradients (a
# global batch averaged wrongly would scale them), within MOMENT_RTOL (measured: 7e-7 and
# 2e-7; after step 3, from weights that already differ, 1.4% and 0.04%, hence not compared);
# and the first step's losses (same weights, same examples) within 1e-5. Both workers must
# agree exactly.
UPDATE_RTOL = 0.05
MOMENT_RTOL = 1e-4
FIRST_LOSS_RTOL = 1e-5


def _groups(arrays: dict, stage: str) -> dict[str, list[np.ndarray]]:
    groups: dict[str, list[np.ndarray]] = {}
    for key in sorted(arrays):
        if key.startswith(stage + "/"):
            owner = key.split("/")[1]
            groups.setdefault(owner, []).append(arrays[key].astype(np.float64))
    return groups


def _relative(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    diff = np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b)))
    return diff / np.sqrt(sum(np.sum(y**2) for y in b))


@pytest.mark.slow
def test_two_workers_hold_identical_weights_equal_to_one_process_with_the_same_global_batch(tmp_path, warm_cache):
    # pool_size 50 > the 12 fakes of 3 steps: the pools only fill (and return their input), so
    # one pool per worker and one for the single process see the same thing.
    common = dict(steps_per_epoch=3, deterministic=True, pool_size=50, seed=3)
    two = tmp_path / "two.json"
    two.write_text(tiny_config(batch_size=2, strategy="multi_worker", **common).to_json())
    one = tmp_path / "one.json"
    one.write_text(tiny_config(batch_size=4, strategy="mirrored", **common).to_json())
    ports = _free_ports(2)
    # All three at once: each spends most of its time tracing, on one core.
    procs = [_worker(two, tmp_path / "cluster", warm_cache, f"--out={tmp_path}/w{i}.npz", "--record_steps",
                     env=_env(_cluster(ports, i))) for i in range(2)]
    procs.append(_worker(one, tmp_path / "single", warm_cache, f"--out={tmp_path}/one.npz", "--record_steps", env=_env()))
    results = _results(procs, timeout=600)
    assert [(r["chief"], r["replicas"], r["global_step"]) for r in results] == [(True, 2, 3), (False, 2, 3), (True, 1, 3)]

    w0, w1, single = (dict(np.load(tmp_path / f"{name}.npz")) for name in ("w0", "w1", "one"))
    assert w0.keys() == w1.keys() == single.keys()
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)  # the workers agree exactly
        if key.startswith("initial/"):
            np.testing.assert_array_equal(w0[key], single[key], err_msg=key)  # same seed, same start

    # Step 1 ran on the same weights and the same four examples.
    for name, value in results[0]["losses"]["1"].items():
        assert value == pytest.approx(results[2]["losses"]["1"][name], rel=FIRST_LOSS_RTOL, abs=1e-6), name

    initial, final_two, final_one = _groups(w0, "initial"), _groups(w0, "final"), _groups(single, "final")
    for net in ("gen_g", "gen_f", "disc_a", "disc_b"):
        update_two = [f - i for f, i in zip(final_two[net], initial[net])]
        update_one = [f - i for f, i in zip(final_one[net], initial[net])]
        assert all(np.any(u != 0) for u in update_one[::2]), net  # every kernel trained
        assert _relative(update_two, update_one) < UPDATE_RTOL, net
    # Step 1's moments are its gradients (same weights, same examples): a global batch
    # averaged wrongly would scale them. Later steps start from weights that already differ.
    step1_two, step1_one = _groups(w0, "step1"), _groups(single, "step1")
    for opt in ("optimizer_g", "optimizer_d"):
        assert _relative(step1_two[opt], step1_one[opt]) < MOMENT_RTOL, opt

    # Only the chief keeps checkpoints; the other worker's scratch folder is gone.
    names = set(os.listdir(tmp_path / "cluster"))
    assert "checkpoints" in names and not [n for n in names if n.startswith(".worker_")], names
    assert any(n.startswith("ckpt-3") for n in os.listdir(tmp_path / "cluster" / "checkpoints"))


# -- failures: a worker that hangs or dies -----------------------------------------------------------

def _kill(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _hung_worker_run(tmp_path, cache, timeout: int, hang: str, **config) -> tuple[int, str, float]:
    """Worker 0 trains, worker 1 hangs (`hang`, a multiworker_worker.py flag): worker 0's exit
    code, stderr and seconds from start to exit."""
    path = tmp_path / "two.json"
    path.write_text(tiny_config(strategy="multi_worker", worker_timeout=timeout, **config).to_json())
    ports = _free_ports(2)
    start = time.perf_counter()
    chief = _worker(path, tmp_path / "run", cache, env=_env(_cluster(ports, 0)))
    hung = _worker(path, tmp_path / "run", cache, hang, env=_env(_cluster(ports, 1)))
    try:
        code, _, err = _finish(chief, timeout=300)
        return code, err, time.perf_counter() - start
    finally:
        _kill(chief, hung)


@pytest.mark.slow
def test_a_worker_stuck_before_building_its_model_is_named_after_the_timeout(tmp_path, warm_cache):
    """Worker 1 connects, then hangs loading its data: without the barrier before the model,
    worker 0 would wait forever in TensorFlow's broadcast of the initial weights."""
    code, err, seconds = _hung_worker_run(tmp_path, warm_cache, 10, "--hang_loading_data")
    assert code == 3, err[-3000:]
    assert "worker 0 lost worker 1 (DeadlineExceededError: Barrier timed out" in err, err[-3000:]
    assert "at most 10 s" in err and "resume from the start (no checkpoint yet)" in err
    assert seconds < 120


@pytest.mark.slow
def test_a_worker_stuck_in_the_initial_weight_broadcast_is_named_after_the_timeout(tmp_path, warm_cache):
    """Worker 1 passes the barrier, then hangs while building its model: the watchdog aborts
    worker 0's broadcast after the timeout, and a last barrier names the missing worker."""
    code, err, seconds = _hung_worker_run(tmp_path, warm_cache, 8, "--hang_building_model")
    assert code == 3, err[-3000:]
    assert "worker 0 lost worker 1 (DeadlineExceededError" in err, err[-3000:]
    assert "worker 0 waited more than 8 s for the other workers to build the model" in err
    assert seconds < 120


@pytest.mark.slow
def test_a_worker_that_hangs_mid_training_is_named_after_the_timeout(tmp_path, warm_cache):
    """Worker 1 stays alive (its heartbeats continue) but stops after step 3: worker 0's next
    collective times out, a last barrier names worker 1, and the message says how to resume."""
    code, err, seconds = _hung_worker_run(tmp_path, warm_cache, 10, "--hang_after_step=3", steps_per_epoch=6,
                                          checkpoint_every_steps=2)
    assert code == 3, err[-3000:]
    assert "worker 0 lost worker 1 (DeadlineExceededError" in err, err[-3000:]
    assert "at most 10 s" in err and f"resume from {tmp_path / 'run' / 'checkpoints' / 'ckpt-2'}" in err
    assert seconds < 150


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_within_the_timeout_and_a_restart_resumes(tmp_path, warm_cache):
    config = tmp_path / "two.json"
    config.write_text(tiny_config(strategy="multi_worker", worker_timeout=30, steps_per_epoch=6,
                                  checkpoint_every_steps=2, deterministic=True).to_json())
    workdir = tmp_path / "run"
    ports = _free_ports(2)
    chief = _worker(config, workdir, warm_cache, env=_env(_cluster(ports, 0)))
    victim = _worker(config, workdir, warm_cache, "--die_after_step=3", env=_env(_cluster(ports, 1)))
    try:
        _, victim_err = victim.communicate(timeout=300)
        died = time.perf_counter()
        assert victim.returncode == -signal.SIGKILL, victim_err[-3000:]  # kill -9 after step 3
        code, _, err = _finish(chief, timeout=120)
        waited = time.perf_counter() - died
    finally:
        _kill(chief, victim)
    assert code == 3, err[-3000:]
    assert waited < 30, waited  # within the worker timeout (heartbeats stop: ~10 s)
    checkpoint = workdir / "checkpoints" / "ckpt-2"  # the last one before the kill
    assert "worker 0 lost worker 1 (" in err and f"resume from {checkpoint}" in err, err[-3000:]
    assert tf_latest(workdir) == str(checkpoint)

    # Restarting both workers with the same command resumes from that checkpoint.
    ports = _free_ports(2)
    procs = [_worker(config, workdir, warm_cache, f"--out={tmp_path}/w{i}.npz", env=_env(_cluster(ports, i)))
             for i in range(2)]
    results = _results(procs)
    for r in results:
        assert r["restored_from"] == str(checkpoint) and r["finished"] and r["global_step"] == 6, r
        assert sorted(r["losses"], key=int) == ["3", "4", "5", "6"]  # steps 3..6 ran again, not 1..6
    w0, w1 = (dict(np.load(tmp_path / f"w{i}.npz")) for i in range(2))
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    assert tf_latest(workdir) == str(workdir / "checkpoints" / "ckpt-6")


def tf_latest(workdir: Path) -> str | None:
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(workdir / "checkpoints"))


# -- float16 across workers --------------------------------------------------------------------------

@pytest.mark.slow
def test_float16_overflow_on_one_worker_skips_the_step_on_both(tmp_path, warm_cache):
    """Worker 1's gradients of step 1 overflow, worker 0's do not. Keras decides to skip from
    each worker's own gradients; cluster.agree_on_overflow makes both skip (without it,
    worker 0 would apply an all-reduced inf or wait for worker 1 in an all-reduce it skips)."""
    config = tmp_path / "fp16.json"
    config.write_text(tiny_config(strategy="multi_worker", precision="mixed_float16", steps_per_epoch=2, pool_size=0,
                                  worker_timeout=60).to_json())
    ports = _free_ports(2)
    common = ["--loss_scale=1024", "--record_steps"]
    procs = [_worker(config, tmp_path / "run", warm_cache, f"--out={tmp_path}/w0.npz", *common, env=_env(_cluster(ports, 0))),
             _worker(config, tmp_path / "run", warm_cache, f"--out={tmp_path}/w1.npz", *common, "--overflow_first_step",
                     env=_env(_cluster(ports, 1)))]
    results = _results(procs)
    for r in results:
        assert r["global_step"] == 2
        # Step 1 overflowed somewhere: the scale halves on both workers; step 2 is finite.
        assert r["loss_scales"] == {"1": [512.0, 512.0], "2": [512.0, 512.0]}, r["loss_scales"]
        assert all(np.isfinite(v) for step in r["losses"].values() for v in step.values())
    w0, w1 = (dict(np.load(tmp_path / f"w{i}.npz")) for i in range(2))
    assert w0.keys() == w1.keys()
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)  # the workers agree exactly
    networks = [k[len("initial/"):] for k in w0 if k.startswith("initial/") and k.split("/")[1] in
                ("gen_g", "gen_f", "disc_a", "disc_b")]
    assert networks
    for key in networks:
        np.testing.assert_array_equal(w0[f"step1/{key}"], w0[f"initial/{key}"], err_msg=key)  # step 1 skipped
    changed = [key for key in networks if not np.array_equal(w0[f"final/{key}"], w0[f"initial/{key}"])]
    assert {key.split("/")[0] for key in changed} == {"gen_g", "gen_f", "disc_a", "disc_b"}  # step 2 applied
