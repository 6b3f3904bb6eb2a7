"""The checkerboard measure: how much of an image set's power sits at the frequencies of a
pattern locked to the pixel grid, against real images of the same domain and size.

A k3 s2 transposed convolution covers its output unevenly (odd pixels get one kernel tap per
axis, even pixels two), so a generator built from two of them leaves a pattern that repeats every
2 and every 4 pixels: power at 1/2 and 1/4 cycle per pixel. Real faces have little power there
(period 2, the Nyquist frequency, almost none), which makes the ratio translated / real a clean
detector. Blurry images have *less* power there than real ones: `sharpness_ratio`, the broadband
detail away from those bins, says how much.

Spectra: per image and channel, the mean is removed and a periodic Hann window applied (its DFT
is three bins wide, so a spike spreads to its 3x3 neighbourhood and the image borders do not
leak); P = |FFT2|^2 / sum(w^2) / (H W), so sum(P) is the image's (windowed) variance on the
[-1, 1] scale, comparable across sizes. Accumulated batch by batch (`SpectrumStats`) so an
evaluation does not keep its translations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The aim for `artefact_ratio`: at most 10 % more power at the checkerboard frequencies than real faces.
ARTEFACT_RATIO_AIM = 1.10

MEASURE = (
    "band power = mean over images of the RGB-summed power spectrum (mean-removed, periodic-Hann-windowed "
    "DFT, |F|^2 / sum(w^2) / (H W)) in the 3x3 neighbourhoods of the band's bins; period2: (0, 1/2), (1/2, 0), "
    "(1/2, 1/2) cycle/pixel; period4: the 12 other non-DC bins with frequencies in {0, 1/4, 1/2, 3/4}; "
    "artefact_ratio = the larger of translated / real target over the two bands; sharpness_ratio = the same "
    "for the power at >= 1/8 cycle/pixel outside those bands (below 1: blurrier than real)"
)


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def power_spectra(images: np.ndarray) -> np.ndarray:
    """float64 (n, H, W): per image, the RGB-summed power spectrum (numpy fft2 order), scaled so
    that its sum is the image's windowed variance summed over channels ([-1, 1] scale)."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (n, H, W, 3). Received shape {x.shape}")
    _, h, w, _ = x.shape
    window = np.outer(_hann(h), _hann(w))[None, :, :, None]
    x = (x - x.mean(axis=(1, 2), keepdims=True)) * window
    power = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2 / float((window**2).sum()) / float(h * w)
    return power.sum(axis=-1)


def frequency_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """bool (H, W) masks over DFT bins: period2, period4 (see MEASURE) and highfreq (the detail a
    sharp face has: max(|fy|, |fx|) >= 1/8 cycle/pixel, outside the two checkerboard bands)."""
    if h % 4 or w % 4:
        raise ValueError(f"H and W must be divisible by 4 for the checkerboard bins. Received {h}x{w}")

    def around(points) -> np.ndarray:
        mask = np.zeros((h, w), bool)
        for u, v in points:
            for du in (-1, 0, 1):
                for dv in (-1, 0, 1):
                    mask[(u + du) % h, (v + dv) % w] = True
        return mask

    def grid(n: int, period: int) -> list[int]:
        return [k * n // period for k in range(period)]

    p2 = [(u, v) for u in grid(h, 2) for v in grid(w, 2) if (u, v) != (0, 0)]
    p4 = [(u, v) for u in grid(h, 4) for v in grid(w, 4) if (u, v) != (0, 0) and (u, v) not in p2]
    period2 = around(p2)
    period4 = around(p4) & ~period2
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    highfreq = (np.maximum(fy, fx) >= 0.125) & ~period2 & ~period4
    return {"period2": period2, "period4": period4, "highfreq": highfreq}


class SpectrumStats:
    """Running sums over batches of one image set: the mean power spectrum and the mean image."""

    def __init__(self):
        self.count = 0
        self._power: np.ndarray | None = None
        self._pixels: np.ndarray | None = None

    def add(self, images: np.ndarray) -> None:
        images = np.asarray(images, np.float64)
        if len(images) == 0:
            return
        power, pixels = power_spectra(images).sum(axis=0), images.sum(axis=0)
        if self._power is None:
            self._power, self._pixels = power, pixels
        elif power.shape != self._power.shape:
            raise ValueError(f"All images of one set must have one size: {pixels.shape[:2]} after {self._pixels.shape[:2]}")
        else:
            self._power += power
            self._pixels += pixels
        self.count += len(images)

    @property
    def mean_spectrum(self) -> np.ndarray:
        """float64 (H, W): the mean RGB-summed power spectrum (numpy fft2 order)."""
        if not self.count:
            raise ValueError("No images were added.")
        return self._power / self.count

    def bands(self) -> dict[str, float]:
        """Power per band (period2, period4, highfreq), `total` (all non-DC power), and
        `fixed_pattern`: the checkerboard bands' power of the *mean* image, where a pattern locked
        to the pixel grid survives and face content largely averages out."""
        spectrum = self.mean_spectrum
        masks = frequency_masks(*spectrum.shape)
        out = {name: float(spectrum[mask].sum()) for name, mask in masks.items()}
        out["total"] = float(spectrum.sum() - spectrum[0, 0])
        mean_image = power_spectra((self._pixels / self.count)[None])[0]
        out["fixed_pattern"] = float(mean_image[masks["period2"] | masks["period4"]].sum())
        return out


def compare(translated: SpectrumStats, real: SpectrumStats) -> dict[str, Any]:
    """The artefact figures of translated images against real images of their target domain."""
    fake, true = translated.bands(), real.bands()

    def ratio(key: str) -> float:
        return fake[key] / true[key] if true[key] > 0 else float("inf")

    return {
        # Judged per band: real faces have ~100x more power at period 4 than at period 2, so a sum
        # would hide a Nyquist checkerboard.
        "artefact_ratio": max(ratio("period2"), ratio("period4")),
        "ratio_period2": ratio("period2"),
        "ratio_period4": ratio("period4"),
        "fixed_pattern_ratio": ratio("fixed_pattern"),
        "sharpness_ratio": ratio("highfreq"),
        "translated": fake,
        "real_target": true,
    }


def artefact_figures(translated: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """`compare` for two arrays (float (n, H, W, 3) in [-1, 1])."""
    stats = SpectrumStats(), SpectrumStats()
    stats[0].add(translated)
    stats[1].add(real)
    return compare(*stats)


def log_spectrum_image(spectra: list[np.ndarray], *, scale: int = 2) -> np.ndarray:
    """uint8 (H', W', 3): the log mean spectra side by side (DC centred), on one colour scale
    (dark blue low, yellow-red high), each `scale` times larger. A checkerboard shows as bright
    dots at the corners and edge centres that the real images' spectrum does not have."""
    logs = [np.fft.fftshift(np.log10(s + 1e-12)) for s in spectra]
    lo = min(float(np.percentile(s, 2)) for s in logs)
    hi = max(float(s.max()) for s in logs)
    cells = []
    for s in logs:
        t = np.clip((s - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
        rgb = np.stack([np.clip(2 * t, 0, 1), np.clip(2 - 2 * np.abs(2 * t - 1) - 0.2, 0, 1) * (t > 0.15),
                        np.clip(1 - 2 * t, 0, 1)], -1)
        cell = np.repeat(np.repeat((rgb * 255).astype(np.uint8), scale, 0), scale, 1)
        cells += [cell, np.full((cell.shape[0], 8, 3), 255, np.uint8)]
    return np.concatenate(cells[:-1], 1)
