"""The command line, run in-process: train, predict, and one clear line for every bad input."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import tifffile

from denoise_studio.cli import EXIT_BAD_INPUT, main
from denoise_studio.engine.persistence import load_model
from denoise_studio.engine.prediction import Predictor

TINY_FLAGS = [
    "--epochs", "2", "--device", "cpu", "--seed", "1",
    "--set", "patch_size=32", "--set", "patches_per_image=8", "--set", "batch_size=4",
    "--set", "depth=1", "--set", "model.base_features=8", "--set", "training.precision=fp32",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def noisy_tif(workdir, make_image):
    path = workdir / "noisy.tif"
    tifffile.imwrite(path, (make_image((64, 72)) * 1000 + 3000).astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def trained_run(workdir, noisy_tif):
    """One CLI training run shared by the tests of this module: (run_dir, exit status, stdout)."""
    run_dir, out = workdir / "run", io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        status = main(["train", str(noisy_tif), "--out", str(run_dir), *TINY_FLAGS])
    return run_dir, status, out.getvalue()


def assert_one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_train_writes_the_run(trained_run, noisy_tif):
    run_dir, status, stdout = trained_run
    assert status == 0
    assert {"config.json", "model.pth", "denoised.tif", "history.csv"} <= {p.name for p in run_dir.iterdir()}
    record = json.loads((run_dir / "config.json").read_text())
    assert record["method"] == "n2v" and record["mode"] == "2d"
    assert record["config"]["data"]["patch_size"] == 32 and record["config"]["model"]["base_features"] == 8
    assert record["training"]["epochs_run"] == 2 and record["training"]["seed"] == 1
    with open(run_dir / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["val_loss"]) > 0 for r in rows)
    denoised = tifffile.imread(run_dir / "denoised.tif")
    assert denoised.shape == tifffile.imread(noisy_tif).shape and denoised.dtype == np.float32
    assert str(run_dir / "denoised.tif") in stdout
    # The noise measured against the result is stored and printed.
    assert (run_dir / "noise_model.json").exists()
    assert "noise model: gain" in stdout


def test_predict_a_stack(trained_run, workdir, make_image):
    stack_path, out = workdir / "stack.tif", workdir / "pred" / "stack_denoised.tif"
    stack = make_image((5, 40, 56), seed=3) * 1000 + 3000
    tifffile.imwrite(stack_path, stack.astype(np.float32))
    assert main(["predict", str(trained_run[0]), str(stack_path), "--out", str(out), "--tile", "32"]) == 0
    result = tifffile.imread(out)
    assert result.shape == stack.shape and result.dtype == np.float32 and np.isfinite(result).all()
    loaded = load_model(trained_run[0])
    expected = Predictor(loaded.network, loaded.normalization, loaded.mode, tile_size=32).predict(stack)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def write_rgb(path):
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return path


def write_garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    return path


def write_short_stack(path):
    tifffile.imwrite(path, np.random.default_rng(0).random((6, 64, 64), dtype=np.float32))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (lambda d, t: ["train", str(write_rgb(d / "rgb.tif")), "--axes", "YXQ", "--out", str(d / "o1")],
         "invalid axes 'YXQ' (unknown letter Q"),
        (lambda d, t: ["train", str(write_rgb(d / "rgb.tif")), "--axes", "YX", "--out", str(d / "o1")],
         "2 letters for an image of 3 dimensions"),
        (lambda d, t: ["predict", "RUN", str(write_rgb(d / "rgb.tif")), "--out", str(d / "p.tif")],
         "has 3 channels, but the model was trained on 1"),
        (lambda d, t: ["train", str(d / "missing.tif"), "--out", str(d / "o2")], "no such file"),
        (lambda d, t: ["train", str(t), "--out", str(d / "o3"), "--set", "bogus=1"], "bogus: unknown field"),
        (lambda d, t: ["train", str(t), "--out", str(d / "o4"), "--set", "epochs"], "expected key=value"),
        (lambda d, t: ["train", str(t), "--out", str(d / "o5"), "--set", "patch_size=30"], "data.patch_size"),
        (
            lambda d, t: ["train", str(write_short_stack(d / "short.tif")), "--mode", "2.5d", "--out", str(d / "o6")],
            "insufficient stack depth",
        ),
        (lambda d, t: ["train", str(t), "--out", str(write_garbage(d / "taken.txt"))], "is a file, not a folder"),
        (
            lambda d, t: ["train", str(t), "--out", str(d / "o7"), "--set", "neighbourhood_radius=1"]
            + ["--set", "struct_mask=[[[1,1,1],[1,1,1],[1,1,1]]]"],
            "covers the whole replacement neighbourhood",
        ),
        (lambda d, t: ["predict", str(d / "no_model"), str(t), "--out", str(d / "p.tif")], "no config.json"),
        (lambda d, t: ["predict", "RUN", str(write_garbage(d / "bad.tif")), "--out", str(d / "p.tif")], "cannot be"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(argv, message, tmp_path, noisy_tif, trained_run, capsys):
    args = [str(trained_run[0]) if a == "RUN" else a for a in argv(tmp_path, noisy_tif)]
    assert main(args) == EXIT_BAD_INPUT
    assert message in assert_one_error_line(capsys)
    assert not any(p.name.startswith(("o", "p.tif")) for p in tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("flag", ["--tile", "--batch"])
def test_predict_refuses_a_zero_tile_or_batch(flag, trained_run, noisy_tif, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(trained_run[0]), str(noisy_tif), "--out", str(tmp_path / "p.tif"), flag, "0"])
    assert exit_.value.code == EXIT_BAD_INPUT
    assert "must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "p.tif").exists()


def test_existing_output_is_not_overwritten_without_force(trained_run, noisy_tif, tmp_path, capsys):
    out = tmp_path / "existing.tif"
    out.write_bytes(b"precious")
    assert main(["predict", str(trained_run[0]), str(noisy_tif), "--out", str(out)]) == EXIT_BAD_INPUT
    assert "--force" in assert_one_error_line(capsys)
    assert out.read_bytes() == b"precious"
    assert main(["predict", str(trained_run[0]), str(noisy_tif), "--out", str(out), "--force"]) == 0
    assert tifffile.imread(out).shape == tifffile.imread(noisy_tif).shape


def test_existing_run_directory_is_not_overwritten_without_force(trained_run, noisy_tif, capsys):
    run_dir = trained_run[0]
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert main(["train", str(noisy_tif), "--out", str(run_dir), *TINY_FLAGS]) == EXIT_BAD_INPUT
    assert "already exists" in assert_one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_predict_many_files_into_a_folder(trained_run, workdir, make_image, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(2):
        tifffile.imwrite(raw / f"img_{index}.tif", (make_image((40, 48), seed=index) * 1000 + 3000).astype(np.float32))
    (raw / "broken.tif").write_bytes(b"garbage")
    out = tmp_path / "out"
    out.mkdir()
    (out / "img_1_denoised.tif").write_bytes(b"precious")
    run = str(trained_run[0])
    status = main(["predict", run, str(raw / "img_*.tif"), str(raw / "broken.tif"), "--out-dir", str(out)])
    captured = capsys.readouterr()
    assert status == 1  # one file failed; the others were done
    assert "3 files: 1 written, 1 skipped (output exists), 1 failed" in captured.out
    assert "failed: " in captured.err and "broken.tif" in captured.err
    assert (out / "img_1_denoised.tif").read_bytes() == b"precious"
    assert tifffile.imread(out / "img_0_denoised.tif").shape == (40, 48)
    assert main(["predict", run, str(raw / "img_*.tif"), "--out-dir", str(out), "--force", "--tta"]) == 0
    assert "2 files: 2 written" in capsys.readouterr().out
    assert tifffile.imread(out / "img_1_denoised.tif").shape == (40, 48)


def test_several_inputs_need_an_output_folder(trained_run, noisy_tif, tmp_path, capsys):
    argv = ["predict", str(trained_run[0]), str(noisy_tif), str(noisy_tif), "--out", str(tmp_path / "p.tif")]
    assert main(argv) == EXIT_BAD_INPUT
    assert "2 inputs need --out-dir" in assert_one_error_line(capsys)
    assert not (tmp_path / "p.tif").exists()


def test_train_init_continues_a_model_and_refuses_another_network(trained_run, noisy_tif, tmp_path, capsys):
    run = str(trained_run[0])
    out = tmp_path / "continued"
    # TINY_FLAGS without its network settings: the network is the model's.
    flags = ["--epochs", "1", "--device", "cpu", "--set", "patch_size=32", "--set", "patches_per_image=8"]
    assert main(["train", str(noisy_tif), "--init", run, "--out", str(out), "--no-predict", *flags]) == 0
    continued = load_model(out)
    assert continued.config.model == load_model(run).config.model
    assert continued.summary["initialized_from"] == run
    assert continued.normalization == load_model(run).normalization
    capsys.readouterr()
    argv = ["train", str(noisy_tif), "--init", run, "--out", str(tmp_path / "x"), "--set", "depth=3"]
    assert main(argv) == EXIT_BAD_INPUT
    assert "--set depth: the network comes from --init" in assert_one_error_line(capsys)
    assert main(["train", str(noisy_tif), "--renormalize", "--out", str(tmp_path / "y")]) == EXIT_BAD_INPUT
    assert "--renormalize goes with --init" in assert_one_error_line(capsys)


def test_adapt_tunes_the_gains_on_an_image_and_denoises_it(trained_run, workdir, make_image, tmp_path, capsys):
    run = str(trained_run[0])
    other = workdir / "other.tif"
    tifffile.imwrite(other, (make_image((64, 64), seed=9) * 3000 + 9000).astype(np.uint16))
    out = tmp_path / "adapted"
    capsys.readouterr()
    assert main(["adapt", run, str(other), "--out", str(out), "--max-time", "3", "--seed", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "GainTuning complete" in stdout and "held-out loss" in stdout
    assert {"config.json", "model.pth", "denoised.tif"} <= {p.name for p in out.iterdir()}
    adapted = load_model(out)
    assert adapted.summary["adapted_from"] == run and adapted.config.model == load_model(run).config.model
    assert main(["adapt", run, str(other), "--out", str(out), "--max-time", "3"]) == EXIT_BAD_INPUT
    assert "already exists" in assert_one_error_line(capsys)
    assert main(["adapt", run, str(other), "--out", run, "--force", "--max-time", "3"]) == EXIT_BAD_INPUT
    assert "another folder" in assert_one_error_line(capsys)
    # The image adapted to is an input of the run: a run folder holding it is never cleared.
    inside = out / "denoised.tif"
    before = inside.read_bytes()
    assert main(["adapt", run, str(inside), "--out", str(out), "--force", "--max-time", "3"]) == EXIT_BAD_INPUT
    assert inside.read_bytes() == before
    capsys.readouterr()
    assert load_model(run).summary.get("adapted_from") is None, "the source run is untouched"


def test_train_sbd_on_clean_images_with_the_noise_of_the_input(workdir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    clean = [(500 + 300 * np.sin(xx / (5 + k)) * np.cos(yy / (7 + k))).astype(np.float32) for k in range(2)]
    clean_files = [tmp_path / f"clean{k}.tif" for k in range(2)]
    for path, image in zip(clean_files, clean, strict=True):
        tifffile.imwrite(path, image)
    noisy = tmp_path / "target.tif"
    tifffile.imwrite(noisy, (3.0 * rng.poisson(clean[0] / 3.0) + rng.normal(0, 4, clean[0].shape)).astype(np.float32))
    out = tmp_path / "sbd"
    flags = [flag for flag in TINY_FLAGS if flag != "depth=1"]
    flags = [flag for i, flag in enumerate(flags) if not (flag == "--set" and flags[i + 1].startswith("--"))]
    argv = ["train", str(noisy), "--method", "sbd", "--clean", *map(str, clean_files), "--out", str(out), *flags]
    assert main([*argv, "--field-of-view", "40"]) == 0
    stdout = capsys.readouterr().out
    assert f"simulated noise: from {noisy}" in stdout
    model = load_model(out)
    assert model.method == "sbd" and model.config.simulation.gain == pytest.approx(3.0, rel=0.25)
    assert model.config.model.depth == 2, "40 px across needs two levels"
    assert (out / "denoised.tif").exists(), "the input (not the clean images) is denoised"
    assert tifffile.imread(out / "denoised.tif").shape == clean[0].shape
    # From a run folder's noise model, with a setting of the user's over it.
    other = tmp_path / "sbd2"
    argv = ["train", str(noisy), "--method", "sbd", "--clean", str(clean_files[1]), "--noise-model", str(out),
            "--out", str(other), "--no-predict", "--set", "row_sigma=2", *TINY_FLAGS]  # fmt: skip
    assert main(argv) == 0
    assert load_model(other).config.simulation.row_sigma == 2.0
    assert load_model(other).config.simulation.noise_source == str(out)
    capsys.readouterr()
    assert main(["train", str(noisy), "--method", "sbd", "--out", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    assert "--clean" in assert_one_error_line(capsys)
    assert main(["train", str(noisy), "--clean", str(noisy), "--out", str(tmp_path / "y")]) == EXIT_BAD_INPUT
    assert "belong to --method sbd" in assert_one_error_line(capsys)
    argv = ["train", str(noisy), "--method", "sbd", "--clean", str(noisy), "--field-of-view", "40", "--set", "depth=3",
            "--out", str(tmp_path / "z")]  # fmt: skip
    assert main(argv) == EXIT_BAD_INPUT
    assert "drop --set depth" in assert_one_error_line(capsys)
