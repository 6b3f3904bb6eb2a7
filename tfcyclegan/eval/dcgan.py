"""How good, and how original, are a DCGAN's images? FID/KID against the training set, the
mean-image distance, and a nearest-neighbour check for memorisation.

- FID and KID of generated images against the training images (Inception features,
  tfcyclegan.eval.metrics).
- mean-image distance: mean |mean(samples) - mean(data)| + mean |std(samples) - std(data)| over
  pixels, [-1, 1] scale. Faces of one data set share a layout (where the face, the hair and the
  background are, their colours), which the per-pixel mean and spread of a set of images
  capture; an untrained generator's grey noise is far from them. Cheap, and needs no weights.
- memorisation: the RMS pixel distance (at 32 px) from each sample to its nearest training
  image, against the same distance from each training image to its nearest other training
  image. A generator that copies its training set has samples much nearer the data than the
  data is to itself: ratio = median(sample NN) / median(train NN) well below 1.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import numpy as np

from tfcyclegan import pictures
from tfcyclegan.eval import metrics as metrics_lib
from tfcyclegan.eval import report as report_lib
from tfcyclegan.io import save_png, to_uint8, write_json, write_text

NN_SIZE = 32
NN_PAIRS = 8


def mean_image_distance(samples: np.ndarray, data: np.ndarray) -> float:
    """float32 (n, H, W, 3) in [-1, 1] each -> the distance described in the module docstring."""
    samples, data = np.asarray(samples, np.float64), np.asarray(data, np.float64)
    return float(np.abs(samples.mean(0) - data.mean(0)).mean() + np.abs(samples.std(0) - data.std(0)).mean())


def _small(images: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    if images.shape[1:3] != (size, size):
        images = tf.image.resize(images, (size, size), antialias=True).numpy()
    return images.reshape(len(images), -1).astype(np.float64)


def nearest_neighbours(queries: np.ndarray, references: np.ndarray, *, size: int = NN_SIZE,
                       exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest reference: RMS pixel distance at size x size.

    exclude_self: queries are the references (leave-one-out).
    """
    q, r = _small(queries, size), _small(references, size)
    squared = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2 * q @ r.T
    if exclude_self:
        np.fill_diagonal(squared, np.inf)
    index = np.argmin(squared, axis=1)
    distance = np.sqrt(np.maximum(squared[np.arange(len(q)), index], 0.0) / q.shape[1])
    return distance, index


def memorisation(samples: np.ndarray, train: np.ndarray) -> dict[str, float]:
    """{"sample_nn_median", "sample_nn_min", "train_nn_median", "ratio"} (see the module docstring)."""
    sample_nn, _ = nearest_neighbours(samples, train)
    train_nn, _ = nearest_neighbours(train, train, exclude_self=True)
    return {"sample_nn_median": float(np.median(sample_nn)), "sample_nn_min": float(sample_nn.min()),
            "train_nn_median": float(np.median(train_nn)), "ratio": float(np.median(sample_nn) / np.median(train_nn))}


def evaluate_dcgan(workdir: str, output: str, *, count: int | None = None, seed: int = 0, data_dir: str | None = None,
                   inception_weights: str = "imagenet", batch_size: int = 16, kid_subsets: int = 100,
                   kid_subset_size: int = 1000, cache_dir: str | None = None) -> dict[str, Any]:
    """Generates `count` images (default: as many as there are training images) from the newest
    checkpoint of a DCGAN workdir and writes report.json, index.html, samples.png and
    nearest.png (the closest samples beside their nearest training images) into `output`."""
    import dataclasses

    from tfcyclegan import data as data_lib
    from tfcyclegan.model.workdir import restore_dcgan

    if inception_weights == "none":
        raise metrics_lib.MetricsError("A DCGAN is judged by FID and KID, which need the Inception weights: "
                                       "--inception_weights=none works for CycleGAN runs only.")
    restored = restore_dcgan(workdir)
    config = restored.config
    metrics_lib.resolve_inception_weights(inception_weights)  # fail before the slow parts
    data_cfg = config.data if data_dir is None else dataclasses.replace(config.data, data_dir=data_dir)
    domains = data_lib.load_domains(data_cfg, cache_dir=cache_dir, single=True)
    train = data_lib.load_eval_images(domains, data_cfg, domain="a", split="train", size=restored.size)
    count = count or len(train)
    z = np.random.default_rng([seed, 31]).standard_normal((count, config.model.z_dim)).astype(np.float32)
    samples = np.concatenate([np.asarray(restored.generator(z[i:i + 64], training=False)) for i in range(0, count, 64)])
    features = metrics_lib.InceptionFeatures(inception_weights, batch_size=batch_size)
    f_samples, f_train = features(samples), features(train)
    warnings = []
    if features.is_random:
        warnings.append("Inception weights are RANDOM (--inception_weights=random, for tests only): FID and KID are "
                        "meaningless.")
    if min(len(samples), len(train)) < metrics_lib.FID_MIN_IMAGES:
        warnings.append(f"FID from {len(samples)} samples and {len(train)} training images is below "
                        f"{metrics_lib.FID_MIN_IMAGES} per set: biased upward; compare runs at equal counts, prefer KID.")
    memo = memorisation(samples, train)
    report = {
        "format": "tfcyclegan-dcgan-evaluation", "version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": workdir, "checkpoint": {"path": restored.checkpoint_path, "global_step": restored.global_step},
        "config": config.to_dict(), "size": restored.size, "samples": count, "train_images": len(train),
        "fid": metrics_lib.frechet_distance(f_samples, f_train),
        "kid": metrics_lib.kernel_inception_distance(f_samples, f_train, subsets=kid_subsets,
                                                     subset_size=kid_subset_size, seed=seed).to_dict(),
        "mean_image_distance": mean_image_distance(samples, train),
        "memorisation": memo, "feature_extractor": {"weights": features.description, "random_weights": features.is_random},
        "warnings": warnings, "software": report_lib.software_versions(),
    }
    os.makedirs(output, exist_ok=True)
    save_png(pictures.image_grid(to_uint8(samples[:64]), columns=8), os.path.join(output, "samples.png"))
    distance, index = nearest_neighbours(samples, train)
    closest = np.argsort(distance)[:NN_PAIRS]
    pairs = np.stack([x for i in closest for x in (to_uint8(samples[i]), to_uint8(train[index[i]]))])
    save_png(pictures.image_grid(pairs, columns=2), os.path.join(output, "nearest.png"))
    report["files"] = {"samples": "samples.png", "nearest": "nearest.png", "report": "report.json", "index": "index.html"}
    write_json(os.path.join(output, "report.json"), report_lib.jsonable(report))
    write_text(os.path.join(output, "index.html"), render_html(report, [float(distance[i]) for i in closest]))
    return report


def render_html(report: dict[str, Any], pair_distances: list[float]) -> str:
    import html

    esc = html.escape
    memo, kid = report["memorisation"], report["kid"]
    rows = [
        ("FID vs the training set", f"{report['fid']:.2f}", "lower is closer to the data"),
        ("KID x 1000", f"{1000 * kid['mean']:.2f} ± {1000 * kid['std']:.2f}", "lower is closer; unbiased"),
        ("mean-image distance", f"{report['mean_image_distance']:.3f}", "the data's per-pixel mean and spread; lower"),
        ("nearest training image, median (samples)", f"{memo['sample_nn_median']:.3f}", "RMS at 32 px"),
        ("nearest other training image, median (data)", f"{memo['train_nn_median']:.3f}", "the data's own spread"),
        ("memorisation ratio", f"{memo['ratio']:.2f}", "well below 1: samples copy training images"),
    ]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>DCGAN evaluation: {esc(report['workdir'])}</title></head><body style=\"font-family: sans-serif\">",
        f"<h1>DCGAN evaluation of {esc(report['workdir'])}</h1>",
        f"<p>global step {report['checkpoint']['global_step']}, {report['size']} px, {report['samples']} samples, "
        f"{report['train_images']} training images; {esc(report['created'])}</p>",
    ]
    parts += [f'<p style="color:#a00">{esc(w)}</p>' for w in report["warnings"]]
    parts.append("<table border=1 cellpadding=4><tr><th>figure</th><th>value</th><th>meaning</th></tr>")
    parts += [f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(c)}</td></tr>" for a, b, c in rows]
    parts.append("</table><h2>Samples</h2><img src=\"samples.png\" alt=\"generated samples\">")
    parts.append("<h2>The closest samples and their nearest training images</h2>")
    parts.append("<p>distances: " + ", ".join(f"{d:.3f}" for d in pair_distances) + "</p>")
    parts.append('<img src="nearest.png" alt="sample | nearest training image" style="image-rendering: pixelated; '
                 'width: 256px"></body></html>')
    return "\n".join(parts)
