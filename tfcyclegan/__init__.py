"""tfcyclegan: CycleGANs in TensorFlow 2 / Keras 3 for unpaired face-attribute translation."""

__version__ = "0.1.0"
