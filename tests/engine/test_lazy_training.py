"""Training from disk: a TIFF or OME-Zarr is read patch by patch, never loaded, and gives the same kind of
model as an in-memory run; what cannot train from disk says so."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import denoise_studio as ds
from denoise_studio.cli import main
from denoise_studio.engine import lazy
from denoise_studio.engine.config import DataConfig
from denoise_studio.engine.data import PatchSampler, fit_channel_normalizations, normalize_channels
from denoise_studio.engine.io import InputError, read_image_meta
from denoise_studio.engine.lazy import LazyImage, lazy_samples, open_for_training
from denoise_studio.engine.zarr_io import write_ome_zarr


@pytest.fixture
def stack(make_image):
    return np.stack([make_image((64, 64), seed=s) * 1000 + 100 for s in range(6)]).astype(np.uint16)


def test_a_lazy_channel_reads_blocks_in_any_axes_order(tmp_path):
    data = np.arange(3 * 2 * 40 * 48, dtype=np.uint16).reshape(3, 2, 40, 48)  # ZCYX
    path = tmp_path / "zc.ome.tif"
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata={"axes": "ZCYX"})
    array, meta = open_for_training(path)
    assert meta.axes == "ZCYX" and not isinstance(array, np.ndarray)
    (image,) = lazy_samples(array, meta.axes, "zc")
    assert isinstance(image, LazyImage) and image.shape == (2, 3, 40, 48)
    np.testing.assert_array_equal(image[1].block(slice(1, 3), slice(5, 21), slice(7, 23)), data[1:3, 1, 5:21, 7:23])
    with pytest.raises(TypeError, match="never as a whole array"):
        np.asarray(image)


def test_patches_from_disk_equal_patches_from_memory(tmp_path, stack):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    array, _meta = open_for_training(path)
    (on_disk,) = lazy_samples(array, None, "stack")
    in_memory = stack[np.newaxis].astype(np.float32)
    config = DataConfig(patch_size=32, patches_per_image=4)
    norms = fit_channel_normalizations([in_memory], config)
    for mode in ("2d", "2.5d"):
        eager = PatchSampler([normalize_channels(in_memory, norms)], mode, config, np.random.default_rng(0))
        from_disk = PatchSampler([on_disk.normalized(norms)], mode, config, np.random.default_rng(0))
        batches = zip(
            eager.epoch(np.random.default_rng(1), 8), from_disk.epoch(np.random.default_rng(1), 8), strict=True
        )
        for a, b in batches:
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_tiff_trained_from_disk_is_never_loaded(tmp_path, stack, tiny_config, monkeypatch):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")

    def loaded(*_args, **_kwargs):
        raise AssertionError("the file was loaded whole")

    monkeypatch.setattr("denoise_studio.api.read_image_meta", loaded)
    run = ds.train(path, tiny_config(), from_disk=True)
    assert run.model is not None and run.model.summary["steps"] > 0
    assert run.model.predict(stack).shape == stack.shape


def test_a_file_too_large_for_memory_trains_from_disk_by_itself(tmp_path, stack, tiny_config, monkeypatch):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    monkeypatch.setattr("denoise_studio.engine.io.available_memory", lambda: 2**16)
    seen = []
    real = lazy.lazy_samples
    monkeypatch.setattr("denoise_studio.engine.run.lazy_samples", lambda *a: seen.append(a) or real(*a))
    assert ds.train(path, tiny_config()).model is not None and seen


def test_an_ome_zarr_trains_from_disk_with_its_channels(tmp_path, stack, tiny_config):
    data = np.stack([stack, stack // 2 + 7])  # CZYX
    path = write_ome_zarr(tmp_path / "in.zarr", data, "CZYX", scales={"X": 0.2, "Y": 0.2})
    model = ds.train(path, tiny_config()).model
    assert model.channels == 2 and model.input_axes == "CZYX"
    assert model.normalizations[1].offset < model.normalizations[0].offset


def test_what_cannot_train_from_disk_says_so(tmp_path, stack, tiny_config):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    with pytest.raises(InputError, match="paired training reads its images into memory"):
        ds.train(path, tiny_config("care", target_from="gaussian:1"), from_disk=True)
    with pytest.raises(InputError, match="autoStructN2V reads its images into memory"):
        ds.train(path, ds.make_config("autostructn2v", max_time=1), from_disk=True)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.full((4, 64, 64), 7, np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match=r"constant .* \(checked on 4 sample planes\)"):
        ds.train(flat, tiny_config(), from_disk=True)


def test_the_cli_trains_from_disk_and_predicts_the_file(tmp_path, stack, capsys):
    from tests.conftest import TINY

    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, stack, ome=True, photometric="minisblack", metadata={"axes": "ZYX", "PhysicalSizeX": 0.3})
    sets = [f"--set={key}={value}" for key, value in TINY.items() if value is not None]
    status = main(["train", str(path), "--from-disk", "--out", str(tmp_path / "run"), *sets, "--dtype", "input"])
    assert status == 0
    image, meta = read_image_meta(tmp_path / "run" / "denoised.tif")
    assert image.shape == stack.shape and image.dtype == np.uint16 and meta.scales.get("X") == pytest.approx(0.3)


def test_training_from_disk_measures_the_noise_on_a_block_it_reads(tmp_path, tiny_config, monkeypatch):
    from denoise_studio.engine import run as run_module
    from tests.engine.test_noise_model import clean_image, noisy_of

    clean = clean_image(64)
    stack = np.stack([noisy_of(clean, seed=s) for s in range(6)]).astype(np.float32)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    measured = {}
    original = run_module.fit_from_prediction

    def spy(noisy, denoised):
        measured["noisy"] = noisy
        return original(noisy, denoised)

    monkeypatch.setattr(run_module, "fit_from_prediction", spy)
    run = ds.train(path, tiny_config(), from_disk=True, run_dir=tmp_path / "run")
    assert run.model.noise_model is not None and (tmp_path / "run" / "noise_model.json").exists()
    # Raw intensities of the file (not the run's normalised values), from the central planes.
    block = measured["noisy"]
    assert block.shape[-2:] == (64, 64)
    z = (6 - block.shape[0]) // 2
    np.testing.assert_allclose(block, stack[z : z + block.shape[0]])
