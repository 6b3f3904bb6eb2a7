"""load_domains: any source -> two domains (A, B), each split into train and test, plus statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tfcyclegan.data import folders, synthetic, utkface
from tfcyclegan.data.types import DataError, Domains
from tfcyclegan.io import cache_dir as default_cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig


def load_domains(cfg: "DataConfig", *, cache_dir: str | None = None, single: bool = False) -> Domains:
    """Reads the configured source and returns the two domains (one, A, with single=True: the
    images of unconditional generation; B is then empty).

    dataset="synthetic": generated on first use into cache_dir (default: tfcyclegan.io.cache_dir(),
      $TFCYCLEGAN_CACHE_DIR or ~/.cache/tfcyclegan), then read like a UTKFace folder.
    dataset="utkface": cfg.data_dir is a folder of UTKFace images (searched recursively; .tar.gz
      archives inside are read too) or one of the official tarballs.
    dataset="folder": trainA/ trainB/ (testA/ testB/) in cfg.data_dir; with single=True also a
      plain folder of images (searched recursively), which is domain A.
    dataset="tfds": cfg.tfds_name ("utk_face" or "cycle_gan/<name>") prepared in cfg.data_dir.

    Raises DataError for a missing path, an empty domain or a filter that matches nothing.
    """
    cache_root = Path(cache_dir) if cache_dir else Path(default_cache_dir())
    if cfg.dataset == "synthetic":
        try:
            folder = synthetic.ensure(cache_root, count=cfg.synthetic_count, seed=cfg.synthetic_seed)
        except OSError as err:
            raise DataError(
                f"Cannot write the synthetic faces to the cache folder {str(cache_root)!r} ({err}). "
                "Set $TFCYCLEGAN_CACHE_DIR to a writable folder."
            ) from err
        examples, stats = utkface.build_examples(folder, cache_dir=cache_root, ignore=synthetic.BOOKKEEPING)
        source = {"dataset": "synthetic", "path": str(folder), "seed": cfg.synthetic_seed,
                  "count": cfg.synthetic_count, "version": synthetic.VERSION}
        return utkface.labelled_domains(examples, stats, cfg, source, single=single)
    if cfg.dataset == "utkface":
        examples, stats = utkface.build_examples(cfg.data_dir, cache_dir=cache_root)
        kind = "tarball" if Path(cfg.data_dir).is_file() else "folder"
        source = {"dataset": "utkface", "path": str(cfg.data_dir), "kind": kind}
        return utkface.labelled_domains(examples, stats, cfg, source, single=single)
    if cfg.dataset == "folder":
        if single and not (Path(cfg.data_dir) / "trainA").is_dir():
            return folders.load_image_folder(cfg, cache_dir=cache_root)
        return folders.load_folder_domains(cfg, cache_dir=cache_root, single=single)
    if cfg.dataset == "tfds":
        # tensorflow_datasets takes seconds to import: only runs that read TFDS pay for it.
        from tfcyclegan.data import tfds

        name = cfg.tfds_name or ""
        if name.split("/")[0].split(":")[0] == "utk_face":
            examples, stats = tfds.load_examples(name, data_dir=cfg.data_dir)
            source = {"dataset": "tfds", "name": name, "data_dir": cfg.data_dir}
            return utkface.labelled_domains(examples, stats, cfg, source, single=single)
        return tfds.load_tfds_domains(cfg, single=single)
    raise DataError(f"Unknown dataset {cfg.dataset!r}. Valid: synthetic, utkface, folder, tfds")
