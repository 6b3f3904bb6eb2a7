"""The web app's fixtures: tiny models (an export and a workdir), and a real server.

The models are the tiny generator (8 filters, one residual block) with random weights: what the
tests check is the app (sizes, errors, limits, the page), not what the models learned.
"""

from __future__ import annotations

import pytest

from serve.helpers import Server, make_workdir
from tfcyclegan import export as export_lib


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict:
    """{"age_a2b": SavedModel folder, "age_b2a": ..., "gender_a2b": "workdir:a2b"}.

    The age models are an export (SavedModel only: the TFLite conversion would add a minute and
    serve loads both the same way); gender is a training workdir, the other kind serve loads.
    """
    root = tmp_path_factory.mktemp("serve_models")
    exports = root / "exports"
    export_lib.export(make_workdir(root / "age", task="age", seed=0, step=120), str(exports),
                      formats="saved_model", log=lambda _: None)
    gender = make_workdir(root / "gender", task="gender", seed=1, step=70)
    return {"age_a2b": str(exports / "age_a2b"), "age_b2a": str(exports / "age_b2a"), "gender_a2b": f"{gender}:a2b"}


@pytest.fixture(scope="session")
def registry(model_dirs):
    from tfcyclegan.serve import ModelRegistry
    from tfcyclegan.translate.models import load_translator

    return ModelRegistry([load_translator(spec) for spec in model_dirs.values()])


@pytest.fixture(scope="session")
def server(model_dirs, tmp_path_factory):
    """One real server for the session: age_a2b, age_b2a and gender_a2b; 1 worker, 2 queued, 2 MB uploads,
    images over 256 px translated as 256 px copies, at most 4 megapixels decoded."""
    proc = Server([*(f"--model={spec}" for spec in model_dirs.values()), "--workers=1", "--queue=2",
                   "--max_upload_mb=2", "--max_side=256", "--max_megapixels=4"], tmp_path_factory.mktemp("server"))
    yield proc
    status = proc.stop()
    # A graceful stop: uvicorn finishes, logs it, then ends by the signal it was sent (-15).
    log = proc.stderr.read_text()
    assert status == -15 and "Finished server process" in log, f"tfcyclegan-serve did not stop cleanly ({status}): {log[-3000:]}"
