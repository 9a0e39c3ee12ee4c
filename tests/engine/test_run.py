"""The one orchestration (engine/run.py) and the public API over it: every step once, nothing lost."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import denoise_studio as ds
from denoise_studio.engine import run as run_module
from denoise_studio.engine import targets as targets_module
from denoise_studio.engine import training as training_module
from denoise_studio.engine.events import RunState, StopRequest
from denoise_studio.engine.persistence import LOCK_FILE, ModelFileError, RunFolderError, load_model
from denoise_studio.engine.prediction import Predictor
from denoise_studio.engine.run import Approve, Regenerate, SkipStage2
from denoise_studio.engine.unet import UNet


@pytest.fixture
def noisy(make_image):
    return make_image((64, 64), seed=3)


@pytest.fixture
def tiny(tiny_settings):
    def factory(method: str = "n2v", mode: str = "2d", **extra):
        return ds.make_config(method, mode, "fast", {**tiny_settings, **extra})

    return factory


def test_the_api_trains_loads_and_predicts(tmp_path, noisy, tiny):
    run = ds.train([noisy], tiny(), run_dir=tmp_path / "run")
    assert run.state == RunState.COMPLETE and run.model is not None
    assert [row["epoch"] for row in run.history] == [1, 2] and run.summary["steps"] > 0
    assert {"config.json", "model.pth", "history.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released when the run ended
    model = ds.load_model(tmp_path / "run")
    denoised = model.predict(noisy)
    assert denoised.shape == noisy.shape and denoised.dtype == np.float32
    np.testing.assert_allclose(denoised, run.model.predict(noisy), atol=1e-5)


def test_make_config_takes_any_field_by_keyword_and_names_bad_fields():
    config = ds.make_config("n2v2", mode="2d", preset="fast", max_time=30, learning_rate=5e-4)
    assert config.training.max_time == 30 and config.training.learning_rate == 5e-4
    assert config.masking.strategy == "median"  # N2V2's own defaults survive the overrides
    assert isinstance(ds.make_config("autostructn2v", max_time=5), ds.AutoStructConfig)
    with pytest.raises(ds.ConfigError) as caught:
        ds.make_config("n2v", patch_size=72, depth=4)
    # One check about two fields gives an issue for each, so a face marks both without reading the text.
    assert caught.value.fields == ["data.patch_size", "model.depth"]
    assert "must be a multiple of 16" in caught.value.issues[0][1]
    with pytest.raises(ds.ConfigError) as caught:
        ds.make_config("autostructn2v", overrides={"stage2.patch_size": 72, "stage2.depth": 4})
    assert caught.value.fields == ["stage2.data.patch_size", "stage2.model.depth"]
    assert str(caught.value).startswith("stage2.data.patch_size (72) must be a multiple of 16")


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, noisy, tiny):
    folder = tmp_path / "run"
    folder.mkdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / LOCK_FILE).write_text(str(alive.pid))
        with pytest.raises(RunFolderError, match="another training"):
            ds.train(noisy, tiny(), run_dir=folder)
        assert not (folder / "config.json").exists()
    finally:
        alive.kill()
        alive.wait()
    # A lock left by a killed run is taken over.
    run = ds.train(noisy, tiny(), run_dir=folder)
    assert run.model is not None and not (folder / LOCK_FILE).exists()


def test_two_runs_at_once_on_one_folder_cannot_both_write(tmp_path, noisy, tiny):
    folder = tmp_path / "run"
    first = run_module.TrainingRun(tiny(), noisy, run_dir=folder)
    first._folder.acquire()  # the first run holds the folder (as while it trains)
    try:
        with pytest.raises(RunFolderError):
            ds.train(noisy, tiny(), run_dir=folder)
    finally:
        first._folder.release()


def test_overwrite_clears_an_old_run_and_never_an_input(tmp_path, noisy, tiny, tiny_settings):
    folder = tmp_path / "run"
    ds.train(noisy, ds.make_config("autostructn2v", overrides=tiny_settings), run_dir=folder)
    assert (folder / "stage1.pth").exists()
    with pytest.raises(RunFolderError, match="already exists"):
        ds.train(noisy, tiny(), run_dir=folder)
    (folder / "notes.txt").write_text("mine")
    ds.train(noisy, tiny(), run_dir=folder, overwrite=True)
    names = {p.name for p in folder.iterdir()}
    assert "stage1.pth" not in names and "history_stage1.csv" not in names and "mask.npy" not in names
    assert {"model.pth", "config.json", "notes.txt"} <= names  # a file the run did not write is left alone
    # An input inside the folder, named like a run output, is refused rather than deleted.
    import tifffile

    tifffile.imwrite(folder / "denoised.tif", noisy)
    with pytest.raises(RunFolderError, match="is an input"):
        ds.train(str(folder / "denoised.tif"), tiny(), run_dir=folder, overwrite=True)
    assert (folder / "denoised.tif").exists()


@pytest.mark.parametrize("method", ["n2v", "autostructn2v"])
def test_stop_before_the_first_step_keeps_no_model(tmp_path, noisy, tiny, method):
    stop = StopRequest()
    stop.set()
    folder = tmp_path / "run"
    run = ds.train(noisy, tiny(method), run_dir=folder, stop=stop)
    assert run.model is None and run.state == RunState.STOPPED
    assert "no model was kept" in run.message
    assert [p.name for p in folder.iterdir()] == []
    with pytest.raises(ModelFileError):
        load_model(folder)


def test_a_killed_run_does_not_claim_it_completed(tmp_path, noisy, tiny, monkeypatch):
    monkeypatch.setattr(training_module, "CHECKPOINT_INTERVAL", 0.0)
    folder = tmp_path / "run"
    seen = []

    def look(event):
        if event.kind == "epoch":
            seen.append(json.loads((folder / "config.json").read_text())["training"]["stop_reason"])

    ds.train(noisy, tiny(), run_dir=folder, callback=look)
    assert seen[0] == "interrupted"  # what a SIGKILL at that moment would leave
    assert json.loads((folder / "config.json").read_text())["training"]["stop_reason"] == "completed"


def test_a_target_is_checked_and_aligned_once(tmp_path, make_image, tiny, monkeypatch):
    noisy, clean = make_image((64, 64), seed=1), make_image((64, 64), seed=1, sigma=0.0)
    calls = []
    original = targets_module.align_target
    monkeypatch.setattr(targets_module, "align_target", lambda *a, **k: calls.append(1) or original(*a, **k))
    run = ds.train(noisy, tiny("care"), targets=clean, run_dir=tmp_path / "run")
    assert run.model is not None and len(calls) == 1


def test_deconoising_gives_both_outputs_from_one_forward_pass(tmp_path, noisy, tiny, monkeypatch):
    run = ds.train(noisy, tiny("n2v", psf_sigma=1.0), run_dir=tmp_path / "run")
    model = run.model
    assert model.outputs == ("denoised", "deconvolved")
    passes = []
    forward = UNet.forward
    monkeypatch.setattr(UNet, "forward", lambda self, x: passes.append(1) or forward(self, x))
    outputs = model.predict_outputs(noisy)
    assert len(passes) == 1  # one 64x64 tile, one pass of the U-Net for both outputs
    monkeypatch.setattr(UNet, "forward", forward)
    alone = {
        name: Predictor(model.network, model.normalization, "2d", output=name).predict(noisy)
        for name in ("denoised", "deconvolved")
    }
    for name in alone:
        np.testing.assert_allclose(outputs[name], alone[name], atol=1e-5)
    assert not np.allclose(outputs["denoised"], outputs["deconvolved"])


def test_review_hooks_regenerate_edit_and_skip(tmp_path, noisy, tiny_settings):
    config = ds.make_config("autostructn2v", overrides=tiny_settings)
    requests = []
    edited = np.zeros((1, 3, 3), dtype=bool)
    edited[0, 1, :] = True

    def review(request):
        requests.append(request)
        if len(requests) == 1:
            return Regenerate(request.extractor.model_copy(update={"max_pixels": 3}))
        return Approve(edited)

    run = ds.train(noisy, config, run_dir=tmp_path / "a", review=review)
    assert len(requests) == 2 and requests[1].extractor.max_pixels == 3
    assert requests[1].extraction.active_pixels <= 3
    assert np.array_equal(run.model.mask, edited) and set(run.model.stage_networks) == {"stage1", "stage2"}
    assert np.array_equal(ds.load_model(tmp_path / "a").mask, edited)
    # The two stages' losses are not comparable: the card says whose loss it shows.
    assert "Best val loss (stage 2)" in [label for label, _value in run.model.summary_lines()]

    run = ds.train(noisy, config, run_dir=tmp_path / "b", review=lambda _request: SkipStage2())
    assert run.state == RunState.COMPLETE and set(run.model.stage_networks) == {"stage1"}
    assert run.model.network is run.model.stage_networks["stage1"]


def test_a_chosen_weights_file_is_honoured_for_autostruct(tmp_path, noisy, tiny_settings):
    config = ds.make_config("autostructn2v", overrides=tiny_settings)
    ds.train(noisy, config, run_dir=tmp_path / "run")
    model = ds.load_model(tmp_path / "run")
    other = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in model.network.state_dict().items()}
    torch.save(other, tmp_path / "zeros.pth")
    chosen = ds.load_model(tmp_path / "run", weights=tmp_path / "zeros.pth")
    assert all(float(v.abs().sum()) == 0 for v in chosen.network.state_dict().values() if v.is_floating_point())
    assert not all(float(v.abs().sum()) == 0 for v in model.network.state_dict().values())


@pytest.mark.parametrize("damage", ["nan", "inf", "integer"])
def test_damaged_weights_are_refused_at_load(tmp_path, noisy, tiny, damage):
    ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    path = tmp_path / "run" / "model.pth"
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    if damage == "integer":
        state[key] = state[key].to(torch.int32)
    else:
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float(damage)
    torch.save(state, path)
    with pytest.raises(ModelFileError, match="NaN or Inf|floating point"):
        ds.load_model(tmp_path / "run")


def test_predict_file_streams_and_never_replaces_its_input(tmp_path, noisy, tiny):
    import tifffile

    run = ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.stack([noisy, noisy]), photometric="minisblack")
    before = source.read_bytes()
    with pytest.raises(ds.InputError, match="input image itself"):
        ds.predict_file(run.model, source, source, overwrite=True)
    assert source.read_bytes() == before
    out = ds.predict_file(run.model, source, tmp_path / "out.tif")
    assert tifffile.imread(out).shape == (2, 64, 64)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~_umask()
    with pytest.raises(FileExistsError):
        ds.predict_file(run.model, source, out)


def test_run_files_get_normal_permissions(tmp_path, noisy, tiny):
    ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    for name in ("config.json", "model.pth", "history.csv"):
        assert stat.S_IMODE(os.stat(tmp_path / "run" / name).st_mode) == 0o666 & ~_umask(), name


def test_extract_mask_works_on_any_n2v_model(tmp_path, noisy, tiny):
    run = ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    result = ds.extract_mask(run.model, noisy, max_pixels=5)
    assert result.mask.ndim == 3 and result.mask.sum() <= 5
    with pytest.raises(ds.ConfigError, match="extractor.max_pixels"):
        ds.extract_mask(run.model, noisy, max_pixels=0)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"weights": "model.pth"}, "weights must map stage1/stage2"),
        ({"weights": 123}, "weights must map stage1/stage2"),
        ({"final_stage": ["stage2"]}, "final_stage must be"),
        ({"mask": [[[1, 0], [1]]]}, "struct mask is damaged"),
        ({"weights": {"stage1": "../../outside.pth", "stage2": "stage2.pth"}}, "inside the run folder"),
    ],
)
def test_hand_edited_autostruct_files_give_a_clear_error(tmp_path, noisy, tiny_settings, edit, message):
    folder = tmp_path / "run"
    ds.train(noisy, ds.make_config("autostructn2v", overrides=tiny_settings), run_dir=folder)
    record = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**record, **edit}))
    with pytest.raises(ModelFileError, match=message):
        ds.load_model(folder)


def test_a_model_whose_output_overflows_is_refused_not_written(tmp_path, noisy, tiny):
    from denoise_studio.engine.prediction import NonFiniteOutputError

    run = ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    with torch.no_grad():
        for parameter in run.model.network.parameters():
            parameter.mul_(1e30)  # finite weights whose output is not
    with pytest.raises(NonFiniteOutputError, match="NaN or Inf"):
        run.model.predict(noisy)
    with pytest.raises(NonFiniteOutputError):
        ds.extract_mask(run.model, noisy)
    import tifffile

    tifffile.imwrite(tmp_path / "in.tif", noisy)
    with pytest.raises(NonFiniteOutputError):
        ds.predict_file(run.model, tmp_path / "in.tif", tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_a_huge_configuration_is_refused_with_the_figure_before_training(noisy, tiny):
    config = tiny(patch_size=512, base_features=256, depth=4, batch_size=512)
    with pytest.raises(ds.ConfigError, match=r"needs about [\d.]+ GB of memory") as caught:
        ds.train(noisy, config)
    assert "training.batch_size" in caught.value.fields


@pytest.mark.parametrize("method", ["n2v", "care", "autostructn2v"])
def test_run_folders_written_before_the_restructuring_still_load(method):
    import tifffile

    folder = Path(__file__).resolve().parents[1] / "data" / "runs_190f2ae"
    model = ds.load_model(folder / method)
    noisy = tifffile.imread(folder / "noisy.tif")
    assert model.method == method
    outputs = model.predict_outputs(noisy)
    assert all(array.shape == noisy.shape and np.isfinite(array).all() for array in outputs.values())
    if method == "n2v":  # trained with DecoNoising
        assert model.outputs == ("denoised", "deconvolved")
    if method == "care":
        assert model.config.masking is None and model.target_normalization is not None
    if method == "autostructn2v":
        assert set(model.stage_networks) == {"stage1", "stage2"} and model.mask is not None


def test_an_old_run_survives_a_new_run_that_is_refused(tmp_path, noisy, tiny, make_image):
    folder = tmp_path / "run"
    ds.train(noisy, tiny(), run_dir=folder)
    before = (folder / "model.pth").read_bytes()
    with pytest.raises(ds.InputError):  # a target of another shape: refused before the folder is touched
        ds.train(noisy, tiny("care"), targets=make_image((32, 32)), run_dir=folder, overwrite=True)
    assert (folder / "model.pth").read_bytes() == before and ds.load_model(folder).method == "n2v"
    assert not (folder / LOCK_FILE).exists()


def test_overwrite_never_clears_a_folder_that_is_not_a_run(tmp_path, noisy, tiny):
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "denoised_fiji.tif").write_bytes(b"someone else's result")
    with pytest.raises(RunFolderError, match="no denoise-studio run"):
        ds.train(noisy, tiny(), run_dir=folder, overwrite=True)
    assert (folder / "denoised_fiji.tif").read_bytes() == b"someone else's result"
    assert not (folder / LOCK_FILE).exists()


def test_a_mask_stage2_cannot_use_is_refused_at_the_review(tmp_path, noisy, tiny_settings):
    config = ds.make_config("autostructn2v", overrides=tiny_settings)
    run = run_module.TrainingRun(config, noisy, run_dir=tmp_path / "r")
    run.start()
    assert run.awaiting_review
    full = np.ones((1, 3, 3), dtype=bool)  # covers the whole radius-1 replacement neighbourhood of the Fast preset
    with pytest.raises(ds.ConfigError, match="stage2.masking.struct_mask covers the whole replacement"):
        run.decide(Approve(full))
    assert run.awaiting_review and (tmp_path / "r" / LOCK_FILE).exists()  # still at the review, folder held
    run.decide(SkipStage2())
    assert run.state == RunState.COMPLETE and not (tmp_path / "r" / LOCK_FILE).exists()


def test_a_failing_review_hook_frees_the_folder(tmp_path, noisy, tiny_settings):
    def hook(_request):
        raise EOFError("Ctrl-D at the prompt")

    with pytest.raises(EOFError):
        ds.train(noisy, ds.make_config("autostructn2v", overrides=tiny_settings), run_dir=tmp_path / "r", review=hook)
    assert not (tmp_path / "r" / LOCK_FILE).exists()
    assert ds.train(noisy, ds.make_config("autostructn2v", overrides=tiny_settings), run_dir=tmp_path / "r",
                    overwrite=True).model is not None  # fmt: skip


def test_a_given_mask_stopped_before_its_first_step_keeps_nothing(tmp_path, noisy, tiny_settings):
    stop = StopRequest()
    stop.set()
    line = np.zeros((1, 3, 3), dtype=bool)
    line[0, 1, :] = True
    config = ds.make_config("autostructn2v", overrides={**tiny_settings, "stage2.neighbourhood_radius": 2})
    run = ds.train(noisy, config, run_dir=tmp_path / "r", mask=line, stop=stop)
    assert run.model is None and "no model was kept" in run.message
    assert [p.name for p in (tmp_path / "r").iterdir()] == []
