"""Locating the bundled sample images (repository checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

#: The bundled starter model's run folder inside ``sample_data/`` (made by scripts/make_starter_model.py).
STARTER_MODEL = "starter_model"


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


def starter_model_path() -> Path:
    """The run folder of the bundled starter model: N2V, Fast preset, trained on the noisy confocal
    sample, with its training record. Any image of that kind can be denoised with it offline."""
    return sample_path(STARTER_MODEL)


def _load(name: str, layer_name: str, **kwargs) -> list[tuple]:
    import tifffile

    return [(tifffile.imread(sample_path(name)), {"name": layer_name, **kwargs})]


def confocal_sample() -> list[tuple]:
    """A noisy confocal frame (FMD zebrafish) and its 50-frame average as the reference."""
    return _load("fmd_fish_confocal_noisy.tif", "confocal noisy") + _load(
        "fmd_fish_confocal_avg50.tif", "confocal reference (avg 50)", visible=False
    )


def starter_sample() -> list[tuple]:
    """The noisy confocal sample and what the bundled starter model makes of it (no training needed)."""
    from .api import load_model

    noisy, style = _load("fmd_fish_confocal_noisy.tif", "confocal noisy")[0]
    denoised = load_model(starter_model_path()).predict(noisy)
    # The input's display range, so that the two compare at a glance.
    limits = (float(noisy.min()), float(noisy.max()))
    return [(noisy, style), (denoised, {"name": "confocal noisy denoised (starter model)", "contrast_limits": limits})]


def stem_sample() -> list[tuple]:
    """An atomic-resolution HAADF-STEM crop with horizontal scan-line noise."""
    return _load("stem_haadf_SrTiO3_crop.tif", "STEM scan-line noise")


def timelapse_sample() -> list[tuple]:
    """A 24-frame nuclei time-lapse crop, for 2.5D (three neighbouring slices in)."""
    return _load("nuclei_timelapse_crop.tif", "nuclei time-lapse")
