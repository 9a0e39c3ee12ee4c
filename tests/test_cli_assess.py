"""`denoise-studio assess`: reference-free numbers on the terminal and as JSON, maps, bad input."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

import denoise_studio as ds
from denoise_studio.cli import main
from tests.engine.test_noise_model import clean_image, noisy_of


@pytest.fixture
def pair(tmp_path):
    clean = clean_image(128)
    noisy = noisy_of(clean).astype(np.float32)
    filtered = ndimage.gaussian_filter(noisy, 1.0)
    paths = {"noisy": tmp_path / "noisy.tif", "filtered": tmp_path / "filtered.tif", "second": tmp_path / "two.tif"}
    tifffile.imwrite(paths["noisy"], noisy)
    tifffile.imwrite(paths["filtered"], filtered)
    tifffile.imwrite(paths["second"], noisy_of(clean, seed=7).astype(np.float32))
    return paths, clean, filtered


def test_json_holds_the_mse_estimate_and_maps_are_written(pair, tmp_path, capsys):
    paths, clean, filtered = pair
    code = main(["assess", str(paths["noisy"]), str(paths["filtered"]), "--filter", "gaussian:1.0", "--json",
                 "--maps", str(tmp_path / "fish"), "--data-range", str(float(np.ptp(clean)))])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    true_mse = float(np.mean((filtered - clean) ** 2))
    # A 128-px image: the noise model is measured from the pair itself, so only roughly.
    assert 0.5 * true_mse < record["mse_estimate"] < 2.0 * true_mse
    assert record["psnr_estimate"] == pytest.approx(10 * np.log10(np.ptp(clean) ** 2 / record["mse_estimate"]))
    assert "Monte-Carlo" in record["mse_method"]
    likelihood = tifffile.imread(tmp_path / "fish_likelihood.tif")
    assert likelihood.shape == (128, 128)
    assert tifffile.imread(tmp_path / "fish_residual.tif") == pytest.approx(
        tifffile.imread(paths["noisy"]) - filtered, abs=1e-3)


def test_table_and_second_acquisition(pair, capsys):
    paths, _clean, _filtered = pair
    assert main(["assess", str(paths["noisy"]), str(paths["filtered"]), "--second", str(paths["second"])]) == 0
    out = capsys.readouterr().out
    assert "estimated PSNR" in out and "second acquisition" in out and "residual" in out


def test_with_a_trained_model_its_noise_model_is_used(tmp_path, capsys, tiny_config):
    clean = clean_image(96)
    noisy = noisy_of(clean).astype(np.float32)
    run = ds.train([noisy], tiny_config(), run_dir=tmp_path / "run")
    assert run.model.noise_model is not None
    assert (tmp_path / "run" / "noise_model.json").exists()
    assert ds.load_model(tmp_path / "run").noise_model == run.model.noise_model
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    tifffile.imwrite(tmp_path / "den.tif", run.model.predict(noisy))
    assert main(["assess", str(tmp_path / "noisy.tif"), str(tmp_path / "den.tif"), "--model", str(tmp_path / "run"),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["noise_model"]["gain"] == pytest.approx(run.model.noise_model.gain)
    assert not any("measured from this pair" in note for note in record["notes"])


def test_bad_input_is_one_line(pair, tmp_path, capsys):
    paths, _clean, _filtered = pair
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.random.default_rng(0).random((64, 64), dtype=np.float32))
    assert main(["assess", str(paths["noisy"]), str(small)]) == 2
    assert "differ in shape" in capsys.readouterr().err
    assert main(["assess", str(paths["noisy"]), str(paths["filtered"]), "--filter", "blur:3"]) == 2
    assert "--filter" in capsys.readouterr().err
    assert main(["assess", str(paths["noisy"]), str(paths["filtered"]), "--maps", str(tmp_path / "noisy")]) == 0
    assert main(["assess", str(paths["noisy"]), str(paths["filtered"]), "--maps", str(tmp_path / "noisy")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_compare_with_a_model_adds_the_estimate(tmp_path, capsys, tiny_config):
    clean = clean_image(96)
    noisy = noisy_of(clean).astype(np.float32)
    ds.train([noisy], tiny_config(), run_dir=tmp_path / "run")
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    assert main(["compare", str(tmp_path / "noisy.tif"), "--filter", "gaussian:1.0", "--model",
                 str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "estimated PSNR (dB, no reference)" in out and "Monte-Carlo" in out
