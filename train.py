"""Train a CycleGAN: `python train.py --help`. The same command as tfcyclegan-train (tfcyclegan/cli/train.py)."""

from tfcyclegan.cli.train import run

if __name__ == "__main__":
    run()
