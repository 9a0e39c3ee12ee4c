"""Hostile cases on the command line: nothing lost, nothing silent (see docs/reliability.md)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import tifffile
from test_cli import TINY_FLAGS

from denoise_studio.cli import EXIT_BAD_INPUT, EXIT_STOPPED, main
from denoise_studio.cli.progress import ProgressPrinter
from denoise_studio.engine.events import RunState, StateEvent


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(args))
    assert "Traceback" not in err.getvalue()
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_image):
    folder = tmp_path_factory.mktemp("hostile")
    noisy = folder / "noisy.tif"
    tifffile.imwrite(noisy, (make_image((64, 64)) * 1000 + 3000).astype(np.uint16))
    status, _out, _err = run_cli("train", str(noisy), "--out", str(folder / "run"), *TINY_FLAGS)
    assert status == 0
    return folder, noisy, folder / "run"


def test_compare_never_overwrites_a_figure_or_an_input(files):
    folder, noisy, run = files
    before = noisy.read_bytes()
    status, _out, err = run_cli("compare", str(noisy), str(run / "denoised.tif"), "--figure", str(noisy), "--force")
    assert status == EXIT_BAD_INPUT and "is an input" in err and noisy.read_bytes() == before
    figure = folder / "figure.png"
    figure.write_text("keep me")
    status, _out, err = run_cli("compare", str(noisy), str(run / "denoised.tif"), "--figure", str(figure))
    assert status == EXIT_BAD_INPUT and "already exists" in err and figure.read_text() == "keep me"
    status, out, _err = run_cli("compare", str(noisy), str(run / "denoised.tif"), "--figure", str(figure), "--force")
    assert status == 0 and figure.read_bytes().startswith(b"\x89PNG") and f"figure: {figure}" in out


def test_mask_out_without_suffix_checks_and_reports_the_real_file(files):
    folder, noisy, run = files
    existing = folder / "m.npy"
    existing.write_text("keep me")
    status, _out, err = run_cli("mask", str(run), str(noisy), "--out", str(folder / "m"))
    assert status == EXIT_BAD_INPUT and "m.npy already exists" in err and existing.read_text() == "keep me"
    status, out, _err = run_cli("mask", str(run), str(noisy), "--out", str(folder / "fresh"))
    assert status == 0 and f"mask: {folder / 'fresh.npy'}" in out
    assert np.load(folder / "fresh.npy").dtype == bool


@pytest.mark.parametrize("command", ["predict", "filter"])
def test_force_never_replaces_the_input(files, command):
    _folder, noisy, run = files
    before = noisy.read_bytes()
    if command == "predict":
        args = ["predict", str(run), str(noisy)]
    else:
        args = ["filter", str(noisy), "--filter", "gaussian:1"]
    status, _out, err = run_cli(*args, "--out", str(noisy), "--force")
    assert status == EXIT_BAD_INPUT and "input" in err
    assert noisy.read_bytes() == before


def test_a_second_train_on_the_same_folder_is_refused_while_the_first_runs(files):
    folder, noisy, _run = files
    out = folder / "busy"
    first = subprocess.Popen(
        [sys.executable, "-m", "denoise_studio.cli", "train", str(noisy), "--out", str(out), *TINY_FLAGS,
         "--epochs", "100000", "--max-time", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # Wait for the first checkpoint: the run holds the folder and has a model to keep.
        while not (out / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / ".run.lock").exists()
        status, _out, err = run_cli("train", str(noisy), "--out", str(out), "--force", *TINY_FLAGS)
        assert status == EXIT_BAD_INPUT and "another training" in err
    finally:
        first.send_signal(signal.SIGTERM)  # SIGTERM stops like Ctrl-C: the best model is kept
        assert first.wait(timeout=60) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["training"]["stop_reason"] == "stopped"
    assert not (out / ".run.lock").exists()


def test_stop_before_the_first_step_keeps_nothing(files, monkeypatch):
    folder, noisy, _run = files
    from denoise_studio.engine import events

    monkeypatch.setattr(events.StopRequest, "requested", property(lambda self: True))
    status, out, _err = run_cli("train", str(noisy), "--out", str(folder / "none"), *TINY_FLAGS)
    assert status == EXIT_STOPPED and "no model was kept" in out
    assert list((folder / "none").iterdir()) == []


def test_hand_edited_model_files_give_one_line(files, tmp_path):
    _folder, noisy, run = files
    damaged = tmp_path / "run"
    damaged.mkdir()
    (damaged / "model.pth").write_bytes((run / "model.pth").read_bytes())
    record = json.loads((run / "config.json").read_text())
    for weights in (123, ["model.pth"], "../../etc/passwd"):
        (damaged / "config.json").write_text(json.dumps({**record, "weights": weights}))
        status, _out, err = run_cli("predict", str(damaged), str(noisy), "--out", str(tmp_path / "o.tif"))
        assert status == EXIT_BAD_INPUT and "weights" in err, weights
    (damaged / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    status, _out, err = run_cli("predict", str(damaged), str(noisy), "--out", str(tmp_path / "o.tif"))
    assert status == EXIT_BAD_INPUT and "corrupt" in err


def test_a_seed_out_of_range_and_a_huge_configuration_are_refused_before_training(files, tmp_path):
    _folder, noisy, _run = files
    status, _out, err = run_cli("train", str(noisy), "--out", str(tmp_path / "a"), "--seed", str(10**20))
    assert status == EXIT_BAD_INPUT and "training.seed" in err
    started = time.monotonic()
    status, _out, err = run_cli(
        "train", str(noisy), "--out", str(tmp_path / "b"), "--set", "patch_size=512", "--set", "base_features=256",
        "--set", "depth=4", "--set", "batch_size=512",
    )  # fmt: skip
    assert status == EXIT_BAD_INPUT and "GB of memory" in err and "training.batch_size" in err
    assert time.monotonic() - started < 10


def test_the_autostruct_state_messages_are_printed():
    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    printer(StateEvent("stage2", RunState.TRAINING, "training stage 2 (structN2V)"))
    printer(StateEvent("done", RunState.COMPLETE, "autoStructN2V complete"))
    text = stream.getvalue()
    assert "[stage2] training stage 2 (structN2V)" in text and "[done] autoStructN2V complete" in text
    assert "epoch 0/0" not in text


def test_a_full_disk_is_one_line(files, monkeypatch, tmp_path):
    import errno

    _folder, noisy, run = files

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("denoise_studio.engine.io.tifffile.TiffWriter.write", full)
    status, _out, err = run_cli("predict", str(run), str(noisy), "--out", str(tmp_path / "o.tif"))
    # Progress lines may come first (the image is predicted, then written); the error is one line.
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error")]
    assert status == 1 and errors == [f"error: no space left on the device ({tmp_path / 'o.tif'})"]
    assert os.listdir(tmp_path) == []
