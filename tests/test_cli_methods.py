"""The command line for paired methods, DecoNoising, filters and comparison."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from test_cli import TINY_FLAGS

from denoise_studio.cli import EXIT_BAD_INPUT, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paired")
    rng = np.random.default_rng(0)
    clean = ndimage.gaussian_filter(rng.random((64, 64)), 3)
    clean = (clean - clean.min()) / (clean.max() - clean.min()) * 1000 + 200
    paths = {}
    for name, image in {
        "noisy": clean + rng.normal(0, 80, clean.shape),
        "second": clean + rng.normal(0, 80, clean.shape),
        "clean": clean,
        "shifted": np.roll(clean, 4, axis=0),
    }.items():
        paths[name] = folder / f"{name}.tif"
        tifffile.imwrite(paths[name], image.astype(np.float32))
    return paths


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(args)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("method", "extra"),
    [("care", ["--target", "clean"]), ("n2n", ["--target", "second"]), ("care", ["--target-from", "gaussian:1.5"])],
)
def test_paired_training_writes_a_run(tmp_path, files, method, extra):
    extra = [str(files[e]) if e in files else e for e in extra]
    status, stdout, err = run(
        ["train", str(files["noisy"]), "--method", method, *extra, "--out", str(tmp_path), *TINY_FLAGS]
    )
    assert status == 0, err
    assert (tmp_path / "denoised.tif").exists() and (tmp_path / "model.pth").exists()
    out = tmp_path / "again.tif"
    assert run(["predict", str(tmp_path), str(files["noisy"]), "--out", str(out)])[0] == 0
    np.testing.assert_allclose(tifffile.imread(out), tifffile.imread(tmp_path / "denoised.tif"), rtol=1e-5, atol=1e-3)


def test_misaligned_target_is_one_clear_error(tmp_path, files):
    status, _, err = run(
        ["train", str(files["noisy"]), "--method", "care", "--target", str(files["shifted"]), "--out", str(tmp_path)]
    )
    assert status == EXIT_BAD_INPUT and err.startswith("error: ") and "shifted by" in err and "--register" in err


def test_deconoising_writes_denoised_and_deconvolved(tmp_path, files):
    status, _, err = run(["train", str(files["noisy"]), "--deconv-psf", "1.0", "--out", str(tmp_path), *TINY_FLAGS])
    assert status == 0, err
    assert (tmp_path / "denoised.tif").exists() and (tmp_path / "deconvolved.tif").exists()
    out = tmp_path / "phantom.tif"
    assert run(["predict", str(tmp_path), str(files["noisy"]), "--out", str(out), "--output", "deconvolved"])[0] == 0


def test_filter_and_compare(tmp_path, files):
    smoothed = tmp_path / "smooth.tif"
    assert run(["filter", str(files["noisy"]), "--filter", "gaussian:1.5", "--out", str(smoothed)])[0] == 0
    figure = tmp_path / "figure.png"
    status, stdout, _ = run(
        ["compare", str(files["noisy"]), str(smoothed), "--filter", "median:3", "--reference", str(files["clean"]),
         "--figure", str(figure)]
    )  # fmt: skip
    assert status == 0 and "| smooth |" in stdout and "| median:3 |" in stdout and "PSNR" in stdout
    assert figure.exists() and figure.stat().st_size > 1000
    status, _, err = run(["filter", str(files["noisy"]), "--filter", "wiener:3", "--out", str(tmp_path / "w.tif")])
    assert status == EXIT_BAD_INPUT and "unknown filter" in err
