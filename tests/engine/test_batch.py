"""Many files with one model: inputs from files, folders and patterns; skip, overwrite, failures, stop."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import denoise_studio as ds
from denoise_studio.engine.batch import FAILED, NOT_RUN, SKIPPED, WRITTEN, expand_inputs, output_targets
from denoise_studio.engine.events import StateEvent, StopRequest
from denoise_studio.engine.io import InputError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tests.conftest import TINY, synthetic_image

    image = synthetic_image((64, 72), seed=1) * 100 + 500
    return ds.train(image, ds.make_config("n2v", "2d", "fast", dict(TINY)), run_dir=None).model


@pytest.fixture
def folder(tmp_path, make_image):
    """raw/: three small TIFFs (one of them a stack) and a text file that is not an image."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for index, shape in enumerate([(40, 48), (36, 52), (2, 40, 40)]):
        tifffile.imwrite(raw / f"cell_{index}.tif", (make_image(shape, seed=index) * 100 + 500).astype(np.float32))
    (raw / "notes.txt").write_text("not an image")
    return raw


def test_inputs_come_from_files_folders_and_patterns_in_order_each_once(folder):
    files = sorted(folder.glob("*.tif"))
    assert expand_inputs([folder]) == files
    assert expand_inputs([str(folder / "cell_[02].tif")]) == [files[0], files[2]]
    assert expand_inputs([files[1], folder]) == [files[1], files[0], files[2]]  # each once, first mention wins
    assert expand_inputs([str(folder.parent / "**" / "cell_1.tif")]) == [files[1]]


def test_inputs_that_name_nothing_say_so(folder, tmp_path):
    with pytest.raises(InputError, match="no such file, and no image file matches"):
        expand_inputs([tmp_path / "missing_*.tif"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        expand_inputs([empty])


def test_outputs_are_named_after_their_inputs_and_never_collide(tmp_path):
    sources = [tmp_path / "a" / "cell.ome.tif", tmp_path / "b" / "cell.tif", tmp_path / "big.ome.zarr"]
    targets = output_targets(sources, tmp_path / "out")
    assert [t.name for t in targets] == ["a_cell_denoised.tif", "b_cell_denoised.tif", "big_denoised.zarr"]
    assert [t.name for t in output_targets(sources[2:], tmp_path / "out", zarr=False)] == ["big_denoised.tif"]


def test_every_file_is_predicted_into_the_folder(model, folder, tmp_path):
    events = []
    result = ds.predict_files(model, [folder], tmp_path / "out", callback=events.append)
    assert [o.status for o in result.outcomes] == [WRITTEN] * 3 and not result.stopped
    for outcome in result.outcomes:
        image = tifffile.imread(outcome.source)
        np.testing.assert_allclose(tifffile.imread(outcome.target), model.predict(image), rtol=1e-5, atol=1e-4)
    messages = [e.message for e in events if isinstance(e, StateEvent)]
    assert messages[0] == "[1/3] cell_0.tif -> cell_0_denoised.tif"
    assert messages[-1].startswith("[3/3] cell_2.tif: written")
    assert result.summary() == "3 files: 3 written"


def test_existing_outputs_are_skipped_unless_overwriting(model, folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    precious = out / "cell_1_denoised.tif"
    precious.write_bytes(b"precious")
    result = ds.predict_files(model, [folder], out)
    assert [o.status for o in result.outcomes] == [WRITTEN, SKIPPED, WRITTEN]
    assert precious.read_bytes() == b"precious"
    assert "1 skipped (output exists)" in result.summary()
    again = ds.predict_files(model, [folder], out, overwrite=True)
    assert [o.status for o in again.outcomes] == [WRITTEN] * 3
    assert tifffile.imread(precious).shape == (36, 52)


def test_a_failing_file_is_reported_and_the_rest_go_on(model, folder, tmp_path):
    (folder / "cell_1.tif").write_bytes(b"not a tiff at all")
    tifffile.imwrite(folder / "rgb.tif", np.zeros((32, 32, 3), np.uint8))  # 3 channels for a 1-channel model
    result = ds.predict_files(model, [folder], tmp_path / "out")
    status = {o.source.name: o.status for o in result.outcomes}
    assert status == {"cell_0.tif": WRITTEN, "cell_1.tif": FAILED, "cell_2.tif": WRITTEN, "rgb.tif": FAILED}
    reasons = {o.source.name: o.error for o in result.failed}
    assert "cannot be read" in reasons["cell_1.tif"] or "cell_1.tif" in reasons["cell_1.tif"]
    assert "channels" in reasons["rgb.tif"]
    assert not (tmp_path / "out" / "cell_1_denoised.tif").exists()
    assert result.summary() == "4 files: 2 written, 2 failed"


def test_stopping_writes_nothing_more(model, folder, tmp_path):
    stop = StopRequest()

    def stop_after_first(event):
        if isinstance(event, StateEvent) and "written" in event.message:
            stop.set()

    result = ds.predict_files(model, [folder], tmp_path / "out", callback=stop_after_first, stop=stop)
    assert [o.status for o in result.outcomes] == [WRITTEN, NOT_RUN, NOT_RUN] and result.stopped
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cell_0_denoised.tif"]


def test_tta_reaches_every_file(model, folder, tmp_path):
    result = ds.predict_files(model, [folder / "cell_0.tif"], tmp_path / "out", tta=True)
    image = tifffile.imread(folder / "cell_0.tif")
    np.testing.assert_allclose(
        tifffile.imread(result.outcomes[0].target), model.predict(image, tta=True), rtol=1e-5, atol=1e-4
    )


def test_an_output_folder_that_is_the_input_folder_takes_no_outputs_as_inputs(model, folder):
    first = ds.predict_files(model, [folder], folder)
    assert [o.status for o in first.outcomes] == [WRITTEN] * 3
    again = ds.predict_files(model, [folder], folder)  # its own results are not new inputs
    assert [o.source.name for o in again.outcomes] == ["cell_0.tif", "cell_1.tif", "cell_2.tif"]
    assert [o.status for o in again.outcomes] == [SKIPPED] * 3


def test_an_output_that_would_replace_an_input_is_refused(model, folder, tmp_path):
    source = folder / "cell_0.tif"
    named_like_an_output = tmp_path / "out" / "cell_0_denoised.tif"
    named_like_an_output.parent.mkdir()
    named_like_an_output.write_bytes(source.read_bytes())  # an input that a result would replace
    result = ds.predict_files(model, [source, named_like_an_output], tmp_path / "out", overwrite=True)
    assert result.outcomes[0].status == FAILED and "would replace the input" in result.outcomes[0].error
    assert named_like_an_output.read_bytes() == source.read_bytes()
