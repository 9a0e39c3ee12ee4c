"""Model files: the save/load round trip, the record in config.json, and refusing bad files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from denoise_studio.engine.persistence import (
    CONFIG_FILE,
    FORMAT_VERSION,
    SINGLE_CHANNEL_FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelFileError,
    load_model,
    save_model,
)
from denoise_studio.engine.prediction import Predictor


@pytest.fixture
def saved(tiny_config, make_model, tmp_path):
    """A run directory holding a random-weight 2.5D N2V2 model; returns (run_dir, config, model, norm)."""
    config = tiny_config(method="n2v2", mode="2.5d", depth=2)
    model, norm = make_model(config)
    run_dir = save_model(tmp_path / "run", config, norm, model.state_dict(), summary={"steps": 7})
    return run_dir, config, model, norm


def predict(model, norm, mode, stack):
    return Predictor(model, norm, mode, tile_size=32, device="cpu", precision="fp32").predict(stack)


def test_round_trip_gives_identical_predictions(saved, make_image):
    run_dir, config, model, norm = saved
    loaded = load_model(run_dir)
    assert loaded.config == config and loaded.normalization == norm and loaded.mode == "2.5d"
    stack = make_image((4, 40, 44))
    np.testing.assert_array_equal(
        predict(loaded.network, loaded.normalization, loaded.mode, stack), predict(model, norm, config.mode, stack)
    )


def test_load_from_the_json_file_and_explicit_weights(saved, tmp_path):
    run_dir, config, model, _ = saved
    moved = tmp_path / "elsewhere.pth"
    os.replace(run_dir / WEIGHTS_FILE, moved)
    loaded = load_model(run_dir / CONFIG_FILE, weights=moved)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)


def test_config_json_records_the_run(saved):
    run_dir, config, _, norm = saved
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    assert record["format"] == "denoise-studio-model" and record["format_version"] == SINGLE_CHANNEL_FORMAT_VERSION
    assert (record["method"], record["mode"], record["in_channels"]) == ("n2v2", "2.5d", 3)
    assert record["normalization"] == {"offset": norm.offset, "scale": norm.scale, "kind": "meanstd"}
    assert record["config"] == config.to_dict()
    assert {"denoise_studio", "torch", "numpy", "python"} <= set(record["versions"])
    assert record["versions"]["torch"] == torch.__version__
    assert record["training"] == {"steps": 7}
    assert sorted(p.name for p in run_dir.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temporary files


class Payload:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.makedirs, (str(self.path),)


def foreign_json(run_dir):
    (run_dir / CONFIG_FILE).write_text(json.dumps({"hello": 1}))


def corrupt_json(run_dir):
    (run_dir / CONFIG_FILE).write_text('{"format": "denoise-studio-model", ')


def newer_format(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["format_version"] = FORMAT_VERSION + 1
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def invalid_config(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["config"]["training"]["epochs"] = -1
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def no_normalization(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    del record["normalization"]
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def zero_scale(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["normalization"]["scale"] = 0.0
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def text_format_version(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["format_version"] = "one"
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def missing_config(run_dir):
    (run_dir / CONFIG_FILE).unlink()


def missing_weights(run_dir):
    (run_dir / WEIGHTS_FILE).unlink()


def truncated_weights(run_dir):
    data = (run_dir / WEIGHTS_FILE).read_bytes()
    (run_dir / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])


def garbage_weights(run_dir):
    (run_dir / WEIGHTS_FILE).write_bytes(np.random.default_rng(0).bytes(5000))


def pickled_object(run_dir):
    torch.save({"weight": Payload(run_dir / "code_ran")}, run_dir / WEIGHTS_FILE)


def not_tensors(run_dir):
    torch.save({"weight": [1, 2, 3]}, run_dir / WEIGHTS_FILE)


def other_architecture(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["config"]["model"]["depth"] = 1
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


def other_width(run_dir):
    record = json.loads((run_dir / CONFIG_FILE).read_text())
    record["config"]["model"]["base_features"] = 16
    (run_dir / CONFIG_FILE).write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (foreign_json, "not a denoise-studio model configuration"),
        (corrupt_json, "corrupt model configuration"),
        (newer_format, "newer denoise-studio"),
        (invalid_config, "invalid configuration: training.epochs"),
        (no_normalization, "incomplete model configuration"),
        (zero_scale, "positive scale"),
        (text_format_version, "format_version must be an integer"),
        (missing_config, "no config.json found"),
        (missing_weights, "weights file not found"),
        (truncated_weights, "corrupt or foreign weights file"),
        (garbage_weights, "corrupt or foreign weights file"),
        (pickled_object, "corrupt or foreign weights file"),
        (not_tensors, "not a state dict of tensors"),
        (other_architecture, "weights do not match the configuration.*unexpected"),
        (other_width, "weights do not match the configuration.*wrong shape"),
    ],
)
def test_bad_model_files_give_a_clear_error(damage, message, saved):
    run_dir = saved[0]
    damage(run_dir)
    with pytest.raises(ModelFileError, match=message):
        load_model(run_dir)
    assert not (run_dir / "code_ran").exists()


def test_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelFileError, match="no config.json found"):
        load_model(tmp_path)
