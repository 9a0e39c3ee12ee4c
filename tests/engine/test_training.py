"""The trainer: stopping (request, early stopping, time budget), best model, events, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoise_studio.engine.events import RunState, StopRequest
from denoise_studio.engine.io import InputError
from denoise_studio.engine.training import Trainer, train

#: TINY trains 16 patches per epoch in batches of 4: 4 steps per epoch.
STEPS_PER_EPOCH = 4


@pytest.fixture
def image(make_image):
    return make_image((64, 64))


def collect(events: list):
    return events.append


def state_copy(model) -> dict:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stop_after", [1, 3, STEPS_PER_EPOCH, STEPS_PER_EPOCH + 2])
def test_stop_request_is_honoured_within_one_batch(stop_after, tiny_config, image):
    stop, events = StopRequest(), []

    def callback(event):
        events.append(event)
        if event.kind == "batch" and sum(e.kind == "batch" for e in events) == stop_after:
            stop.set()

    result = train(tiny_config(epochs=5), image, callback=callback, stop=stop)
    assert result.stop_reason == "stopped"
    assert result.steps == stop_after
    assert result.epochs_run == math.ceil(stop_after / STEPS_PER_EPOCH)
    assert events[-1].kind == "finished" and events[-1].state == RunState.STOPPED
    assert len(result.history) == result.epochs_run  # the last (partial) epoch was validated


def test_early_stopping_when_validation_does_not_improve(tiny_config, image):
    # A learning rate far below float32 resolution leaves the weights, hence the validation loss, unchanged.
    config = tiny_config(epochs=6, learning_rate=1e-30, early_stopping=True, patience=1)
    result = train(config, image)
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == 2 < config.training.epochs
    assert result.history[1]["val_loss"] == result.history[0]["val_loss"]
    assert result.best_epoch == 1


def test_best_model_is_kept_and_checkpointed(tiny_config, image, monkeypatch):
    """Scripted validation losses: the best epoch is 2, patience 2 stops after epoch 4, and the
    returned weights are those the model had when epoch 2 was validated."""
    scripted = iter([3.0, 1.0, 2.0, 4.0, 5.0, 6.0])
    validated: list[dict] = []

    def fake_validate(self, model, *args):
        validated.append(state_copy(model))
        return next(scripted)

    monkeypatch.setattr(Trainer, "_validate", fake_validate)
    checkpoints = []
    config = tiny_config(epochs=6, early_stopping=True, patience=2, learning_rate=1e-2)
    result = train(config, image, checkpoint=lambda state, summary: checkpoints.append((state, summary)))

    assert result.stop_reason == "early_stopping"
    assert (result.epochs_run, result.best_epoch, result.best_val_loss) == (4, 2, 1.0)
    assert [row["val_loss"] for row in result.history] == [3.0, 1.0, 2.0, 4.0]
    assert states_equal(state_copy(result.model), validated[1])
    assert not states_equal(validated[1], validated[3])  # training did move the weights afterwards
    # The first checkpoint holds epoch 1's weights (a copy, not a view of the live model); the last
    # one, written at the end, holds the best weights and its summary.
    first, last = checkpoints[0], checkpoints[-1]
    assert states_equal(first[0], validated[0])
    assert states_equal(last[0], validated[1])
    assert last[1]["best_epoch"] == 2 and last[1]["stop_reason"] == "early_stopping"
    assert all(v.device.type == "cpu" for v in last[0].values())


def test_plateau_halves_the_learning_rate(tiny_config, image, monkeypatch):
    # A flat validation loss is a plateau: with patience 2 the scheduler waits patience // 2 = 1
    # epoch without improvement, then halves the rate (the history records the rate of each epoch).
    monkeypatch.setattr(Trainer, "_validate", lambda self, *args: 1.0)
    config = tiny_config(epochs=5, learning_rate=1e-3, lr_schedule="plateau", early_stopping=False, patience=2)
    rates = [row["learning_rate"] for row in train(config, image).history]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4])


def test_time_budget(tiny_config, image):
    budget = 0.6
    result = train(tiny_config(epochs=100_000, max_time=budget), image)
    assert result.stop_reason == "time_budget"
    assert budget <= result.elapsed < budget + 1.0
    assert 0 < result.epochs_run < 100_000 and len(result.history) == result.epochs_run


def test_event_stream(tiny_config, image):
    events = []
    result = train(tiny_config(epochs=2), image, callback=collect(events))
    kinds = [e.kind for e in events]
    assert kinds == ["started", *(["batch"] * STEPS_PER_EPOCH + ["epoch"]) * 2, "finished"]
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.val_loss for e in epochs] == [row["val_loss"] for row in result.history]
    assert all(math.isfinite(e.val_loss) and math.isfinite(e.train_loss) for e in epochs)
    batches = [e for e in events if e.kind == "batch"]
    assert [(e.epoch, e.batch) for e in batches] == [(ep, b) for ep in (1, 2) for b in range(1, STEPS_PER_EPOCH + 1)]
    fractions = [e.fraction for e in events[1:-1]]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert events[-1].state == RunState.COMPLETE and events[-1].best_val_loss == result.best_val_loss
    assert result.stop_reason == "completed" and result.steps == 2 * STEPS_PER_EPOCH


def test_same_seed_same_run_other_seed_other_run(tiny_config, image):
    runs = [train(tiny_config(seed=seed), image) for seed in (7, 7, 8)]
    losses = [[(row["train_loss"], row["val_loss"]) for row in run.history] for run in runs]
    weights = [state_copy(run.model) for run in runs]
    assert losses[0] == losses[1] and states_equal(weights[0], weights[1])
    assert losses[0] != losses[2] and not states_equal(weights[0], weights[2])


def test_training_reduces_the_loss(tiny_config, make_image):
    result = train(tiny_config(epochs=6, patches_per_image=32, learning_rate=3e-3), make_image((64, 64), sigma=0.1))
    assert result.history[-1]["val_loss"] < 0.8 * result.history[0]["val_loss"]


def test_2p5d_refuses_short_stacks(tiny_config, make_image):
    with pytest.raises(InputError, match=r"(?i)insufficient stack depth.*need 20"):
        train(tiny_config(mode="2.5d"), make_image((19, 64, 64)))


def test_2p5d_trains_a_three_channel_model(tiny_config, make_image):
    result = train(tiny_config(mode="2.5d", patches_per_image=1, epochs=1), make_image((20, 64, 64)))
    assert result.model.in_channels == 3 and result.model.encoders[0][0].in_channels == 3
    assert result.steps == 5 and math.isfinite(result.best_val_loss)


def test_several_images_and_a_given_normalization(tiny_config, make_image):
    from denoise_studio.engine.data import Normalization

    norm = Normalization(offset=0.0, scale=2.0)
    images = [make_image((64, 64), seed=1), make_image((2, 48, 80), seed=2)]
    result = train(tiny_config(epochs=1), images, normalization=norm)
    assert result.normalization == norm
    assert result.steps == math.ceil(16 * 3 / 4)


def test_summary_reports_the_run(tiny_config, image):
    summary = train(tiny_config(seed=None), image).summary()
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert isinstance(summary["seed"], int) and summary["steps"] == 2 * STEPS_PER_EPOCH
    assert np.isfinite(summary["best_val_loss"])


def test_training_starts_from_initial_weights(tiny_config, image, make_model):
    config = tiny_config(learning_rate=1e-30)  # far below float32 resolution: the weights cannot move
    start = state_copy(make_model(config, seed=5)[0])
    result = train(config, image, initial_state=start)
    assert states_equal(state_copy(result.model), start)


def test_struct_mask_training_runs(tiny_config, image):
    line = [[[False] * 3, [True, True, True], [False] * 3]]
    result = train(tiny_config(struct_mask=line, epochs=1), image)
    assert result.steps == STEPS_PER_EPOCH and math.isfinite(result.best_val_loss)


def test_time_budget_events_say_the_budget_ends_the_run(tiny_config, make_image):
    events = []
    config = tiny_config(epochs=100_000, max_time=0.5)
    train(config, make_image((64, 64)), callback=events.append)
    epochs = [e for e in events if e.kind == "epoch"]
    assert epochs and all(e.limited_by_time for e in epochs)
    assert epochs[-1].epoch_position == f"epoch {epochs[-1].epoch} (until the time budget)"
    assert "/100000" not in epochs[-1].epoch_position
    events.clear()
    train(tiny_config(epochs=2, max_time=600.0), make_image((64, 64)), callback=events.append)
    assert [e.epoch_position for e in events if e.kind == "epoch"] == ["epoch 1/2", "epoch 2/2"]
