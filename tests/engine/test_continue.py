"""Continue or fine-tune a trained model: its weights, network and normalisation, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import denoise_studio as ds
from denoise_studio.engine.errors import ConfigError, InputError
from denoise_studio.engine.run import TrainingRun


@pytest.fixture
def tiny(tiny_settings):
    def factory(method: str = "n2v", mode: str = "2d", **extra):
        return ds.make_config(method, mode, "fast", {**tiny_settings, **extra})

    return factory


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A small N2V model trained on one image, saved to a run folder."""
    from tests.conftest import TINY, synthetic_image

    image = synthetic_image((64, 64), seed=1) * 100 + 1000
    run_dir = tmp_path_factory.mktemp("first") / "run"
    return ds.train(image, ds.make_config("n2v", "2d", "fast", {**TINY, "seed": 1}), run_dir=run_dir).model


def weights(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.network.state_dict().items()}


def distance(a: dict, b: dict) -> float:
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in a)


def test_continuing_starts_from_the_models_weights(first, tiny, make_image):
    other = make_image((64, 64), seed=5) * 100 + 1000
    # A learning rate too small to move the weights: whatever the run ends with is where it started.
    still = ds.train(other, tiny(learning_rate=1e-12, seed=2), init=first).model
    fresh = ds.train(other, tiny(learning_rate=1e-12, seed=2)).model
    assert distance(weights(still), weights(first)) < 1e-6
    assert distance(weights(fresh), weights(first)) > 1e-2


def test_the_network_comes_from_the_model_and_the_rest_from_the_config(first, tiny, make_image):
    other = make_image((64, 64), seed=5) * 100 + 1000
    config = tiny(base_features=16, depth=2, learning_rate=5e-4, epochs=1)  # another network, asked for
    model = ds.train(other, config, init=first.run_dir).model
    assert model.config.model == first.config.model
    assert model.config.training.learning_rate == 5e-4 and model.config.training.epochs == 1
    assert model.summary["initialized_from"] == str(first.run_dir)
    assert ("Continued from", str(first.run_dir)) in model.summary_lines()


def test_the_models_normalisation_is_kept_unless_renormalising(first, tiny, make_image, tmp_path):
    brighter = make_image((64, 64), seed=6) * 1000 + 20000  # another intensity range entirely
    kept = ds.train(brighter, tiny(epochs=1), init=first, run_dir=tmp_path / "kept").model
    assert kept.normalization == first.normalization
    assert ds.load_model(tmp_path / "kept").normalization == first.normalization  # and saved so
    refitted = ds.train(brighter, tiny(epochs=1), init=first, renormalize=True).model
    assert refitted.normalization != first.normalization
    assert refitted.normalization.offset > 10 * first.normalization.offset


def test_a_network_that_cannot_take_the_weights_is_refused_naming_the_fields(first, tiny, make_image):
    image = make_image((64, 64), seed=5)
    with pytest.raises(ConfigError) as err:
        TrainingRun(tiny(base_features=16, mode="2.5d"), [image], init=first)
    assert "mode: 2.5d here, 2d in the model" in str(err.value)
    assert "model.base_features: 16 here, 8 in the model" in str(err.value)
    with pytest.raises(ConfigError, match="autoStructN2V .* cannot continue a model"):
        ds.train(image, ds.make_config("autostructn2v", "2d", "fast"), init=first)


def test_other_channels_or_the_models_own_folder_are_refused(first, tiny, make_image):
    two_channels = np.stack([make_image((64, 64), seed=s) for s in (1, 2)])
    with pytest.raises(InputError, match="takes 1 channel"):
        ds.train(two_channels, tiny(), axes="CYX", init=first)
    with pytest.raises(InputError, match="holds the model this run continues"):
        ds.train(make_image((64, 64)), tiny(), init=first, run_dir=first.run_dir, overwrite=True)
    assert (first.run_dir / "model.pth").exists()


@pytest.mark.parametrize(("method", "field"), [("n2v2", "blur_pool"), ("autoencoder", "skip_connections")])
def test_a_method_that_defines_its_network_cannot_continue_another(first, tiny, make_image, method, field):
    with pytest.raises(ConfigError, match=f"{method} needs model.{field}"):
        ds.train(make_image((64, 64)), tiny(method), init=first)
