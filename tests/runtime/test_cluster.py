"""Strategy choice, TF_CONFIG validation, chief election and the cross-worker helpers (in-process).

Multi-worker training itself runs in subprocesses (tests/test_multiworker.py): the
collectives of MultiWorkerMirroredStrategy must be configured before TensorFlow starts, so a
pytest process that already ran TensorFlow cannot create one.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan import data as data_lib
from tfcyclegan.runtime import cluster
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.config import ConfigError

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_cluster(monkeypatch):
    """Fails the test if anything tries to create a real multi-worker strategy in this process."""

    def refuse(*args, **kwargs):
        raise AssertionError("MultiWorkerMirroredStrategy was created: the bad TF_CONFIG was not caught")

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", refuse)
    monkeypatch.delenv(cluster.WORKER_TIMEOUT_ENV, raising=False)
    return monkeypatch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tf_config(workers, index=0, task_type="worker", **cluster):
    return json.dumps({"cluster": {"worker": workers, **cluster}, "task": {"type": task_type, "index": index}})


GOOD = ["127.0.0.1:1", "127.0.0.1:2"]  # never bound: every case below fails before that


@pytest.mark.parametrize("raw,message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" object'),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" object'),
    (_tf_config("127.0.0.1:1"), 'cluster["worker"] must be a non-empty list'),
    (_tf_config(["127.0.0.1"]), "not \"host:port\". Received: '127.0.0.1'"),
    (_tf_config(["127.0.0.1:99999"]), "not \"host:port\""),
    (_tf_config(GOOD, ps=["127.0.0.1:3"]), "no parameter servers"),
    (_tf_config(["127.0.0.1:1", "127.0.0.1:1"]), "lists 127.0.0.1:1 twice"),
    (_tf_config(GOOD, chief=["127.0.0.1:3", "127.0.0.1:4"]), 'may have one "chief"'),
    (json.dumps({"cluster": {"worker": GOOD}}), 'TF_CONFIG needs "task"'),
    (_tf_config(GOOD, index=2), "does not name a member of cluster"),
    (_tf_config(GOOD, index=-1), "does not name a member of cluster"),
    (_tf_config(GOOD, index="1"), "does not name a member of cluster"),
    (_tf_config(GOOD, task_type="chief"), "does not name a member of cluster"),
])
def test_malformed_tf_config_is_a_clear_error_before_any_work(no_cluster, raw, message):
    no_cluster.setenv("TF_CONFIG", raw)
    for name in ("auto", "multi_worker"):
        with pytest.raises(ConfigError) as err:
            strategy_lib.make_strategy(name)
        assert message in str(err.value)


def test_tf_config_naming_a_port_already_in_use_is_refused(no_cluster):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        no_cluster.setenv("TF_CONFIG", _tf_config([f"127.0.0.1:{_free_port()}", f"127.0.0.1:{port}"], index=1))
        with pytest.raises(ConfigError, match=rf"this process worker 1 at 127.0.0.1:{port}, but port {port} is already in use"):
            strategy_lib.make_strategy("auto")


def test_tf_config_naming_another_machines_address_is_refused(no_cluster):
    # 192.0.2.0/24 is TEST-NET-1: never an address of this machine.
    no_cluster.setenv("TF_CONFIG", _tf_config(["192.0.2.10:2222", "192.0.2.11:2222"], index=1))
    with pytest.raises(ConfigError, match="192.0.2.11 is not an address of this machine"):
        strategy_lib.make_strategy("multi_worker")


def test_a_cluster_with_a_single_process_strategy_is_refused(no_cluster):
    no_cluster.setenv("TF_CONFIG", _tf_config([f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]))
    with pytest.raises(ConfigError, match="--strategy=mirrored trains alone"):
        strategy_lib.make_strategy("mirrored")


def test_unknown_strategy_lists_the_valid_ones(no_cluster):
    with pytest.raises(ConfigError, match="auto, mirrored, multi_worker or one_device"):
        strategy_lib.make_strategy("parameter_server")


def test_without_tf_config_auto_is_mirrored_and_the_process_is_chief(no_cluster):
    no_cluster.delenv("TF_CONFIG", raising=False)
    strategy = strategy_lib.make_strategy("auto")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert cluster.is_chief(strategy) and cluster.num_workers(strategy) == 1
    assert cluster.task_name(strategy) == "this process"
    assert isinstance(strategy_lib.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)


def test_worker_timeout_flag_then_environment_then_default_and_bad_values(monkeypatch):
    monkeypatch.delenv(cluster.WORKER_TIMEOUT_ENV, raising=False)
    assert cluster.worker_timeout() == cluster.DEFAULT_WORKER_TIMEOUT == 600
    monkeypatch.setenv(cluster.WORKER_TIMEOUT_ENV, "45")
    assert cluster.worker_timeout() == 45
    assert cluster.worker_timeout(12) == 12  # --worker_timeout wins over the environment
    monkeypatch.setenv(cluster.WORKER_TIMEOUT_ENV, "0")
    assert cluster.worker_timeout() is None  # 0 = wait forever
    assert cluster.worker_timeout(12.5) == 12.5
    for bad in ("ten", "-1", "inf"):
        monkeypatch.setenv(cluster.WORKER_TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=rf"\${cluster.WORKER_TIMEOUT_ENV} must be .* Received: '{bad}'"):
            cluster.worker_timeout()
    for bad in (0, -3, float("inf"), float("nan"), True):
        with pytest.raises(ConfigError, match="--worker_timeout must be a positive, finite number of seconds"):
            cluster.worker_timeout(bad)


def test_worker_timeout_is_a_config_field_a_resumable_change_and_validated():
    assert tiny_config(worker_timeout=30).worker_timeout == 30
    with pytest.raises(ConfigError, match="worker_timeout must be a finite number > 0. Received: worker_timeout=-1"):
        tiny_config(worker_timeout=-1)
    from tfcyclegan.train.checkpoint import RESUMABLE_CHANGES

    assert "worker_timeout" in RESUMABLE_CHANGES  # it changes how long we wait, not what is trained
    saved = tiny_config().to_dict()
    saved.pop("worker_timeout")  # a config.json written before the field existed still loads
    assert config_lib.TrainConfig.from_dict(saved).worker_timeout is None


@pytest.mark.parametrize("value", ["-5", "0", "nan"])
def test_train_py_refuses_a_bad_worker_timeout_naming_the_flag(value):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"--worker_timeout={value}", "--dry_run"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "train.py: --worker_timeout must be a positive number of seconds" in proc.stderr
    assert f"Received: --worker_timeout={float(value)}" in proc.stderr


def _fake_strategy(cluster: dict, task_type: str, task_id: int):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize("spec,task_type,task_id,chief", [
    ({"worker": GOOD}, "worker", 0, True),
    ({"worker": GOOD}, "worker", 1, False),
    ({"chief": ["127.0.0.1:3"], "worker": GOOD}, "chief", 0, True),
    ({"chief": ["127.0.0.1:3"], "worker": GOOD}, "worker", 0, False),
])
def test_chief_is_the_chief_task_or_worker_0(spec, task_type, task_id, chief):
    strategy = _fake_strategy(spec, task_type, task_id)
    assert cluster.is_chief(strategy) == chief
    assert cluster.num_workers(strategy) == sum(len(v) for v in spec.values())
    assert cluster.task_name(strategy) == f"{task_type} {task_id}"


def test_single_process_helpers_change_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.get_strategy()
    assert cluster.agreed_stop(strategy, "SIGTERM") == "SIGTERM"
    assert cluster.agreed_stop(strategy, None) is None
    cluster.check_workers_agree(strategy, 7, str(tmp_path))  # nothing to compare with
    grads = [tf.constant([1.0, float("inf")])]
    assert cluster.agree_on_overflow(None, grads) is grads  # one replica: Keras decides alone
    with pytest.raises(tf.errors.UnavailableError):  # not in a cluster: the error passes unchanged
        with cluster.explain_cluster_errors(str(tmp_path)):
            raise tf.errors.UnavailableError(None, None, "socket closed")


def test_a_lost_worker_becomes_a_message_that_says_how_to_resume(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", _tf_config(GOOD, index=1))
    monkeypatch.setenv(cluster.WORKER_TIMEOUT_ENV, "30")
    checkpoints = tmp_path / "checkpoints"
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(checkpoints), max_to_keep=1).save(12)
    aborted = ("Graph execution error:\n\nCollective ops is aborted by: Error reported from /job:worker/task:0: "
               "The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:0\n"
               "The tasks have crashed.")
    with pytest.raises(cluster.ClusterError) as err:
        with cluster.explain_cluster_errors(str(checkpoints)):
            raise tf.errors.UnavailableError(None, None, aborted)
    message = str(err.value)
    assert message.startswith("worker 1 lost worker 0 (UnavailableError:")
    assert "unhealthy" in message and "/job:worker/replica:0/task:0" in message
    assert "at most 30 s: --worker_timeout" in message and str(checkpoints / "ckpt-12") in message
    with pytest.raises(cluster.ClusterError, match="lost the other workers .* at most 9 s.*resume from the start"):
        with cluster.explain_cluster_errors(str(tmp_path / "none"), timeout=9):  # the flag wins over the env
            raise tf.errors.DeadlineExceededError(None, None, "Collective ops timed out")


# Messages TensorFlow 2.21 gave in two-worker runs on loopback.
BARRIER_TIMEOUT = ("Barrier timed out. Id: tfcyclegan: build the model #0::0. This usually happens because a task "
                   "triggered the barrier too early or too slowly.\n# of tasks that reached the barrier: 2/3.\nThe "
                   "first task at the barrier: /job:worker/replica:0/task:2. Some timed out task names:\n"
                   "/job:worker/replica:0/task:1\n\n\nRPC: /tensorflow.CoordinationService/Barrier")
CONNECTION_RESET = ("Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error information "
                    "from remote target /job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:")
HEARTBEATS_LOST = ("Collective ops is aborted by: Error reported from /job:worker/task:0: The following tasks are "
                   "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")


def test_the_lost_worker_is_read_from_tensorflows_message():
    assert cluster._missing_tasks(BARRIER_TIMEOUT, "worker 0") == ["worker 1"]  # not task 2, which came first
    assert cluster._missing_tasks(HEARTBEATS_LOST, "worker 0") == ["worker 1"]  # not task 0, which reported
    assert cluster._missing_tasks(HEARTBEATS_LOST, "worker 1") == []
    assert cluster._missing_tasks(CONNECTION_RESET, "worker 0", unavailable=True) == ["worker 1"]
    assert cluster._missing_tasks(CONNECTION_RESET, "worker 0") == []  # a relayed timeout names the relay
    assert cluster._missing_tasks("Collective has timed out during execution.", "worker 0") == []


def test_barrier_and_watchdog_do_nothing_outside_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = tf.distribute.get_strategy()
    cluster.wait_for_workers(strategy, "build the model", 0.01)  # no cluster: returns at once
    with cluster.watchdog(strategy, "build the model", 0.01):
        import time

        time.sleep(0.1)  # longer than the timeout: nothing is aborted outside a cluster
    assert float(tf.reduce_sum(tf.ones([3]))) == 3.0


# -- several replicas in one process (two logical CPUs) ----------------------------------------------

REPLICAS = textwrap.dedent("""
    import json, re, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from conftest import tiny_config
    from tfcyclegan import config as config_lib
    from tfcyclegan.runtime import cluster
    from tfcyclegan.runtime import strategy as strategy_lib
    from tfcyclegan.train import trainer as trainer_lib

    mode, workdir, cache, out = sys.argv[1:5]
    replicas = [2]
    # The replica count is the strategy's: one or two of the logical CPUs.
    strategy_lib.make_strategy = lambda name, timeout=None: tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(replicas[0])])

    def pools(trainer):
        return {f"{name}/{k}": np.stack([v.numpy() for v in trainer.strategy.experimental_local_results(var)])
                for name in ("pool_a", "pool_b") for k, var in (("images", getattr(trainer.model, name).images),
                                                                ("count", getattr(trainer.model, name).count))}

    def weights(trainer):
        m = trainer.model
        return {f"{n.name}/{i}": v.numpy() for n in (m.gen_g, m.gen_f, m.disc_a, m.disc_b) for i, v in enumerate(n.weights)}

    def trainer(cfg, directory, n):
        replicas[0] = n
        return trainer_lib.Trainer(cfg, directory, data_cache_dir=cache, quiet=True)

    arrays, report = {}, {}
    if mode == "pools":
        cfg = tiny_config(steps_per_epoch=5, pool_size=4, deterministic=True, seed=1)
        first = trainer(cfg, workdir + "/interrupted", 2)
        report["stopped"] = first.run(max_steps=3).position.global_step
        arrays.update({f"before/{k}": v for k, v in pools(first).items()})
        resumed = trainer(cfg, workdir + "/interrupted", 2)
        arrays.update({f"restored/{k}": v for k, v in pools(resumed).items()})
        report["finished"] = resumed.run().finished
        arrays.update({f"resumed/{k}": v for k, v in {**pools(resumed), **weights(resumed)}.items()})
        straight = trainer(cfg, workdir + "/straight", 2)
        straight.run()
        arrays.update({f"straight/{k}": v for k, v in {**pools(straight), **weights(straight)}.items()})
    else:  # "replicas": 1 replica, stopped mid-epoch, then 2
        cfg = tiny_config(schedule="32:2", steps_per_epoch=6, pool_size=4, seed=1)
        report["stopped"] = trainer(cfg, workdir, 1).run(max_steps=2).position.global_step
        try:
            trainer(cfg, workdir, 2)
            report["refused"] = None
        except trainer_lib.WorkdirError as e:
            report["refused"] = str(e)
        finish = trainer(cfg, workdir, 1)
        result = finish.run(max_steps=6)  # the step the refusal names: the end of the epoch
        report["epoch_end"] = [result.position.epoch, result.position.step, result.position.global_step]
        arrays.update({f"saved/{k}": v for k, v in pools(finish).items()})
        more = trainer(cfg, workdir, 2)
        report["resumed_at"] = more.progress.get().global_step
        arrays.update({f"restored/{k}": v for k, v in pools(more).items()})
        result = more.run()
        report["finished"], report["global_step"] = result.finished, result.position.global_step
        report["replicas"] = more.strategy.num_replicas_in_sync
    np.savez(out, **arrays)
    print(json.dumps(report))
""")


def _replicas_script(mode: str, tmp_path: Path, cache: str) -> tuple[dict, dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("TF_CONFIG", None)
    data_lib.load_domains(tiny_config().data, cache_dir=cache)  # generated once
    out = tmp_path / "out.npz"
    proc = subprocess.run([sys.executable, "-c", REPLICAS, mode, str(tmp_path), cache, str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), dict(np.load(out))


@pytest.mark.slow
def test_each_replica_checkpoints_and_restores_its_own_image_pool(tmp_path, synthetic_cache):
    """Two replicas (two logical CPUs) fill their pools from different halves of each batch;
    stopped mid-epoch and resumed, each gets back its own pool (TensorFlow alone would give
    both replica 0's), and the run ends exactly as an uninterrupted one."""
    report, arrays = _replicas_script("pools", tmp_path, synthetic_cache)
    assert report == {"stopped": 3, "finished": True}
    for name in ("pool_a", "pool_b"):
        before, restored = arrays[f"before/{name}/images"], arrays[f"restored/{name}/images"]
        assert before.shape == (2, 4, 32, 32, 3)  # (replicas, pool_size, H, W, 3)
        assert list(arrays[f"before/{name}/count"]) == [4, 4]  # full: 3 steps x 2 fakes each
        assert not np.array_equal(before[0], before[1])  # the replicas hold different fakes...
        np.testing.assert_array_equal(restored, before)  # ...and each gets its own back
        np.testing.assert_array_equal(arrays[f"restored/{name}/count"], arrays[f"before/{name}/count"])
    resumed = {k[len("resumed/"):]: v for k, v in arrays.items() if k.startswith("resumed/")}
    assert len(resumed) > 4
    for key, value in resumed.items():
        np.testing.assert_array_equal(value, arrays[f"straight/{key}"], err_msg=key)


@pytest.mark.slow
def test_a_different_replica_count_is_refused_mid_epoch_and_accepted_at_an_epoch_boundary(tmp_path, synthetic_cache):
    report, arrays = _replicas_script("replicas", tmp_path, synthetic_cache)
    assert report["stopped"] == 2
    refused = report["refused"]
    assert refused is not None, "resuming mid-epoch with 2 replicas instead of 1 was not refused"
    assert "stopped in the middle of an epoch (stage 1, epoch 1, step 2 of 6)" in refused
    assert "on 1 replica(s), global batch 2 (--batch_size=2 x 1); this run has 2 replica(s), global batch 4" in refused
    assert "--max_steps=6" in refused
    # Following the message: one replica to the end of the epoch, then two from there.
    assert report["epoch_end"] == [1, 0, 6]
    assert report["resumed_at"] == 6 and report["replicas"] == 2
    assert report["finished"] and report["global_step"] == 6 + 6  # steps_per_epoch caps both global batches
    for name in ("pool_a", "pool_b"):
        saved, restored = arrays[f"saved/{name}/images"], arrays[f"restored/{name}/images"]
        assert saved.shape[0] == 1 and restored.shape[0] == 2
        for replica in range(2):  # more replicas than saved: each takes saved replica (r mod 1)
            np.testing.assert_array_equal(restored[replica], saved[0])


def test_one_replica_iterates_the_dataset_itself_several_use_the_distributed_iterator():
    dataset = tf.data.Dataset.range(4)
    single = strategy_lib.iterate(tf.distribute.MirroredStrategy(["/cpu:0"]), dataset)
    assert isinstance(single, tf.data.Iterator) and int(next(single)) == 0

    class TwoReplicas:
        num_replicas_in_sync = 2
        distributed = []

        def experimental_distribute_dataset(self, ds):
            self.distributed.append(ds)
            return [("replica 0", "replica 1")]

    strategy = TwoReplicas()
    assert next(strategy_lib.iterate(strategy, dataset)) == ("replica 0", "replica 1")
    assert strategy.distributed == [dataset]


def test_cpu_threads_auto_runs_two_ops_at_a_time_on_half_the_cores_before_tensorflow_starts():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import os, tensorflow as tf
        from tfcyclegan.runtime import cluster
        from tfcyclegan.runtime import precision as precision_lib
        from tfcyclegan.runtime import strategy as strategy_lib
        print(strategy_lib.configure_cpu_threads("tensorflow"))
        print(tf.config.threading.get_inter_op_parallelism_threads(), tf.config.threading.get_intra_op_parallelism_threads())
        print(strategy_lib.configure_cpu_threads("auto"))
        print(tf.config.threading.get_inter_op_parallelism_threads(), tf.config.threading.get_intra_op_parallelism_threads())
        tf.constant(1.0) + 1.0  # the runtime starts: the pools are fixed now
        print(strategy_lib.configure_cpu_threads("auto"))
        print(max(1, (os.cpu_count() or 1) // 2))
    """)
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    intra = int(lines[-1])
    assert lines[0] == "None" and lines[1] == "0 0"  # "tensorflow": its defaults, untouched
    assert lines[2].startswith(f"2 ops at a time, {intra} thread") and "--cpu_threads=auto" in lines[2]
    assert lines[3] == f"2 {intra}"
    assert lines[4] == lines[2]  # already set: nothing to change, still reported
