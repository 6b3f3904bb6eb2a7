"""Export a trained run: `python export.py --help`. The same command as tfcyclegan-export (tfcyclegan/cli/export.py)."""

from tfcyclegan.cli.export import run

if __name__ == "__main__":
    run()
