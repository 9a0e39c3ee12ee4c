"""Locating the bundled sample images (repository checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def sample_dir() -> Path:
    """``sample_data/`` at the repository root (editable install) or inside the installed package."""
    for candidate in (_PACKAGE_DIR.parents[1] / "sample_data", _PACKAGE_DIR / "sample_data"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the bundled sample_data folder is missing from this installation")


def sample_path(name: str) -> Path:
    path = sample_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"sample {name!r} not found in {path.parent}")
    return path


def _load(name: str, layer_name: str, **kwargs) -> list[tuple]:
    import tifffile

    return [(tifffile.imread(sample_path(name)), {"name": layer_name, **kwargs})]


def confocal_sample() -> list[tuple]:
    """A noisy confocal frame (FMD zebrafish) and its 50-frame average as the reference."""
    return _load("fmd_fish_confocal_noisy.tif", "confocal noisy") + _load(
        "fmd_fish_confocal_avg50.tif", "confocal reference (avg 50)", visible=False
    )


def stem_sample() -> list[tuple]:
    """An atomic-resolution HAADF-STEM crop with horizontal scan-line noise."""
    return _load("stem_haadf_SrTiO3_crop.tif", "STEM scan-line noise")


def timelapse_sample() -> list[tuple]:
    """A 24-frame nuclei time-lapse crop, for 2.5D (three neighbouring slices in)."""
    return _load("nuclei_timelapse_crop.tif", "nuclei time-lapse")
