"""Data: sources (synthetic faces, UTKFace folder/tarball/TFDS, unpaired folders, TFDS cycle_gan)
-> two domains with stable train/test splits -> a deterministic tf.data pipeline.

    domains = load_domains(cfg.data)
    ds = make_train_dataset(domains, cfg.data, size=64, global_batch=4, seed=0, epoch=0)
    for real_a, real_b in ds: ...   # float32 (4, 64, 64, 3) in [-1, 1]

Modules, each importing only those above it: types (values and DataError), index (files ->
examples: skip, decode check, dedupe), pipeline (tf.data), utkface (names, filters, split),
folders (trainA/trainB), synthetic (generated faces), tfds, sources (load_domains).
"""

from tfcyclegan.data.pipeline import (
    count_upsampled,
    load_eval_images,
    make_train_dataset,
    preprocess_image,
    steps_per_epoch,
)
from tfcyclegan.data.sources import load_domains
from tfcyclegan.data.synthetic import hair_masks
from tfcyclegan.data.types import DataError, DomainSplit, Domains, Example
from tfcyclegan.data.utkface import DomainFilter, parse_name, task_filters

__all__ = [
    "DataError",
    "DomainFilter",
    "DomainSplit",
    "Domains",
    "Example",
    "count_upsampled",
    "hair_masks",
    "load_domains",
    "load_eval_images",
    "make_train_dataset",
    "parse_name",
    "preprocess_image",
    "steps_per_epoch",
    "task_filters",
]
