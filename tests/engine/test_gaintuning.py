"""GainTuning: gains per feature channel, folded into an ordinary network; the adaptation run and its record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import denoise_studio as ds
from denoise_studio.engine.config import ModelConfig
from denoise_studio.engine.data import Normalization
from denoise_studio.engine.errors import InputError, PipelineStateError
from denoise_studio.engine.gaintuning import GainTunedNetwork, adaptation_config, gain_tuning_loss, output_relation
from denoise_studio.engine.run import TrainingRun
from denoise_studio.engine.unet import build_model
from tests.conftest import TINY, synthetic_image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small N2V model trained on one image (intensities around 1000), in a run folder."""
    image = synthetic_image((64, 64), seed=1) * 100 + 1000
    run_dir = tmp_path_factory.mktemp("source") / "run"
    config = ds.make_config("n2v", "2d", "fast", {**TINY, "epochs": 6, "seed": 1})
    return ds.train(image, config, run_dir=run_dir).model


@pytest.mark.parametrize(
    ("model_config", "dims"),
    [
        (ModelConfig(depth=2, base_features=8), 2),
        (ModelConfig(depth=1, base_features=8, upsampling="transposed", batch_norm=True), 2),
        (ModelConfig(depth=1, base_features=4), 3),
    ],
)
def test_folding_the_gains_gives_the_same_network(model_config, dims):
    torch.manual_seed(0)
    network = build_model(model_config, 1, dims=dims).eval()
    tuned = GainTunedNetwork(network)
    with torch.no_grad():
        for gain in tuned.gains.values():
            gain.uniform_(0.5, 1.5)
    shape = (2, 1, 16, 16) if dims == 2 else (2, 1, 8, 16, 16)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = tuned(x)
        unwrapped = tuned.unwrap(tuned.state_dict())
        plain = unwrapped(x)  # hooks removed: the gains act once, through the weights
    assert torch.allclose(plain, expected, atol=1e-5)
    assert all(parameter.requires_grad for parameter in unwrapped.parameters())


def test_only_the_gains_train_and_the_network_stays_in_eval_mode():
    network = build_model(ModelConfig(depth=1, base_features=8, batch_norm=True), 1)
    tuned = GainTunedNetwork(network).train()
    trainable = [p for p in tuned.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == tuned.parameter_count
    # 2 convolutions of 8 + 2 of 16 (bottleneck) + up-sampling conv 8 + 2 decoder convs of 8 + the 1-channel head.
    assert tuned.parameter_count == 8 + 8 + 16 + 16 + 8 + 8 + 8 + 1
    assert not network.training


def test_the_loss_target_is_mapped_into_the_output_intensities():
    config = adaptation_config(ds.make_config("care", "2d", "fast", TINY))
    loss = gain_tuning_loss(config, 1, [Normalization(100.0, 10.0)], [Normalization(0.0, 50.0)])
    patches = np.full((2, 1, 32, 32), 2.0, dtype=np.float32)  # raw 120 in the input's normalisation
    batch = loss.make_batch(patches, torch.Generator().manual_seed(0))
    assert torch.allclose(batch.targets, torch.full_like(batch.targets, 120.0 / 50.0))
    assert batch.loss_mask.any() and not batch.loss_mask.all()


def test_adapting_lowers_the_held_out_loss_on_an_image_unlike_the_training_one(trained, tmp_path):
    # Another structure, three times the noise, another intensity range: out of distribution.
    other = synthetic_image((96, 96), seed=7, sigma=0.9) * 300 + 3000
    result = ds.adapt(trained, other, run_dir=tmp_path / "adapted", max_time=20, seed=3)
    model = result.model
    summary = model.summary
    assert summary["adapted_from"] == str(trained.run_dir)
    assert summary["initial_val_loss"] > summary["best_val_loss"]
    assert summary["best_epoch"] >= 1
    # An ordinary model of the same network in the source's normalisation, in a run folder of its own.
    assert model.config.model == trained.config.model
    assert model.normalization == trained.normalization
    loaded = ds.load_model(tmp_path / "adapted")
    assert np.allclose(loaded.predict(other), model.predict(other), atol=1e-3)
    assert not np.allclose(model.predict(other), trained.predict(other), atol=1e-2)
    rows = dict(model.summary_lines())
    assert rows["Adapted from"].startswith(str(trained.run_dir))
    assert "before" in rows["Held-out loss"]
    assert model.noise_models, "the adapted run measures the noise of the image it adapted to"


def test_an_adaptation_that_does_not_help_leaves_the_model_unchanged(trained):
    image = synthetic_image((64, 64), seed=1) * 100 + 1000
    # A learning rate this large wrecks the gains at once: no epoch beats the unadapted network.
    result = ds.adapt(trained, image, learning_rate=0.9, max_time=5, seed=0)
    assert result.model.summary["best_epoch"] == 0
    for key, value in trained.network.state_dict().items():
        assert torch.allclose(result.model.network.state_dict()[key], value)


def test_a_paired_model_adapts_in_its_output_scale(tmp_path):
    noisy = synthetic_image((64, 64), seed=2) * 100 + 1000
    clean = synthetic_image((64, 64), seed=2, sigma=0.0) * 400 + 8000  # a brighter clean acquisition
    care = ds.train(noisy, ds.make_config("care", "2d", "fast", TINY), targets=clean).model
    adapted = ds.adapt(care, synthetic_image((64, 64), seed=4) * 100 + 1000, max_time=3, seed=0).model
    assert adapted.method == "care"
    assert adapted.target_normalization == care.target_normalization
    out, before = adapted.predict(noisy), care.predict(noisy)
    assert abs(float(out.mean()) - float(before.mean())) < 0.05 * float(before.mean())
    assert float(out.std()) == pytest.approx(float(before.std()), rel=0.25)  # the contrast is kept too


def test_the_output_relation_is_the_signal_slope_not_the_noisy_one():
    class Doubling:  # a perfect denoiser answering on a scale 3x the input's, plus 5
        def predict(self, block, axes):
            return 3.0 * signal + 5.0

    rng = np.random.default_rng(0)
    signal = (synthetic_image((64, 64), sigma=0.0) * 10 + 100)[np.newaxis, np.newaxis]
    noisy = signal + rng.normal(0, 10, signal.shape)  # as much noise as signal spread
    (a, b), = output_relation(Doubling(), noisy)
    assert a == pytest.approx(3.0, rel=0.05) and b == pytest.approx(5.0, abs=30.0)


def test_the_struct_mask_of_an_autostruct_model_is_kept(tmp_path):
    image = synthetic_image((64, 64), seed=3) * 100 + 1000
    mask = np.zeros((3, 3), bool)
    mask[1, :] = True
    config = ds.make_config("autostructn2v", "2d", "fast", {**TINY, "auto_approve": True})
    source = ds.train(image, config, mask=mask).model
    adapted = ds.adapt(source, image, max_time=3, seed=0).model
    assert adapted.config.masking.struct_mask == source.config.masking.struct_mask


def test_a_crop_smaller_than_the_training_patches_adapts_with_smaller_patches(trained):
    crop = synthetic_image((40, 40), seed=8) * 300 + 3000  # patches of 32 leave no room beside held-out blocks
    adapted = ds.adapt(trained, crop, max_time=2, seed=0).model
    assert adapted.config.data.patch_size == 20 and adapted.config.model == trained.config.model
    assert adapted.predict(crop).shape == crop.shape


def test_refusals(trained, tmp_path):
    two_channels = np.stack([synthetic_image((64, 64), seed=s) for s in (1, 2)])
    with pytest.raises(InputError, match="channel"):
        ds.adapt(trained, two_channels, axes="CYX", max_time=2)
    with pytest.raises(InputError, match="another folder"):
        ds.adapt(trained, synthetic_image((64, 64)), run_dir=trained.run_dir, max_time=2)
    with pytest.raises(PipelineStateError, match="GainTuning"):
        TrainingRun(trained.config, [synthetic_image((64, 64))], adapt=True)


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_stacks_adapt_in_their_mode(mode):
    stack = np.stack([synthetic_image((64, 64), seed=z) for z in range(20)]) * 100 + 1000
    extra = {"patch_size_z": 4, "pool_z": False} if mode == "3d" else {}
    source = ds.train(stack, ds.make_config("n2v", mode, "fast", {**TINY, **extra})).model
    adapted = ds.adapt(source, stack * 2 + 50, max_time=3, seed=0).model
    assert adapted.mode == mode and adapted.config.model == source.config.model
    assert adapted.predict(stack).shape == stack.shape
