"""The command line for autoStructN2V: auto-approve, a given mask, the terminal review, `mask`."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import tifffile
from test_cli import TINY_FLAGS

from denoise_studio import cli
from denoise_studio.cli import EXIT_BAD_INPUT, main
from denoise_studio.engine.mask_extraction import text_grid


@pytest.fixture(scope="module")
def line_noise_tif(tmp_path_factory):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 64)) + np.repeat(rng.normal(size=(64, 1)), 64, axis=1)
    path = tmp_path_factory.mktemp("auto") / "lines.tif"
    tifffile.imwrite(path, (image * 100 + 1000).astype(np.float32))
    return path


def run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(args)
    return status, out.getvalue(), err.getvalue()


def test_auto_approve_runs_both_stages(tmp_path, line_noise_tif):
    status, stdout, _ = run(
        [
            "train",
            str(line_noise_tif),
            "--method",
            "autostructn2v",
            "--auto-approve",
            "--out",
            str(tmp_path),
            *TINY_FLAGS,
        ]
    )
    assert status == 0
    for name in ("config.json", "stage1.pth", "stage2.pth", "mask.npy", "denoised.tif", "history_stage1.csv"):
        assert (tmp_path / name).exists(), name
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["method"] == "autostructn2v" and record["state"] == "done"
    # The grid of the mask that was saved, and its statistics, were printed.
    assert text_grid(np.load(tmp_path / "mask.npy")) in stdout
    assert "kernel 11x11" in stdout and "autoStructN2V complete" in stdout


def test_given_mask_skips_stage1(tmp_path, line_noise_tif):
    mask = np.zeros((1, 3, 3), bool)
    mask[0, 1, :] = True
    np.save(tmp_path / "line.npy", mask)
    out = tmp_path / "run"
    status, _, _ = run(
        ["train", str(line_noise_tif), "--method", "autostructn2v", "--mask", str(tmp_path / "line.npy"),
         "--out", str(out), *TINY_FLAGS]
    )  # fmt: skip
    assert status == 0
    assert not (out / "stage1.pth").exists() and (out / "stage2.pth").exists()
    np.testing.assert_array_equal(np.load(out / "mask.npy"), mask)


def test_without_terminal_or_auto_approve_exits_before_training(tmp_path, line_noise_tif, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    status, _, err = run(["train", str(line_noise_tif), "--method", "autostructn2v", "--out", str(tmp_path / "r")])
    assert status == EXIT_BAD_INPUT and "--auto-approve" in err
    assert not (tmp_path / "r").exists()


def test_terminal_review_regenerates_then_skips(tmp_path, line_noise_tif, monkeypatch):
    answers = iter(["r", "max_pixels=1", "s"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    monkeypatch.setattr(cli.sys, "stdin", type("Terminal", (), {"isatty": staticmethod(lambda: True)})())
    status, stdout, _ = run(
        ["train", str(line_noise_tif), "--method", "autostructn2v", "--out", str(tmp_path), *TINY_FLAGS]
    )
    assert status == 0
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["state"] == "skipped" and record["autostruct"]["extractor"]["max_pixels"] == 1
    assert (tmp_path / "stage1.pth").exists() and not (tmp_path / "stage2.pth").exists()
    assert stdout.count("kernel 11x11") == 2  # shown before and after regenerating


def test_mask_command_extracts_from_a_trained_model(tmp_path, line_noise_tif):
    run_dir = tmp_path / "n2v"
    assert run(["train", str(line_noise_tif), "--out", str(run_dir), "--no-predict", *TINY_FLAGS])[0] == 0
    status, stdout, _ = run(
        ["mask", str(run_dir), str(line_noise_tif), "--set", "max_pixels=5", "--out", str(tmp_path / "m.npy")]
    )
    assert status == 0 and "kernel 11x11" in stdout
    mask = np.load(tmp_path / "m.npy")
    assert mask.shape == (1, 11, 11) and mask[0, 5, 5] and mask.sum() <= 5


def test_autostruct_flags_are_refused_for_n2v(tmp_path, line_noise_tif):
    status, _, err = run(["train", str(line_noise_tif), "--auto-approve", "--out", str(tmp_path / "x")])
    assert status == EXIT_BAD_INPUT and "autostructn2v" in err
