"""BioImage Model Zoo export and import: bioimageio.core's own test passes, the zip runs without this
package's code, loads back as the same model, and everything it cannot do is refused clearly."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import denoise_studio as ds
from denoise_studio.engine import bmz
from denoise_studio.engine.bmz import BmzError, architecture_source
from denoise_studio.engine.persistence import ModelFileError

pytest.importorskip("bioimageio.core", reason="BioImage Model Zoo export needs bioimageio.core (the bmz extra)")


@pytest.fixture(scope="module")
def image():
    from tests.conftest import synthetic_image

    return synthetic_image((72, 80), seed=1) * 100 + 500


@pytest.fixture(scope="module")
def model(image, tmp_path_factory):
    from tests.conftest import TINY

    config = ds.make_config("n2v", "2d", "fast", dict(TINY))
    return ds.train(image, config, run_dir=tmp_path_factory.mktemp("run") / "r").model


@pytest.fixture(scope="module")
def package(model, image, tmp_path_factory):
    target = tmp_path_factory.mktemp("bmz") / "tiny.zip"
    return ds.export_bmz(model, target, image, name="Tiny N2V (test)", description="a test", authors=["A. Person"])


def test_the_package_passes_bioimageio_core_and_holds_what_a_user_needs(package):
    import bioimageio.core

    assert bioimageio.core.test_model(package, devices=["cpu"]).status == "passed"
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.md").decode()
    assert {"model.pth", "model_torchscript.pt", bmz.ARCHITECTURE_FILE, "cover.png", "config.json",
            "noise_model.json", "test_input.npy", "test_output.npy", "rdf.yaml"} <= names  # fmt: skip
    assert "## Validation" in readme and "estimated PSNR" in readme and "halo" in readme


def test_the_architecture_file_runs_without_this_package(model, image):
    import torch

    namespace: dict = {"__name__": "exported"}
    exec(compile(architecture_source(), bmz.ARCHITECTURE_FILE, "exec"), namespace)  # noqa: S102
    assert "denoise_studio" not in architecture_source()
    network = namespace[bmz.ARCHITECTURE_CALLABLE](**bmz.architecture_kwargs(model))
    network.load_state_dict(model.network.state_dict())
    x = torch.randn(1, 1, 40, 48)
    with torch.no_grad():  # the trained one is channels-last: the same sums, another order
        torch.testing.assert_close(network.eval()(x), model.network.float().eval()(x), rtol=1e-5, atol=1e-6)


def test_bioimageio_core_predicts_what_the_model_predicts(package, model, image):
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import create_sample_for_model
    from bioimageio.spec import load_model_description

    description = load_model_description(package)
    crop = bmz.test_input(model, image)
    for weights in ("pytorch_state_dict", "torchscript"):
        with create_prediction_pipeline(description, weight_format=weights, devices=["cpu"]) as pipeline:
            sample = create_sample_for_model(description, inputs={"input": crop})
            result = pipeline.predict_sample_without_blocking(
                sample, skip_input_padding=True, skip_output_cropping=True
            )
        theirs = result.members["output"].data.to_numpy()[0, 0]
        np.testing.assert_allclose(theirs, bmz.reference_output(model, crop)[0, 0], rtol=1e-4, atol=1e-3)
        # Ours pads with reflected margins, theirs (unpadded) sees zeros: equal inside the halo.
        predictor = model.predictor(device="cpu")
        predictor.precision = "fp32"
        ours, halo = predictor.predict(crop[0, 0]), predictor.margin
        np.testing.assert_allclose(theirs[halo:-halo, halo:-halo], ours[halo:-halo, halo:-halo], rtol=1e-4, atol=1e-3)


def test_the_zip_loads_back_as_the_model_and_predicts_alike(package, model, image, tmp_path):
    loaded = ds.load_model(package)
    assert loaded.method == model.method and loaded.normalization == model.normalization
    assert loaded.noise_model is not None and ("Package", str(package)) in loaded.summary_lines()
    np.testing.assert_allclose(loaded.predict(image), model.predict(image), rtol=1e-5, atol=1e-4)
    out = tmp_path / "out.tif"
    assert ds.predict_file(loaded, _tif(tmp_path, image), out) == out


def test_a_2p5d_model_exports_with_three_slices_in(image, tmp_path):
    from tests.conftest import TINY, synthetic_image

    stack = synthetic_image((20, 64, 72), seed=3) * 100 + 500
    model = ds.train(stack, ds.make_config("n2v", "2.5d", "fast", dict(TINY))).model
    package = ds.export_bmz(model, tmp_path / "stack.zip", stack, name="Tiny N2V 2.5D")
    with zipfile.ZipFile(package) as archive:
        assert "z+1" in archive.read("rdf.yaml").decode()
    assert ds.load_model(package).mode == "2.5d"
    with pytest.raises(ds.InputError, match="stack of at least 3 slices"):
        ds.export_bmz(model, tmp_path / "plane.zip", image, name="Tiny N2V 2.5D")


def test_what_cannot_be_exported_or_imported_is_refused(model, image, tmp_path, package):
    existing = tmp_path / "taken.zip"
    existing.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        ds.export_bmz(model, existing, image, name="Tiny N2V")
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(ds.InputError, match=r"\.zip file"):
        ds.export_bmz(model, tmp_path / "model.bmz", image, name="Tiny N2V")
    with pytest.raises(ds.ConfigError, match="name"):
        ds.export_bmz(model, tmp_path / "x.zip", image, name="..")
    # A foreign BMZ package: same zip without our record.
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(foreign, "w") as target:
        for name in source.namelist():
            if name != "config.json":
                target.writestr(name, source.read(name))
    with pytest.raises(ModelFileError, match="did not make; run it with bioimageio.core, deepImageJ"):
        ds.load_model(foreign)


def test_a_package_that_fails_bioimageios_test_is_not_written(model, image, tmp_path, monkeypatch):
    # A wrong reference output: bioimageio.core cannot reproduce it, so the export must stop.
    right = bmz.reference_output
    monkeypatch.setattr(bmz, "reference_output", lambda model, inputs: right(model, inputs) + 50)
    with pytest.raises(BmzError, match="bioimageio.core's test failed, nothing was written"):
        ds.export_bmz(model, tmp_path / "bad.zip", image, name="Tiny N2V")
    assert list(tmp_path.iterdir()) == []


def test_export_on_the_command_line(model, image, tmp_path, capsys):
    from denoise_studio.cli import EXIT_BAD_INPUT, main

    source = _tif(tmp_path, image)
    target = tmp_path / "cli.zip"
    argv = ["export", str(model.run_dir), "--bmz", str(target), "--image", str(source), "--author", "A. Person"]
    assert main([*argv, "--cite", "Me et al. 2026|10.1234/abcd"]) == 0
    assert "bioimageio.core's test passed" in capsys.readouterr().out
    assert json.loads(zipfile.ZipFile(target).read("config.json"))["format"] == "denoise-studio-model"
    assert main([*argv, "--cite", "no doi"]) == EXIT_BAD_INPUT
    assert "expected 'TEXT|DOI'" in capsys.readouterr().err


def _tif(folder, image):
    import tifffile

    path = folder / "image.tif"
    tifffile.imwrite(path, image.astype(np.float32))
    return path


def test_an_autostruct_model_exports_its_stage2_with_the_mask(image, tmp_path, tiny_settings):
    mask = np.zeros((1, 5, 5), bool)
    mask[0, 2, :] = True
    config = ds.make_config("autostructn2v", "2d", "fast", dict(tiny_settings))
    model = ds.train(image, config, mask=mask, run_dir=tmp_path / "run").model
    package = ds.export_bmz(model, tmp_path / "struct.zip", image, name="Tiny structN2V")
    readme = zipfile.ZipFile(package).read("README.md").decode()
    assert "# # # # #" in readme  # the horizontal mask line, as a grid
    loaded = ds.load_model(package)
    assert loaded.config.masking.struct_mask is not None
    assert loaded.test_time_transforms == (0, 1, 2, 3)  # flips only: the noise has a direction
    np.testing.assert_allclose(loaded.predict(image), model.predict(image), rtol=1e-5, atol=1e-4)
