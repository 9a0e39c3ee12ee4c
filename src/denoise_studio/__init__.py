"""napari-denoise-studio: self-supervised denoising for microscopy.

The public Python API (see ``docs/api.md``)::

    import denoise_studio as ds
    cfg = ds.make_config("n2v", mode="2d", preset="fast", max_time=30)
    run = ds.train([noisy], cfg, run_dir="runs/fish")
    model = ds.load_model("runs/fish")
    denoised = model.predict(noisy)
    ds.predict_file(model, "big.tif", "out.tif")

The engine (:mod:`denoise_studio.engine`) is pure Python + torch + numpy; the command line
(:mod:`denoise_studio.cli`) and the napari widgets are thin faces over this API. The names below are
imported on first use, so that napari's plugin discovery does not pay for torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "make_config": "denoise_studio.api",
    "with_field_of_view": "denoise_studio.api",
    "train": "denoise_studio.api",
    "adapt": "denoise_studio.api",
    "load_model": "denoise_studio.api",
    "predict_file": "denoise_studio.api",
    "predict_files": "denoise_studio.api",
    "export_bmz": "denoise_studio.api",
    "extract_mask": "denoise_studio.api",
    "assess": "denoise_studio.api",
    "fit_noise_model": "denoise_studio.api",
    "simulation_settings": "denoise_studio.api",
    "BatchResult": "denoise_studio.engine.batch",
    "BmzError": "denoise_studio.engine.bmz",
    "Assessment": "denoise_studio.engine.assessment",
    "NoiseModel": "denoise_studio.engine.noise_model",
    "RunResult": "denoise_studio.engine.run",
    "TrainingRun": "denoise_studio.engine.run",
    "Approve": "denoise_studio.engine.run",
    "Regenerate": "denoise_studio.engine.run",
    "SkipStage2": "denoise_studio.engine.run",
    "ReviewRequest": "denoise_studio.engine.run",
    "auto_approve": "denoise_studio.engine.run",
    "TrainedModel": "denoise_studio.engine.model",
    "StopRequest": "denoise_studio.engine.events",
    "ProgressEvent": "denoise_studio.engine.events",
    "TrainingEvent": "denoise_studio.engine.events",
    "PredictionEvent": "denoise_studio.engine.events",
    "StateEvent": "denoise_studio.engine.events",
    "RunState": "denoise_studio.engine.events",
    "DenoiseConfig": "denoise_studio.engine.config",
    "AutoStructConfig": "denoise_studio.engine.config",
    "MaskExtractorConfig": "denoise_studio.engine.config",
    "ConfigError": "denoise_studio.engine.errors",
    "InputError": "denoise_studio.engine.io",
    "ModelFileError": "denoise_studio.engine.persistence",
    "RunFolderError": "denoise_studio.engine.persistence",
    "METHODS": "denoise_studio.engine.registry",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'denoise_studio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
