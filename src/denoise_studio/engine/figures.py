"""Side-by-side figures (PNG-ready RGB arrays) of noisy, denoised and reference images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_write


def side_by_side(panels: list[tuple[str, np.ndarray]], reference: np.ndarray | None = None, gap: int = 6) -> np.ndarray:
    """An 8-bit RGB strip of labelled 2D panels sharing one display range (the reference's, else the first's)."""
    from PIL import Image, ImageDraw

    basis = panels[0][1] if reference is None else reference
    low, high = np.percentile(np.asarray(basis, dtype=np.float32), [0.5, 99.8])
    tiles = []
    for label, image in panels:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 3:
            image = image[image.shape[0] // 2]  # the middle slice of a stack
        scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
        tile = Image.fromarray((scaled * 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, 8 + 7 * len(label), 16), fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 0))
        tiles.append(np.asarray(tile))
    height = max(tile.shape[0] for tile in tiles)
    strip = []
    for index, tile in enumerate(tiles):
        if tile.shape[0] < height:
            tile = np.pad(tile, ((0, height - tile.shape[0]), (0, 0), (0, 0)), constant_values=255)
        if index:
            strip.append(np.full((height, gap, 3), 255, dtype=np.uint8))
        strip.append(tile)
    return np.concatenate(strip, axis=1)


def write_png(path, image: np.ndarray) -> Path:
    """Write a PNG atomically, with normal permissions."""
    import imageio.v3 as iio

    return atomic_write(path, lambda tmp: iio.imwrite(tmp, image, extension=".png"))
