"""Synthetic faces: the embedded default data set, drawn with numpy, written like UTKFace.

Each image is a cartoon face whose UTKFace labels are visible:

- age: hair colour (dark brown/black in the 20s, grey to white from the 50s, salt and pepper
  in the 40s, brown for children) and wrinkle lines (forehead, eyes, mouth) from 45 on;
- race: skin tone (0 White light, 1 Black dark, 2 Asian, 3 Indian, 4 Others in between);
- gender: hair length (short for 0 male, shoulder length for 1 female).

Face position, scale, shirt colour and the background (a two-colour gradient in a random
direction) vary, so the translation is not a colour swap of fixed pixels. Files are named
`age_gender_race_datetime.jpg.chip.jpg`, so they go through the same name parsing, dedupe
and split code as real UTKFace. `masks.npz` beside the images holds each face's hair region
(bool, native size) so tests can measure hair brightness of translated images.

Generation is deterministic by (seed, count, size) and takes about 3 ms per 128 px image.

    python -m tfcyclegan.data.synthetic --out=/tmp/faces --count=600 --seed=0
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VERSION = 1  # part of the cache key: bump it whenever the drawing or the label sampling changes
NATIVE_SIZE = 128
MASKS_FILE = "masks.npz"
_DONE_FILE = "COMPLETE"
BOOKKEEPING = (MASKS_FILE, _DONE_FILE)  # files beside the images that are not data

# Mean skin colour (RGB) per UTKFace race label.
SKIN = {
    0: (236, 201, 176),  # White
    1: (104, 68, 48),  # Black
    2: (228, 190, 146),  # Asian
    3: (172, 122, 88),  # Indian
    4: (198, 152, 112),  # Others
}


def hair_colour(age: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(RGB base colour, grey-strand fraction) of the hair for an age."""
    if age < 15:
        base = np.array([92, 64, 40]) + rng.integers(-12, 13, 3)
        return base, 0.0
    if age < 40:  # dark: the 20s domain must be consistently dark
        v = rng.uniform(22, 48)
        return np.array([v * 1.15, v * 0.95, v * 0.8]), 0.0
    if age < 50:
        v = rng.uniform(35, 55)
        return np.array([v * 1.1, v, v * 0.9]), 0.35
    if age < 60:  # grey to white: the 50s domain must be consistently bright
        v = rng.uniform(196, 226)
        return np.array([v, v, v * 1.01]), 0.0
    v = rng.uniform(226, 248)
    return np.array([v, v, v]), 0.0


def sample_labels(count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(age, gender, race) for `count` faces: 40% in their 20s, 40% in their 50s, 20% others."""
    n_young = n_old = int(round(0.4 * count))
    groups = rng.permutation(np.repeat([0, 1, 2], [n_young, n_old, count - n_young - n_old]))
    labels = []
    for i, group in enumerate(groups):
        if group == 0:
            age = int(rng.integers(20, 30))
        elif group == 1:
            age = int(rng.integers(50, 60))
        else:
            age = int(rng.choice([rng.integers(1, 20), rng.integers(30, 50), rng.integers(60, 91)]))
        gender = i % 2 if rng.random() < 0.5 else 1 - i % 2
        race = int(rng.choice(5, p=[0.3, 0.3, 0.14, 0.13, 0.13]))
        labels.append((age, int(gender), race))
    return labels


def _box(cy: float, cx: float, ry: float, rx: float, big: int) -> list[float]:
    return [(cx - rx) * big, (cy - ry) * big, (cx + rx) * big, (cy + ry) * big]


# Region labels of the drawing (later ones are painted over earlier ones).
_BG, _SHIRT, _NECK, _HAIR, _EAR, _FACE, _EYE, _PUPIL, _BROW, _NOSE, _MOUTH, _WRINKLE = range(12)


def draw_face(age: int, gender: int, race: int, rng: np.random.Generator, size: int = NATIVE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One face: (uint8 (size, size, 3) RGB, bool (size, size) hair mask).

    Regions are drawn as labels with PIL at twice the size, coloured from a per-face
    palette, and box-filtered down, which anti-aliases the edges.
    """
    big = size * 2
    s = rng.uniform(0.78, 1.0)
    cx = 0.5 + rng.uniform(-0.08, 0.08)
    cy = 0.5 + rng.uniform(-0.05, 0.07)
    fw, fh = 0.20 * s, 0.27 * s  # face half-width, half-height in units of the image side

    def layer():
        im = Image.new("L", (big, big), 0)
        return im, ImageDraw.Draw(im)

    labels_im, draw = layer()
    draw.ellipse(_box(cy + 2.05 * fh, cx, 1.0 * fh, 2.3 * fw, big), fill=_SHIRT)
    draw.rectangle([(cx - 0.45 * fw) * big, (cy + 0.4 * fh) * big, (cx + 0.45 * fw) * big, (cy + 1.35 * fh) * big], fill=_NECK)

    # Hair: a cap for everyone, plus shoulder-length sides for gender 1.
    hair_im, hair_draw = layer()
    hair_draw.ellipse(_box(cy - 0.26 * fh, cx, 1.06 * fh, 1.15 * fw, big), fill=1)
    if gender == 1:
        hair_draw.rounded_rectangle(
            [(cx - 1.3 * fw) * big, (cy - 0.4 * fh) * big, (cx + 1.3 * fw) * big, (cy + 1.25 * fh) * big],
            radius=0.35 * fw * big, fill=1,
        )
    face_im, face_draw = layer()
    face_draw.ellipse(_box(cy, cx, fh, fw, big), fill=1)
    hair = np.asarray(hair_im, dtype=bool)
    face = np.asarray(face_im, dtype=bool)
    # The fringe: hair over the top of the face, down to a wavy hairline.
    x = (np.arange(big, dtype=np.float32) + 0.5) / big
    hairline = cy - (0.5 if gender == 0 else 0.42) * fh + 0.03 * fh * np.sin(x * 60 + rng.uniform(0, 6))
    if gender == 1:  # a side parting
        hairline = hairline + 0.18 * fh * np.clip((x - cx) / fw * rng.choice([-1, 1]), 0, 1)
    rows = ((np.arange(big, dtype=np.float32) + 0.5) / big)[:, None]
    hair &= ~face | (rows < hairline[None, :])

    if gender == 0:  # ears, visible under short hair
        for side in (-1, 1):
            draw.ellipse(_box(cy + 0.02 * fh, cx + side * 0.98 * fw, 0.22 * fh, 0.12 * fw, big), fill=_EAR)
    labels = np.array(labels_im)
    labels[face] = _FACE
    labels[hair] = _HAIR

    # Eyes, brows, nose, mouth, wrinkles: drawn on a features layer, kept off the hair.
    feat_im, fd = layer()
    eye_y = cy - 0.08 * fh
    for side in (-1, 1):
        ex = cx + side * 0.4 * fw
        fd.ellipse(_box(eye_y, ex, 0.07 * fh, 0.2 * fw, big), fill=_EYE)
        fd.ellipse(_box(eye_y, ex, 0.06 * fh, 0.07 * fw, big), fill=_PUPIL)
        fd.ellipse(_box(eye_y - 0.16 * fh, ex, 0.03 * fh, 0.22 * fw, big), fill=_BROW)
    fd.polygon([(cx * big, (cy + 0.02 * fh) * big), ((cx - 0.07 * fw) * big, (cy + 0.3 * fh) * big),
                ((cx + 0.07 * fw) * big, (cy + 0.3 * fh) * big)], fill=_NOSE)
    fd.ellipse(_box(cy + 0.5 * fh, cx, 0.07 * fh, 0.32 * fw, big), fill=_MOUTH)
    if age >= 45:  # forehead lines, crow's feet, lines beside the mouth
        width = max(2, big // 128)
        for j in range(3 if age >= 55 else 2):
            ly = cy - (0.28 + 0.09 * j) * fh
            fd.arc(_box(ly + 0.25 * fh, cx, 0.25 * fh, 0.55 * fw, big), 235, 305, fill=_WRINKLE, width=width)
        for side in (-1, 1):
            x0 = cx + side * 0.66 * fw
            for j in (-1, 0, 1):
                fd.line([(x0 * big, (eye_y + 0.02 * j * fh) * big),
                         ((x0 + side * 0.14 * fw) * big, (eye_y + 0.09 * j * fh) * big)], fill=_WRINKLE, width=width)
            fd.line([((cx + side * 0.3 * fw) * big, (cy + 0.22 * fh) * big),
                     ((cx + side * 0.42 * fw) * big, (cy + 0.55 * fh) * big)], fill=_WRINKLE, width=width)
    feat = np.asarray(feat_im)
    on_face = (feat > 0) & face & ~hair
    labels[on_face] = feat[on_face]

    # Colours.
    skin = np.clip(np.array(SKIN[race]) + rng.integers(-10, 11, 3), 0, 255)
    hair_rgb, grey_frac = hair_colour(age, rng)
    palette = np.zeros((12, 3), np.float32)
    palette[_SHIRT] = rng.integers(0, 256, 3)
    palette[_NECK] = skin * 0.88
    palette[_EAR] = skin * 0.92
    palette[_FACE] = skin
    palette[_EYE] = (245, 245, 240)
    palette[_PUPIL] = (40, 30, 25) + rng.integers(0, 40, 3)
    palette[_BROW] = np.minimum(hair_rgb * 0.8 + 20, 200)
    palette[_NOSE] = skin * 0.8
    palette[_MOUTH] = (170, 70, 70) + rng.integers(-20, 21, 3)
    palette[_WRINKLE] = skin * 0.55
    img = palette[labels]

    # Background: a gradient between two random colours in a random direction.
    c1, c2 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    bg = labels == _BG
    yb, xb = np.nonzero(bg)
    t = np.clip((x[xb] - 0.5) * np.cos(theta) + (x[yb] - 0.5) * np.sin(theta) + 0.5, 0, 1)
    img[bg] = c1 + t[:, None] * (c2 - c1)
    # Hair texture: strands; salt and pepper mixes in light strands.
    yh, xh = np.nonzero(hair)
    strands = np.sin(x[xh] * rng.uniform(150, 220) + np.sin(x[yh] * 30) * 2.0)
    hair_px = (hair_rgb[None, :] + 10 * strands[:, None]).astype(np.float32)
    if grey_frac > 0:
        light = rng.random(hair_px.shape[0]) < grey_frac
        hair_px[light] = 205
    img[hair] = hair_px

    img = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * 0.25
    h = hair.view(np.uint8)
    mask = (h[0::2, 0::2] + h[1::2, 0::2] + h[0::2, 1::2] + h[1::2, 1::2]) >= 2
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


def file_name(index: int, age: int, gender: int, race: int) -> str:
    return f"{age}_{gender}_{race}_2017{index:013d}.jpg.chip.jpg"


def generate(out: str | os.PathLike, *, count: int = 600, seed: int = 0, size: int = NATIVE_SIZE) -> Path:
    """Writes `count` faces as UTKFace-named JPEGs plus masks.npz into `out` (created). Returns out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, count, VERSION])
    labels = sample_labels(count, rng)
    masks = {}
    for i, (age, gender, race) in enumerate(labels):
        face_rng = np.random.default_rng([seed, VERSION, i])
        image, mask = draw_face(age, gender, race, face_rng, size)
        name = file_name(i, age, gender, race)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=92)
        (out / name).write_bytes(buf.getvalue())
        masks[name] = mask
    np.savez_compressed(out / MASKS_FILE, **masks)
    return out


def dataset_dir(cache_dir: str | os.PathLike, *, count: int, seed: int, size: int = NATIVE_SIZE) -> Path:
    return Path(cache_dir) / f"synthetic_v{VERSION}_seed{seed}_n{count}_{size}px"


def _fingerprint(folder: Path) -> dict[str, list]:
    """{file name: [size, md5]} of the generated files (images and masks)."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.name != _DONE_FILE and path.is_file():
            data = path.read_bytes()
            out[path.name] = [len(data), hashlib.md5(data).hexdigest()]
    return out


def damage(folder: Path) -> str | None:
    """What is wrong with a generated folder ("3 files missing, 2 changed"), or None when every
    file the completion record lists is there with its bytes."""
    try:
        record = json.loads((folder / _DONE_FILE).read_text())
        expected = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable completion record"
    missing = changed = 0
    for name, (size, md5) in expected.items():
        path = folder / name
        if not path.is_file():
            missing += 1
        elif path.stat().st_size != size or hashlib.md5(path.read_bytes()).hexdigest() != md5:
            changed += 1
    if missing or changed:
        return f"{missing} files missing, {changed} changed"
    return None


def ensure(cache_dir: str | os.PathLike, *, count: int, seed: int, size: int = NATIVE_SIZE) -> Path:
    """The generated folder for (count, seed, size) in cache_dir, generating it on first use.

    Generation goes to a temporary folder that is renamed into place when complete, so
    concurrent processes and interrupted runs never see a half-written data set. The completion
    record lists every file's size and md5, and each use checks them: a damaged folder (files
    deleted or changed) is generated again, with a message.
    """
    target = dataset_dir(cache_dir, count=count, seed=seed, size=size)
    if (target / _DONE_FILE).exists():
        problem = damage(target)
        if problem is None:
            return target
        print(f"The synthetic faces in {target} are damaged ({problem}); generating them again.", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        generate(tmp, count=count, seed=seed, size=size)
        record = {"version": VERSION, "seed": seed, "count": count, "size": size, "files": _fingerprint(tmp)}
        (tmp / _DONE_FILE).write_text(json.dumps(record))
        if target.exists():  # damaged, or a leftover from an older crash: set aside, then removed
            old = target.with_name(f"{target.name}.old{os.getpid()}")
            try:
                os.rename(target, old)
            except OSError:
                pass  # another process moved it already
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if damage(target) is not None:  # another process put a complete one in place: use it
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hair_masks(folder: str | os.PathLike, size: int | None = None) -> dict[str, np.ndarray]:
    """{file name: bool (H, W) hair region} for a generated folder.

    size: resize the masks to (size, size) (nearest), e.g. to the resolution of translated
    images; None keeps the native size.
    """
    path = Path(folder) / MASKS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} not found: hair masks exist only for folders made by tfcyclegan.data.synthetic.")
    with np.load(path) as data:
        masks = {name: data[name] for name in data.files}
    if size is not None:
        masks = {
            k: np.asarray(Image.fromarray(v.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)) >= 128
            for k, v in masks.items()
        }
    return masks


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic UTKFace-style faces to a folder.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=NATIVE_SIZE)
    args = parser.parse_args(argv)
    out = generate(args.out, count=args.count, seed=args.seed, size=args.size)
    print(f"Wrote {args.count} faces ({args.size} px) and {MASKS_FILE} to {out}")


if __name__ == "__main__":
    main()
