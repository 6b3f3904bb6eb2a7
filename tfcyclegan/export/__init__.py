"""Export trained generators for TF Serving (SavedModel) and phones (TFLite / LiteRT).

Modules, each importing only those above it: graph (the serving and mobile forms of a
generator, padding to a multiple of 4), verify (references, parity bounds, test images),
saved_model (the signatures), tflite (conversion, int8, the runner), manifest (names,
versions, manifest.json), exporter (export(): all of it, verified, put in place).
"""

from tfcyclegan.export.exporter import FORMATS, export
from tfcyclegan.export.graph import MIN_SIDE, ExportError, mobile_generator, pad_to_multiple, translate
from tfcyclegan.export.manifest import (
    DIRECTIONS, MANIFEST_FILE, METADATA_FILE, default_name, describe_domains, next_version, read_manifest,
)
from tfcyclegan.export.saved_model import ServingModule
from tfcyclegan.export.tflite import QUANTIZATIONS, TFLiteRunner, check_builtin_only, convert_tflite, tflite_operators
from tfcyclegan.export.verify import (
    PARITY, Parity, keras_reference, load_parity_images, measure_parity, psnr_db, synthetic_images,
)

__all__ = [
    "DIRECTIONS", "ExportError", "FORMATS", "MANIFEST_FILE", "METADATA_FILE", "MIN_SIDE", "PARITY", "Parity",
    "QUANTIZATIONS", "ServingModule", "TFLiteRunner", "check_builtin_only", "convert_tflite", "default_name",
    "describe_domains", "export", "keras_reference", "load_parity_images", "measure_parity", "mobile_generator",
    "next_version", "pad_to_multiple", "psnr_db", "read_manifest", "synthetic_images", "tflite_operators", "translate",
]
