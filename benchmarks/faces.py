"""Seconds per photo for `--faces`: a 1024x768 photo with one face and with four. Prints JSON.

    python -m benchmarks.faces                          # full-size generator (random weights), 256 px crops
    python -m benchmarks.faces --crop_size=64           # the crop size of a run that stopped at 64 px
    python -m benchmarks.faces --model=exports/age_a2b  # a trained model (anything --model takes)

Each photo is UTKFace crops (from ../shared/data/utkface_sample or $TFCYCLEGAN_UTKFACE_SAMPLE)
placed in a drawn scene (tfcyclegan.faces.scenes). The pieces are timed as translate_faces runs
them, one after the other: detection (the detector on the whole photo), alignment (the second,
upright look at each face and the warp to the crop), translation (the generator on each crop)
and paste-back (the warp back and the feathered blend); `translate_faces` is the whole call.
Other processes may share the CPU, so every figure is the minimum of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.common import machine_info

SIZE = (1024, 768)
# (centre, side, angle) of each face: one portrait, then a group of four.
ONE_FACE = [((512, 360), 300, 5.0)]
FOUR_FACES = [((170, 330), 190, -8.0), ((420, 300), 170, 4.0), ((650, 350), 200, 10.0), ((880, 310), 160, -5.0)]


def sample_folder() -> Path:
    env = os.environ.get("TFCYCLEGAN_UTKFACE_SAMPLE")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_sample"
    if not folder.is_dir():
        sys.exit(f"error: needs the UTKFace sample at {folder} (or set TFCYCLEGAN_UTKFACE_SAMPLE)")
    return folder


def photo(layout, seed: int) -> np.ndarray:
    from PIL import Image

    from tfcyclegan.faces import scenes

    names = sorted(n for n in os.listdir(sample_folder()) if n.endswith(".jpg"))
    crops = [np.asarray(Image.open(sample_folder() / names[(seed * 31 + 97 * i) % len(names)]).convert("RGB"))
             for i in range(len(layout))]
    placements = [scenes.Placement(c, s, a) for c, s, a in layout]
    return scenes.compose(crops, placements, size=SIZE, seed=seed)[0]


def translator(model: str | None, crop_size: int):
    """(fn, name): float32 (1, S, S, 3) -> the same."""
    if model:
        from tfcyclegan.translate.models import load_translator

        loaded = load_translator(model)
        return loaded.fn, loaded.name
    import tensorflow as tf

    from tfcyclegan.config import ModelConfig
    from tfcyclegan.export import translate as export_translate
    from tfcyclegan.model.networks import build_generator

    generator = build_generator(ModelConfig(), name="gen_g")
    run = tf.function(lambda x: export_translate(generator, x),
                      input_signature=[tf.TensorSpec([1, crop_size, crop_size, 3], tf.float32)])
    return (lambda x: run(x).numpy()), "random full-size generator (9 blocks, 64 filters)"


def time_pieces(image: np.ndarray, fn, crop_size: int, detector) -> dict:
    """Seconds for each piece of one translate_faces pass, in its order."""
    from tfcyclegan.faces import align as align_lib
    from tfcyclegan.faces.photos import skip_reason

    times = {}
    start = time.perf_counter()
    faces = [f for f in detector.detect(image) if skip_reason(f, image.shape, 40) is None]
    times["detection"] = time.perf_counter() - start
    start = time.perf_counter()
    aligned = []
    for face in faces:
        face = align_lib.refine(image, face, detector)
        matrix = align_lib.alignment_matrix(face, crop_size)
        aligned.append((matrix, align_lib.align(image, matrix, crop_size)))
    times["alignment"] = time.perf_counter() - start
    start = time.perf_counter()
    translated = [np.asarray(fn(crop.astype(np.float32)[None] / 127.5 - 1.0)) for _, crop in aligned]
    times["translation"] = time.perf_counter() - start
    start = time.perf_counter()
    out = image.copy()
    for (matrix, _), crop in zip(aligned, translated):
        align_lib.paste(out, np.clip(np.round((crop[0] + 1) * 127.5), 0, 255).astype(np.uint8), matrix)
    times["paste_back"] = time.perf_counter() - start
    times["faces"] = len(faces)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop_size", type=int, default=256, help="the model's training size (default 256)")
    parser.add_argument("--model", default=None, help="a trained model (as --model of tfcyclegan-translate); "
                        "its own training size is then used")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from tfcyclegan.faces import get_detector, translate_faces

    fn, name = translator(args.model, args.crop_size)
    crop_size = args.crop_size
    if args.model:
        from tfcyclegan.translate.models import load_translator

        crop_size = load_translator(args.model).size or crop_size
    detector = get_detector()
    result = {"machine": machine_info(), "image": list(SIZE), "crop_size": crop_size, "model": name,
              "repeats": args.repeats, "seconds": {}}
    for label, layout, seed in (("one_face", ONE_FACE, 1), ("four_faces", FOUR_FACES, 2)):
        image = photo(layout, seed)
        translate_faces(image, fn, crop_size=crop_size, detector=detector)  # warm up: traces, first calls
        best = {}
        for _ in range(args.repeats):
            pieces = time_pieces(image, fn, crop_size, detector)
            start = time.perf_counter()
            found = len(translate_faces(image, fn, crop_size=crop_size, detector=detector).faces)
            pieces["translate_faces"] = time.perf_counter() - start
            for key, value in pieces.items():
                best[key] = min(best.get(key, float("inf")), value)
        row = {k: round(v, 4) for k, v in best.items() if k != "faces"}
        row["faces_found"] = found
        result["seconds"][label] = row
        print(json.dumps({"done": label, **row}), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
