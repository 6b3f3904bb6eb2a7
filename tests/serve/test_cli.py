"""tfcyclegan-serve's command line: what it refuses before it serves, and the files it installs."""

from __future__ import annotations

import socket
import subprocess
import sys

from absl import flags
from serve.helpers import ROOT

from tfcyclegan.cli import serve


def _run(args):
    """main() in-process with a private flag set; only for the cases that end before serving."""
    fv = serve.define_flags(flags.FlagValues())
    fv(["serve", *args])
    return serve.main(["serve"], fv)


def test_a_model_that_cannot_be_loaded_is_exit_2_naming_it(tmp_path, capsys):
    assert _run([f"--model={tmp_path / 'nothing'}", "--port=0"]) == 2
    assert f"{tmp_path / 'nothing'} does not exist" in capsys.readouterr().err


def test_the_same_model_twice_is_exit_2(model_dirs, capsys):
    assert _run([f"--model={model_dirs['age_a2b']}", f"--model={model_dirs['age_a2b']}", "--port=0"]) == 2
    assert "two --model entries are both named age_a2b" in capsys.readouterr().err


def test_an_address_in_use_is_exit_2_before_any_model_loads(model_dirs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _run([f"--model={model_dirs['age_a2b']}", f"--port={port}"]) == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in capsys.readouterr().err


def test_help_answers_without_loading_tensorflow():
    code = ("import sys; from tfcyclegan.cli import serve; serve.define_flags(); "
            "print('tensorflow' in sys.modules, 'fastapi' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.split() == ["False", "False"], proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "tfcyclegan.cli.serve", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert "--max_upload_mb" in proc.stdout and "--queue" in proc.stdout and "Traceback" not in proc.stderr


def test_the_page_is_package_data_and_the_console_script_is_declared():
    from setuptools.config.setupcfg import read_configuration

    options = read_configuration(str(ROOT / "setup.cfg"))
    assert options["options"]["package_data"]["tfcyclegan.serve"] == ["static/*"]
    assert {p.name for p in (ROOT / "tfcyclegan" / "serve" / "static").iterdir()} == {"index.html", "app.js", "style.css"}
    assert "tfcyclegan-serve = tfcyclegan.cli.serve:run" in options["options"]["entry_points"]["console_scripts"]
