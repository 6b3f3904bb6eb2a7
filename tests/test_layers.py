"""The package's layers (setup.cfg [importlinter]): imports go down, never up, and never in a circle."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter's command on the contracts of cwd/setup.cfg, analysing the tfcyclegan in package_parent."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    env = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    proc = _lint_imports(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # A copy of the package where the model layer imports the command line: the check must fail
    # and name the offending import.
    shutil.copytree(ROOT / "tfcyclegan", tmp_path / "tfcyclegan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    losses = tmp_path / "tfcyclegan" / "model" / "losses.py"
    losses.write_text(losses.read_text() + "\n\nfrom tfcyclegan.cli import train  # noqa: E402,F401\n")
    proc = _lint_imports(tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "BROKEN" in proc.stdout
    assert "tfcyclegan.model.losses -> tfcyclegan.cli.train" in proc.stdout


def test_an_import_circle_in_data_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "tfcyclegan", tmp_path / "tfcyclegan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    types = tmp_path / "tfcyclegan" / "data" / "types.py"
    types.write_text(types.read_text() + "\n\nfrom tfcyclegan.data import sources  # noqa: E402,F401\n")
    proc = _lint_imports(tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "tfcyclegan.data.types -> tfcyclegan.data.sources" in proc.stdout
