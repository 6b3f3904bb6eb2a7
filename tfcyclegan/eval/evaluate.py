"""Did the translation work? Metrics and a report for a trained workdir, and the attribute oracle.

Command line: tfcyclegan-evaluate (tfcyclegan.cli.evaluate).

Per direction (a2b: gen_g, A -> B; b2a: gen_f, B -> A), on the held-out split:

- cycle_l1: mean |F(G(a)) - a| over pixels, [-1, 1] scale (a2b; b2a is |G(F(b)) - b|);
- identity_l1: mean |G(b) - b| for a2b, the generator applied to images already in its target
  domain (b2a: |F(a) - a|);
- FID and KID of translated images vs real target images, beside the untranslated baseline
  (real source vs real target), see `tfcyclegan.metrics`;
- flip rate (with --oracle): the share of translated images the oracle assigns to the target
  domain, beside the untranslated baseline (real source images it assigns to the target) and the
  oracle's rate on real target images (the ceiling; `relative` = translated / ceiling), and the
  same per race and gender where the data has UTKFace labels;
- artefacts: the checkerboard measure of translated against real target images
  (`tfcyclegan.eval.artefacts`), with a sharpness ratio.

`cheap_metrics` is the subset the training driver runs every K epochs (no Inception, no I/O).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tfcyclegan.eval import artefacts as artefacts_lib
from tfcyclegan.eval import metrics as metrics_lib
from tfcyclegan.eval import oracle as oracle_lib
from tfcyclegan.eval import report as report_lib

DEFAULT_PANEL_COUNT = 60
ORACLE_DEFAULT_SIZE = 64
ORACLE_WARN_ACCURACY = 0.75  # below this the report warns that flip rates are unreliable
# UTKFace's label values (tfcyclegan.data.utkface), for flip rates per group.
GROUP_NAMES = {
    "race": {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"},
    "gender": {0: "male", 1: "female"},
}

Generator = Callable[[np.ndarray], Any]


class EvaluationError(RuntimeError):
    """The evaluation cannot run (missing workdir, data or too few images); names the path."""


# -- running the generators -----------------------------------------------------------------------


def _generate(gen, images: np.ndarray) -> np.ndarray:
    import keras

    if isinstance(gen, keras.Model):
        return np.asarray(gen(images, training=False), np.float32)
    return np.asarray(gen(images), np.float32)


@dataclasses.dataclass
class DomainPass:
    """What one sweep over the images of one domain (the source) yields.

    cycle_l1: mean |backward(forward(x)) - x|; identity_l1: mean |backward(x) - x|, i.e. the
    identity error of the *reverse* generator, whose target domain x belongs to.
    """

    count: int
    cycle_l1: float
    identity_l1: float
    features_real: np.ndarray | None = None
    features_fake: np.ndarray | None = None
    prob_b_real: np.ndarray | None = None
    prob_b_fake: np.ndarray | None = None
    panel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    spectrum_real: artefacts_lib.SpectrumStats | None = None
    spectrum_fake: artefacts_lib.SpectrumStats | None = None


def domain_pass(
    forward: Generator,
    backward: Generator,
    images: np.ndarray,
    *,
    batch_size: int = 8,
    features: Callable[[np.ndarray], np.ndarray] | None = None,
    oracle: oracle_lib.DomainClassifier | None = None,
    oracle_on_real: bool = False,
    keep: Sequence[int] = (),
    spectra: bool = False,
    progress: str | None = None,
) -> DomainPass:
    """Translates `images` (float32 (n, H, W, 3) in [-1, 1], H and W divisible by 4) batch by
    batch with `forward` and back with `backward`, accumulating errors, features and oracle
    probabilities without keeping the translations (except the `keep` indices, for panels).
    spectra: also accumulate the power spectra of the real and translated images (artefacts).

    progress: a tqdm description, or None for no progress bar.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images must be float32 (n, H, W, 3) with n >= 1. Received shape {images.shape}")
    keep_set = {int(i) for i in keep}
    cycle_sum = identity_sum = 0.0
    feats_real, feats_fake, probs_real, probs_fake, kept = [], [], [], [], {}
    spectrum_real = artefacts_lib.SpectrumStats() if spectra else None
    spectrum_fake = artefacts_lib.SpectrumStats() if spectra else None
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=progress, unit="batch", leave=False)
    for start in starts:
        real = images[start : start + batch_size]
        fake = _generate(forward, real)
        cycled = _generate(backward, fake)
        same = _generate(backward, real)
        cycle_sum += float(np.abs(cycled.astype(np.float64) - real).sum())
        identity_sum += float(np.abs(same.astype(np.float64) - real).sum())
        if features is not None:
            both = features(np.concatenate([real, fake]))  # one call: Inception batches are padded
            feats_real.append(both[: len(real)])
            feats_fake.append(both[len(real) :])
        if oracle is not None:
            probs_fake.append(np.asarray(oracle.predict_b(fake), np.float64).reshape(-1))
            if oracle_on_real:
                probs_real.append(np.asarray(oracle.predict_b(real), np.float64).reshape(-1))
        if spectra:
            spectrum_real.add(real)
            spectrum_fake.add(fake)
        for i in range(len(real)):
            if start + i in keep_set:
                kept[start + i] = (real[i], fake[i], cycled[i])
    elements = float(images.size)
    out = DomainPass(len(images), cycle_sum / elements, identity_sum / elements,
                     spectrum_real=spectrum_real, spectrum_fake=spectrum_fake)
    if features is not None:
        out.features_real, out.features_fake = np.concatenate(feats_real), np.concatenate(feats_fake)
    if oracle is not None:
        out.prob_b_fake = np.concatenate(probs_fake)
        out.prob_b_real = np.concatenate(probs_real) if oracle_on_real else None
    if kept:
        order = sorted(kept)
        out.panel = tuple(np.stack([kept[i][k] for i in order]) for k in range(3))
    return out


def cheap_metrics(gen_g, gen_f, images_a, images_b, *, oracle=None, batch_size: int = 8) -> dict[str, float]:
    """Cycle and identity L1 per direction, and flip rates if an oracle is given. Pure: no I/O.

    gen_g (A -> B), gen_f (B -> A): Keras models or callables on float32 (n, H, W, 3) in [-1, 1].
    images_a, images_b: float32 (n, H, W, 3) in [-1, 1], H and W divisible by 4.
    oracle: anything with predict_b(images) -> (n,) probabilities of domain B (an `Oracle`).
    Returns {"cycle_l1_a2b": mean |F(G(a)) - a|, "cycle_l1_b2a": mean |G(F(b)) - b|,
             "identity_l1_a2b": mean |G(b) - b|, "identity_l1_b2a": mean |F(a) - a|,
             and with an oracle "flip_rate_a2b": share of G(a) called B,
             "flip_rate_b2a": share of F(b) called A}; L1 on the [-1, 1] scale.
    """
    pass_a = domain_pass(gen_g, gen_f, images_a, batch_size=batch_size, oracle=oracle)
    pass_b = domain_pass(gen_f, gen_g, images_b, batch_size=batch_size, oracle=oracle)
    out = {
        "cycle_l1_a2b": pass_a.cycle_l1,
        "cycle_l1_b2a": pass_b.cycle_l1,
        "identity_l1_a2b": pass_b.identity_l1,
        "identity_l1_b2a": pass_a.identity_l1,
    }
    if oracle is not None:
        out["flip_rate_a2b"] = oracle_lib.flip_rate(pass_a.prob_b_fake, source="a")
        out["flip_rate_b2a"] = oracle_lib.flip_rate(pass_b.prob_b_fake, source="b")
    return out


# -- full evaluation on arrays ---------------------------------------------------------------------


def panel_indices(count: int, panel_count: int, seed: int) -> np.ndarray:
    """Sorted indices of the images shown in a panel: a fixed-seed sample of min(panel_count, count)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(panel_count, count), replace=False))


def _group_flip_rates(calls_target: Mapping[str, np.ndarray], labels: Mapping[str, Mapping[str, np.ndarray]],
                      source: str, target: str) -> dict[str, Any]:
    """Flip rates per race and gender: {"by_race": {name: {count, translated, untranslated,
    target_count, oracle_on_real_target}}, ...} for the label keys both domains have."""
    out = {}
    for key, names in GROUP_NAMES.items():
        if key not in labels.get(source, {}) or key not in labels.get(target, {}):
            continue
        src, tgt = np.asarray(labels[source][key]), np.asarray(labels[target][key])
        groups = {}
        for value, name in names.items():
            here, there = src == value, tgt == value
            if not here.any():
                continue
            groups[name] = {
                "count": int(here.sum()),
                "translated": float(calls_target["fake"][here].mean()),
                "untranslated": float(calls_target["real"][here].mean()),
                "target_count": int(there.sum()),
                "oracle_on_real_target": float(calls_target["target"][there].mean()) if there.any() else None,
            }
        out[f"by_{key}"] = groups
    return out


def evaluate_arrays(
    gen_g,
    gen_f,
    images_a: np.ndarray,
    images_b: np.ndarray,
    *,
    features: Callable[[np.ndarray], np.ndarray] | None,
    oracle: oracle_lib.DomainClassifier | None = None,
    labels: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    batch_size: int = 8,
    panel_count: int = DEFAULT_PANEL_COUNT,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[str]]:
    """All metrics of both directions. Returns (directions, panels, warnings).

    features: Inception features for FID and KID, or None to leave them out.
    labels: {"a" | "b": {"race" | "gender": int (n,)}} in the images' order, for flip rates per group.
    directions: {"a2b" | "b2a": {source, target, generator, source_count, target_count,
      cycle_l1, identity_l1, fid: {translated, untranslated}, kid: {translated, untranslated}
      (each {mean, std, subsets, subset_size}) or None without features, flip_rate: {translated,
      untranslated, oracle_on_real_target, relative, by_race, by_gender} or None, artefacts
      (see artefacts.compare) and spectra (the mean power spectra of real target and translated images)}}.
    panels: {"a2b" | "b2a": (inputs, translated, reconstructed)}; warnings: list of str.
    """
    for name, images in (("A", images_a), ("B", images_b)):
        if len(images) < 2:
            raise EvaluationError(f"Domain {name} has {len(images)} images in this split; the evaluation needs at least 2.")
    passes = {
        "a": domain_pass(
            gen_g, gen_f, images_a, batch_size=batch_size, features=features, oracle=oracle, oracle_on_real=True,
            keep=panel_indices(len(images_a), panel_count, seed), spectra=True,
            progress="A -> B -> A" if progress else None,
        ),
        "b": domain_pass(
            gen_f, gen_g, images_b, batch_size=batch_size, features=features, oracle=oracle, oracle_on_real=True,
            keep=panel_indices(len(images_b), panel_count, seed + 1), spectra=True,
            progress="B -> A -> B" if progress else None,
        ),
    }
    if features is not None:
        kid = lambda x, y: metrics_lib.kernel_inception_distance(x, y, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed).to_dict()
        baseline_fid = metrics_lib.frechet_distance(passes["a"].features_real, passes["b"].features_real)
        baseline_kid = kid(passes["a"].features_real, passes["b"].features_real)
    threshold = float(getattr(oracle, "threshold", 0.5))
    directions, panels, warnings = {}, {}, []
    for name, source, target, generator in (("a2b", "a", "b", "gen_g"), ("b2a", "b", "a", "gen_f")):
        src, tgt = passes[source], passes[target]
        flip = None
        if oracle is not None:
            to_target = lambda probs: oracle_lib.called_b(probs, threshold) == (target == "b")
            calls = {"fake": to_target(src.prob_b_fake), "real": to_target(src.prob_b_real), "target": to_target(tgt.prob_b_real)}
            ceiling = float(calls["target"].mean())
            flip = {
                "translated": float(calls["fake"].mean()),
                "untranslated": float(calls["real"].mean()),
                "oracle_on_real_target": ceiling,
                "relative": float(calls["fake"].mean()) / ceiling if ceiling > 0 else None,
                **_group_flip_rates(calls, labels or {}, source, target),
            }
        directions[name] = {
            "source": source,
            "target": target,
            "generator": generator,
            "source_count": src.count,
            "target_count": tgt.count,
            "cycle_l1": src.cycle_l1,
            # The reverse generator's sweep over `target` images measured |gen(target) - target|
            # for this direction's generator.
            "identity_l1": tgt.identity_l1,
            "fid": None if features is None else {
                "translated": metrics_lib.frechet_distance(src.features_fake, tgt.features_real),
                "untranslated": baseline_fid,
            },
            "kid": None if features is None else {"translated": kid(src.features_fake, tgt.features_real), "untranslated": baseline_kid},
            "flip_rate": flip,
            "artefacts": artefacts_lib.compare(src.spectrum_fake, tgt.spectrum_real),
            "spectra": (tgt.spectrum_real.mean_spectrum, src.spectrum_fake.mean_spectrum),
        }
        if src.panel is not None:
            panels[name] = src.panel
    if features is not None and min(len(images_a), len(images_b)) < metrics_lib.FID_MIN_IMAGES:
        warnings.append(
            f"FID from {len(images_a)} A and {len(images_b)} B images is below the minimum of "
            f"{metrics_lib.FID_MIN_IMAGES} images per set (the feature dimension): it is biased upward and only "
            "comparable with runs evaluated on the same number of images. KID is unbiased; prefer it here."
        )
    return directions, panels, warnings


# -- workdir evaluation -----------------------------------------------------------------------------


def load_splits(data_cfg, *, splits: Sequence[str], size: int, count: int | None, cache_dir: str | None):
    """({split: (images_a, images_b)}, data stats, {split: {"a" | "b": {label: int (n,)}}}) through
    tfcyclegan.data; labels are the UTKFace race and gender where every image has them.

    Images float32 (n, size, size, 3) in [-1, 1]; errors name the missing path.
    """
    if data_cfg.data_dir and not os.path.exists(data_cfg.data_dir):
        raise EvaluationError(f"Data directory {data_cfg.data_dir!r} does not exist (pass --data_dir=<your copy>).")
    from tfcyclegan import data as data_lib  # TensorFlow: imported when data is read, not for --help

    domains = data_lib.load_domains(data_cfg, cache_dir=cache_dir)
    out, labels = {}, {}
    for split in splits:
        out[split] = tuple(
            data_lib.load_eval_images(domains, data_cfg, domain=d, split=split, size=size, count=count) for d in ("a", "b")
        )
        labels[split] = {}
        for d in ("a", "b"):
            examples = getattr(getattr(domains, d), split)[:count]
            labels[split][d] = {
                key: np.asarray([getattr(e, key) for e in examples], np.int64)
                for key in GROUP_NAMES
                if examples and all(getattr(e, key, None) is not None for e in examples)
            }
    return out, dict(getattr(domains, "stats", {}) or {}), labels


def _oracle_warnings(oracle_meta: Mapping[str, Any], data_cfg) -> list[str]:
    warnings = []
    trained_on = oracle_meta.get("data") or {}
    differ = [
        f"{key}: oracle {trained_on.get(key)!r} vs run {getattr(data_cfg, key)!r}"
        for key in ("dataset", "task", "domain_a", "domain_b")
        if key in trained_on and trained_on.get(key) != getattr(data_cfg, key)
    ]
    if differ:
        warnings.append("The oracle was trained on other domains than this run (" + "; ".join(differ) + "): flip rates may not mean what they say.")
    accuracy = oracle_meta.get("balanced_test_accuracy", oracle_meta.get("test_accuracy"))
    if accuracy is not None and accuracy < ORACLE_WARN_ACCURACY:
        warnings.append(
            f"The oracle's (balanced) test accuracy is {100 * accuracy:.1f} %, below {100 * ORACLE_WARN_ACCURACY:.0f} %: "
            "its flip rates are unreliable."
        )
    return warnings


def evaluate_workdir(
    workdir: str,
    output: str,
    *,
    data_dir: str | None = None,
    split: str = "test",
    size: int | None = None,
    count: int | None = None,
    panel_count: int = DEFAULT_PANEL_COUNT,
    seed: int = 0,
    inception_weights: str = "imagenet",
    oracle_dir: str | None = None,
    batch_size: int = 8,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    cache_dir: str | None = None,
    images: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluates the newest checkpoint of `workdir` and writes the report into `output`.

    size: evaluation size (default: the last stage of the run's schedule). count: at most this
    many images per domain (default all). images: (images_a, images_b) float32 in [-1, 1] to
    use instead of loading the split (then data_dir, split, count and cache_dir are unused).
    oracle_dir: default the run's own config.oracle_dir, if it exists.
    inception_weights: as metrics.resolve_inception_weights, or "none" for no FID and KID (the
    other figures need no download).
    Returns the report dict (also written as <output>/report.json).
    """
    from tfcyclegan.model.workdir import restore_generators  # TensorFlow, as above

    if not os.path.isdir(workdir):
        raise EvaluationError(f"Workdir {workdir!r} does not exist.")
    if split not in ("train", "test"):
        raise EvaluationError(f"split must be 'train' or 'test'. Received: {split!r}")
    restored = restore_generators(workdir)  # CheckpointError names the path
    config = restored.config
    warnings = []
    if oracle_dir is None and config.oracle_dir:  # the oracle the run used for its eval/ scalars
        if os.path.isdir(config.oracle_dir):
            oracle_dir = config.oracle_dir
        else:
            warnings.append(f"The run's oracle_dir {config.oracle_dir!r} does not exist: no flip rates (pass --oracle).")
    oracle = oracle_lib.load_oracle(oracle_dir) if oracle_dir else None
    if inception_weights != "none":
        metrics_lib.resolve_inception_weights(inception_weights)  # fail before the slow parts
    size = size or config.schedule.stages[-1].size
    if size < 8 or size % 4:
        raise EvaluationError(f"--size must be a multiple of 4 and >= 8 (the generator downsamples twice). Received: {size}")
    data_cfg = config.data if data_dir is None else dataclasses.replace(config.data, data_dir=data_dir)
    stats: dict[str, Any] = {}
    labels = None
    if images is None:
        loaded, stats, all_labels = load_splits(data_cfg, splits=(split,), size=size, count=count, cache_dir=cache_dir)
        images_a, images_b = loaded[split]
        labels = all_labels[split]
    else:
        images_a, images_b = images
        split = "given arrays"
    features = None
    if inception_weights != "none":
        features = metrics_lib.InceptionFeatures(inception_weights, batch_size=2 * batch_size)
        if features.is_random:
            warnings.append("Inception weights are RANDOM (--inception_weights=random, for tests only): FID and KID are meaningless.")
    directions, panels, metric_warnings = evaluate_arrays(
        restored.gen_g, restored.gen_f, images_a, images_b, features=features, oracle=oracle, labels=labels,
        batch_size=batch_size, panel_count=panel_count, seed=seed, kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size, progress=progress,
    )
    spectra = {name: direction.pop("spectra") for name, direction in directions.items()}
    warnings.extend(metric_warnings)
    oracle_info = None
    if oracle is not None:
        warnings.extend(_oracle_warnings(oracle.meta, data_cfg))
        oracle_info = {
            "path": oracle_dir,
            **{k: oracle.meta.get(k) for k in ("test_accuracy", "test_accuracy_a", "test_accuracy_b", "balanced_test_accuracy", "size", "data", "counts")},
        }
    logdir = os.path.join(workdir, "logs")
    scalars = report_lib.read_scalars(logdir)
    if not scalars:
        warnings.append(f"No TensorBoard scalars in {logdir}: no loss curves.")
    report = {
        "format": "tfcyclegan-evaluation",
        "version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": workdir,
        "checkpoint": {"path": restored.checkpoint_path, "global_step": restored.global_step},
        "config": config.to_dict(),
        "data": {
            "dataset": data_cfg.dataset, "data_dir": data_cfg.data_dir, "task": data_cfg.task,
            "domain_a": data_cfg.domain_a, "domain_b": data_cfg.domain_b, "split": split, "size": size,
            "count_a": len(images_a), "count_b": len(images_b), "stats": stats,
        },
        "feature_extractor": None if features is None else {
            "model": "keras.applications.InceptionV3(include_top=False, pooling='avg'), 2048-d",
            "weights": features.description,
            "random_weights": features.is_random,
            "resize": f"tf.image.resize to {metrics_lib.INCEPTION_SIZE}x{metrics_lib.INCEPTION_SIZE}, bilinear, antialias=True, clipped to [-1, 1]",
        },
        "artefact_measure": artefacts_lib.MEASURE,
        "fid_min_images": metrics_lib.FID_MIN_IMAGES,
        "kid": {"subsets": kid_subsets, "subset_size": kid_subset_size, "kernel": "(x.y / 2048 + 1)^3", "scale": "raw (HTML shows x 1000)"},
        "panel": {"count": panel_count, "seed": seed},
        "oracle": oracle_info,
        "directions": directions,
        "warnings": warnings,
        "software": report_lib.software_versions(),
    }
    report_lib.write_report(output, report, panels, scalars, spectra=spectra)
    return report


# -- oracle training ----------------------------------------------------------------------------------


def train_oracle_command(
    output: str,
    *,
    data_cfg,
    size: int = ORACLE_DEFAULT_SIZE,
    epochs: int = 30,
    batch_size: int = 32,
    patience: int = 6,
    seed: int = 0,
    cache_dir: str | None = None,
    verbose: int = 1,
) -> oracle_lib.Oracle:
    """Loads the train and test splits of data_cfg's two domains, trains the oracle, saves it."""
    loaded, _, _ = load_splits(data_cfg, splits=("train", "test"), size=size, count=None, cache_dir=cache_dir)
    (train_a, train_b), (test_a, test_b) = loaded["train"], loaded["test"]
    oracle = oracle_lib.train_oracle(
        train_a, train_b, test_a, test_b, size=size, epochs=epochs, batch_size=batch_size, patience=patience,
        seed=seed, verbose=verbose,
        data={"dataset": data_cfg.dataset, "data_dir": data_cfg.data_dir, "task": data_cfg.task,
              "domain_a": data_cfg.domain_a, "domain_b": data_cfg.domain_b},
    )
    oracle.save(output)
    return oracle
