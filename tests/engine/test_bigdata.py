"""Data larger than memory through the one API: OME-Zarr in and out, lazy TIFF, dask blocks with the exact
margin (equal to the in-memory prediction), a local cluster equal to in-process, bounded memory routing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

import denoise_studio as ds
from denoise_studio.cli import main
from denoise_studio.engine import io as engine_io
from denoise_studio.engine.events import StopRequest
from denoise_studio.engine.io import InputError, read_image_meta
from denoise_studio.engine.prediction import PredictionStopped
from denoise_studio.engine.zarr_io import read_ome_zarr, write_ome_zarr


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    clean = np.zeros((2, 6, 80, 72), np.float32)
    clean[:, :, 20:60, 16:50] = [[[[200.0]]], [[[900.0]]]]
    return (clean + rng.normal(0, 30, clean.shape) + 100).astype(np.float32)  # CZYX


@pytest.fixture(scope="module")
def model(volume, tmp_path_factory):
    from tests.conftest import TINY

    config = ds.make_config("n2v", "2d", "fast", dict(TINY))
    run = ds.train(volume, config, axes="CZYX", run_dir=tmp_path_factory.mktemp("run") / "run")
    return run.model


@pytest.fixture
def source(volume, tmp_path):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path, volume, ome=True, photometric="minisblack",
        metadata={"axes": "CZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.5,
                  "Channel": {"Name": ["DAPI", "GFP"]}},
    )  # fmt: skip
    return path


def test_an_ome_tiff_is_predicted_block_by_block_into_an_ome_zarr(model, volume, source, tmp_path):
    expected = model.predict(volume, axes="CZYX")
    out = ds.predict_file(model, source, tmp_path / "out.zarr", chunks=(2, 32, 32))
    image = read_ome_zarr(out)
    assert image.axes == "CZYX" and image.channel_names == ["DAPI", "GFP"]
    assert image.scales["X"] == pytest.approx(0.1) and image.scales["Z"] == pytest.approx(0.5)
    np.testing.assert_allclose(image.data.compute(), expected, rtol=1e-5, atol=1e-2)
    levels = sorted(p.name for p in out.iterdir() if p.name.isdigit())
    assert levels == ["0"]  # 80 x 72 is below the pyramid's smallest level side: one level


def test_an_ome_zarr_in_gives_the_same_as_the_tiff_and_keeps_metadata(model, volume, tmp_path):
    zarr_in = write_ome_zarr(tmp_path / "in.zarr", volume, "CZYX", scales={"X": 0.2, "Y": 0.2, "Z": 1.0},
                             channel_names=["a", "b"])  # fmt: skip
    expected = model.predict(volume, axes="CZYX")
    as_tiff = ds.predict_file(model, zarr_in, tmp_path / "out.ome.tif", dtype="input")
    image, meta = read_image_meta(as_tiff)
    assert meta.axes == "CZYX" and meta.channel_names == ("a", "b") and meta.scales["X"] == pytest.approx(0.2)
    assert image.dtype == np.float32  # "input" is the OME-Zarr's own float32
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-2)


def test_a_local_cluster_of_two_processes_gives_the_in_process_result(model, source, tmp_path):
    local = ds.predict_file(model, source, tmp_path / "local.ome.tif", chunks=(2, 32, 32), dtype="input")
    spread = ds.predict_file(model, source, tmp_path / "cluster.ome.tif", chunks=(2, 32, 32), workers=2,
                             dtype="input")  # fmt: skip
    np.testing.assert_allclose(tifffile.imread(spread), tifffile.imread(local), rtol=0, atol=1e-3)
    assert read_image_meta(spread)[1].axes == "CZYX"


def test_a_file_too_large_for_memory_is_never_read_whole(model, volume, source, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_io, "available_memory", lambda: 2**20)  # 1 MB: the image and its float copies do not fit

    def read_whole(*_args, **_kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr("denoise_studio.engine.outputs.read_image_meta", read_whole)
    out = ds.predict_file(model, source, tmp_path / "out.ome.tif")
    np.testing.assert_allclose(tifffile.imread(out), model.predict(volume, axes="CZYX"), rtol=1e-5, atol=1e-2)


def test_a_stopped_prediction_leaves_no_file_and_no_temporary(model, source, tmp_path):
    stop = StopRequest()
    stop.set()
    for name in ("out.zarr", "out.ome.tif"):
        with pytest.raises(PredictionStopped):
            ds.predict_file(model, source, tmp_path / name, stop=stop, workers=None)
    assert sorted(os.listdir(tmp_path)) == ["cells.ome.tif"]


def test_the_cli_writes_ome_zarr_and_names_an_unreachable_scheduler(model, source, tmp_path, capsys):
    out = tmp_path / "cli.zarr"
    assert main(["predict", str(model.run_dir), str(source), "--out", str(out), "--chunks", "2,32,32"]) == 0
    assert read_ome_zarr(out).axes == "CZYX"
    status = main(["predict", str(model.run_dir), str(source), "--out", str(tmp_path / "x.zarr"),
                   "--scheduler", "tcp://127.0.0.1:9"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("error: cannot connect to the dask scheduler at tcp://127.0.0.1:9")
    with pytest.raises(SystemExit):
        main(["predict", str(model.run_dir), str(source), "--out", str(out), "--chunks", "2,32"])


def test_joint_models_refuse_block_prediction_clearly(volume, tmp_path, source):
    from tests.conftest import TINY

    joint = ds.train(volume, ds.make_config("n2v", "2d", "fast", {**TINY, "channels": "joint"}), axes="CZYX").model
    with pytest.raises(InputError, match="jointly trained channels predicts in memory only"):
        ds.predict_file(joint, source, tmp_path / "j.tif", workers=1)
    # In memory it works, into an OME-Zarr too.
    out = ds.predict_file(joint, source, tmp_path / "j.zarr")
    assert read_ome_zarr(out).axes == "CZYX"
