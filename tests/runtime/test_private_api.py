"""Every private TensorFlow / Keras / LiteRT symbol tfcyclegan uses (runtime/private.py) still exists.

A new version that removes one fails here, naming the symbol and what it was for, before it
fails somewhere deep in a training run.
"""

import importlib

import keras
import pytest
import tensorflow as tf

from tfcyclegan.runtime import private


def _owner(where: str):
    """The module, or the class, that PRIVATE_SYMBOLS names."""
    try:
        return importlib.import_module(where)
    except ImportError:
        module, _, cls = where.rpartition(".")
        return getattr(importlib.import_module(module), cls)


@pytest.fixture(scope="module")
def built_adam():
    variable = keras.Variable(tf.zeros([2]))
    optimizer = keras.optimizers.Adam()
    optimizer.build([variable])
    return optimizer, variable


@pytest.mark.parametrize("where, name, purpose", private.PRIVATE_SYMBOLS, ids=lambda v: str(v)[:40])
def test_private_symbol_exists(where, name, purpose, built_adam):
    owner = built_adam[0] if where == "keras.optimizers.Adam" else _owner(where)
    assert hasattr(owner, name), (
        f"{where}.{name} is gone in this version (tensorflow {tf.__version__}, keras {keras.__version__}): "
        f"tfcyclegan used it for {purpose}. Update tfcyclegan/runtime/private.py, or keep the versions "
        "setup.cfg bounds."
    )


def test_adam_slots_are_the_moments_of_the_variable(built_adam):
    optimizer, variable = built_adam
    m, v = private.adam_slots(optimizer, variable)
    assert tuple(m.shape) == tuple(v.shape) == (2,) and m is not v


def test_every_private_use_in_the_package_is_in_private_py():
    """No other module of tfcyclegan names a private TensorFlow / Keras / LiteRT path or attribute."""
    from pathlib import Path

    root = Path(private.__file__).resolve().parents[1]
    names = {name for _, name, _ in private.PRIVATE_SYMBOLS if name.startswith("_")}
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "private.py":
            continue
        text = path.read_text()
        if "tensorflow.python" in text or "tensorflow.compiler" in text or "keras.src" in text:
            offenders.append(f"{path.relative_to(root)}: imports a private module")
        offenders += [f"{path.relative_to(root)}: {name}" for name in names if name in text]
    assert not offenders, offenders
