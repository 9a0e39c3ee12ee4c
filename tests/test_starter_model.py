"""The bundled starter model: it loads offline, denoises the sample it was trained on, and every face opens it."""

from __future__ import annotations

import numpy as np
import tifffile

import denoise_studio as ds
from denoise_studio.cli import main
from denoise_studio.engine.metrics import psnr
from denoise_studio.samples import sample_path, starter_model_path, starter_sample


def test_the_starter_model_carries_its_training_record():
    folder = starter_model_path()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.csv", "model.pth", "noise_model.json"]
    model = ds.load_model(folder)
    assert model.method == "n2v" and model.mode == "2d" and model.noise_model is not None
    assert model.summary["steps"] > 500  # a real training, not a placeholder
    assert model.network.config.base_features == 16  # the Fast preset: small (well under 1 MB)
    assert (folder / "model.pth").stat().st_size < 1_000_000


def test_the_starter_model_denoises_the_confocal_sample():
    noisy = tifffile.imread(sample_path("fmd_fish_confocal_noisy.tif")).astype(np.float32)
    reference = tifffile.imread(sample_path("fmd_fish_confocal_avg50.tif")).astype(np.float32)
    denoised = ds.load_model(starter_model_path()).predict(noisy)
    assert psnr(noisy, reference) < 23 and psnr(denoised, reference) > 30  # 22.1 dB -> about 31.5 dB


def test_the_napari_sample_entry_shows_the_sample_and_the_starter_result():
    (noisy, noisy_style), (denoised, style) = starter_sample()
    assert noisy_style["name"] == "confocal noisy" and denoised.shape == noisy.shape
    assert style["name"] == "confocal noisy denoised (starter model)"
    assert denoised.std() < noisy.std()


def test_predict_starter_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "fish_denoised.tif"
    assert main(["predict", "starter", str(sample_path("fmd_fish_confocal_noisy.tif")), "--out", str(out)]) == 0
    assert tifffile.imread(out).shape == (512, 512)
