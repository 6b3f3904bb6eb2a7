"""Data: sources (synthetic faces, UTKFace folder/tarball/TFDS, unpaired folders, TFDS cycle_gan)
-> two domains with stable train/test splits -> a deterministic tf.data pipeline.

    domains = load_domains(cfg.data)
    ds = make_train_dataset(domains, cfg.data, size=64, global_batch=4, seed=0, epoch=0)
    for real_a, real_b in ds: ...   # float32 (4, 64, 64, 3) in [-1, 1]
"""

from tfcyclegan.data.domains import DomainSplit, Domains, count_upsampled, load_domains
from tfcyclegan.data.pipeline import (
    load_eval_images,
    make_train_dataset,
    preprocess_image,
    steps_per_epoch,
)
from tfcyclegan.data.synthetic import hair_masks
from tfcyclegan.data.utkface import DataError, DomainFilter, Example, parse_name, task_filters

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
