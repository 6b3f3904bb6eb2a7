"""Shared test settings: tiny networks, quiet TensorFlow, the real UTKFace sample folder."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The --precision=auto probe caches its verdict here (inherited by train.py subprocesses), not in ~/.cache.
os.environ.setdefault("TFCYCLEGAN_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tfcyclegan_test_cache_{os.getuid()}"))

import pytest

from tfcyclegan import config as config_lib

TINY_MODEL = config_lib.ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)


def _group(item) -> str:
    """A test's pytest-xdist group: its module, so module fixtures are built once; every test
    that judges with the session's UTKFace age oracle shares one group, so it is trained once."""
    return "age_oracle" if "age_oracle" in getattr(item, "fixturenames", ()) else item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The suite runs in two processes (`-n 2 --dist loadgroup` in setup.cfg): many tests wait on
    subprocesses, timeouts and a browser, so one core would sit idle. Groups that hold a slow test
    are sent first, so that the longest work does not start last and leave one core alone at the end."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    slow_groups = {_group(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _group(item) not in slow_groups)  # stable: the order within is kept


def utkface_sample_dir() -> Path:
    """../shared/data/utkface_sample beside the repo, or $TFCYCLEGAN_UTKFACE_SAMPLE."""
    env = os.environ.get("TFCYCLEGAN_UTKFACE_SAMPLE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_sample"


@pytest.fixture(scope="session")
def utkface_sample() -> Path:
    """The real UTKFace sample folder; skips the test with the reason when it is absent."""
    path = utkface_sample_dir()
    if not (path / "MANIFEST.csv").exists():
        pytest.skip(f"needs the real UTKFace sample at {path} (or set TFCYCLEGAN_UTKFACE_SAMPLE); it is absent")
    return path


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> str:
    """One cache folder for the generated synthetic faces, shared by the whole session."""
    return str(tmp_path_factory.mktemp("synthetic_cache"))


def tiny_config(**overrides) -> config_lib.TrainConfig:
    """A TrainConfig small enough for CPU tests: filters 8, one residual block, 32 px.

    float32, not auto: what --precision=auto picks depends on the machine (hardware.py).
    One step per compiled call, not by stage size: the tests' hooks (on_step, injected NaNs,
    kills after step N) act between calls.
    """
    base = config_lib.TrainConfig(
        precision="float32",
        model=TINY_MODEL,
        data=config_lib.DataConfig(synthetic_count=120),
        schedule=config_lib.Schedule.parse("32:1"),
        batch_size=2,
        pool_size=4,
        log_every_steps=2,
        sample_count=2,
        steps_per_call=1,
    )
    return config_lib.replace(base, overrides)


@pytest.fixture(scope="session")
def age_oracle(utkface_sample, tmp_path_factory):
    """{"path", "seconds"} of a real UTKFace age oracle (train_oracle's defaults, the sample's train
    split), trained once per session: the oracle test checks it, the quality test judges with it."""
    import time

    from tfcyclegan.eval import evaluate

    root = tmp_path_factory.mktemp("age_oracle")
    start = time.monotonic()
    data_cfg = config_lib.DataConfig(dataset="utkface", data_dir=str(utkface_sample), task="age")
    path = str(root / "oracle_age")
    evaluate.train_oracle_command(path, data_cfg=data_cfg, size=64, cache_dir=str(root / "cache"), verbose=0)
    return {"path": path, "seconds": time.monotonic() - start}
