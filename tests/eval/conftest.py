"""One real UTKFace age oracle per test session: the oracle test checks it, the quality test uses it."""

import time

import pytest


@pytest.fixture(scope="session")
def age_oracle(utkface_sample, tmp_path_factory):
    """{"path", "seconds"} of an oracle trained with train_oracle's defaults on the sample's train split."""
    from tfcyclegan.config import DataConfig
    from tfcyclegan.eval import evaluate

    root = tmp_path_factory.mktemp("age_oracle")
    start = time.monotonic()
    data_cfg = DataConfig(dataset="utkface", data_dir=str(utkface_sample), task="age")
    path = str(root / "oracle_age")
    evaluate.train_oracle_command(path, data_cfg=data_cfg, size=64, cache_dir=str(root / "cache"), verbose=0)
    return {"path": path, "seconds": time.monotonic() - start}
