"""Configuration: presets, the N2V2 recipe, overrides, validation messages and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from denoise_studio.engine.config import (
    METHODS,
    MODES,
    PRESETS,
    ConfigError,
    DenoiseConfig,
    apply_overrides,
    make_config,
    resolve_key,
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid(preset, method, mode):
    config = make_config(method, mode, preset)
    assert (config.method, config.mode, config.preset) == (method, mode, preset)
    assert config.data.patch_size % 2**config.model.depth == 0
    assert DenoiseConfig.from_dict(config.to_dict()) == config


def test_presets_differ():
    fast, balanced, quality = (make_config(preset=p) for p in PRESETS)
    assert fast.training.max_time is not None  # the fast preset is time-bounded
    assert balanced.model.depth == 4 and balanced.model.base_features == 64
    # High Quality: the Fast recipe with a deeper network over a longer budget.
    assert quality.training.max_time > fast.training.max_time and quality.model.depth > fast.model.depth


def test_balanced_follows_the_published_module_defaults():
    config = make_config("n2v", "2d", "balanced")
    data, masking, model, training = config.data, config.masking, config.model, config.training
    assert (data.patch_size, data.patches_per_image, data.augment) == (64, 100, True)
    assert (training.batch_size, training.learning_rate) == (8, 1e-4)
    assert (training.epochs, training.early_stopping) == (100, True)
    assert (masking.mask_percent, masking.strategy) == (15.0, "uniform")
    assert (model.base_features, model.depth) == (64, 4)


def test_struct_mask_must_leave_a_replacement_neighbour():
    full = [[[True] * 3 for _ in range(3)]]
    with pytest.raises(ConfigError, match="masking.struct_mask covers the whole replacement neighbourhood"):
        make_config("n2v", "2d", "fast", {"neighbourhood_radius": 1, "struct_mask": full})
    assert make_config("n2v", "2d", "fast", {"neighbourhood_radius": 2, "struct_mask": full}).masking.struct_mask


@pytest.mark.parametrize("preset", PRESETS)
def test_n2v2_recipe(preset):
    n2v, n2v2 = make_config("n2v", preset=preset), make_config("n2v2", preset=preset)
    assert n2v2.masking.strategy == "median" and n2v2.masking.neighbourhood_radius >= 2
    assert n2v2.model.blur_pool is True and n2v2.model.top_skip is False
    assert n2v.model.blur_pool is False and n2v.model.top_skip is True


def test_overrides_dotted_and_flat_from_strings():
    config = make_config(
        overrides={
            "training.learning_rate": "5e-4",
            "patch_size": "96",
            "model.depth": "3",
            "augment": "off",
            "max_time": "none",
            "batch-size": "4",
            "strategy": "median",
        }
    )
    assert config.training.learning_rate == 5e-4
    assert config.data.patch_size == 96 and config.model.depth == 3
    assert config.data.augment is False and config.training.max_time is None
    assert config.training.batch_size == 4 and config.masking.strategy == "median"
    assert config.updated({"epochs": 7}).training.epochs == 7 and config.training.epochs != 7


def test_resolve_key():
    assert resolve_key("learning_rate") == "training.learning_rate"
    assert resolve_key("data.patch_size") == "data.patch_size"
    assert resolve_key("method") == "method"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"bogus": 1}, "bogus: unknown field"),
        ({"data.bogus": 1}, "data.bogus: unknown field"),
        ({"model.learning_rate": 1}, "model.learning_rate: unknown field"),
        ({"epochs": 0}, "training.epochs"),
        ({"mask_percent": 40}, "masking.mask_percent"),
        ({"val_fraction": 0.9}, "data.val_fraction"),
        ({"epochs": "many"}, "training.epochs"),
        ({"augment": "maybe"}, "data.augment"),
        ({"strategy": "random"}, "masking.strategy"),
        ({"patch_size": 48, "depth": 5}, "data.patch_size (48) must be a multiple of 32: the U-Net halves it"),
        ({"patch_size": 32, "depth": 4}, "data.patch_size (32) is too small for model.depth 4"),
        ({"struct_mask": [[[True]], [[True]]]}, "masking.struct_mask"),
        ({"struct_mask": [[[True, False], [False, True]]]}, "masking.struct_mask"),
        ({"struct_mask": [[[False, False, False], [False, False, False], [False, False, False]]]}, "centre pixel"),
        ({"method": "n3v"}, "method"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as error:
        apply_overrides(make_config(), overrides)
    assert field in str(error.value)


def test_struct_mask_planes_must_fit_the_mode():
    three = [[[False] * 3, [False, True, False], [False] * 3]] * 3
    assert len(make_config(mode="2.5d", overrides={"struct_mask": three}).masking.struct_mask) == 3
    with pytest.raises(ConfigError, match="struct_mask has 3 planes; mode 2d takes 1"):
        make_config(mode="2d", overrides={"struct_mask": three})


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: make_config(method="noise2self"), "method"),
        (lambda: make_config(mode="4d"), "mode"),
        (lambda: make_config(preset="slow"), "preset"),
        (lambda: DenoiseConfig.from_dict({"training": {"epochs": 1.5}}), "training.epochs"),
        (lambda: DenoiseConfig.from_dict({"extra": {}}), "extra: unknown field"),
    ],
)
def test_unknown_choices(call, field):
    with pytest.raises(ConfigError, match=field):
        call()


def test_json_round_trip():
    line = [[[False] * 3, [True, True, True], [False] * 3]]
    config = make_config("n2v2", "2d", "quality", {"struct_mask": line, "seed": 5, "max_time": 12.5})
    again = DenoiseConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.masking.struct_mask == line and again.training.max_time == 12.5


def test_a_mode_switch_keeps_hand_edits_and_names_what_it_resets():
    from denoise_studio.engine.config import with_mode

    kernel = [[[False] * 3, [False, True, False], [False] * 3] for _ in range(3)]
    config = make_config("n2v", "2.5d", "fast", {"learning_rate": 3e-4, "masking.struct_mask": kernel})
    switched, reset = with_mode(config, "2d", "fast")
    assert switched.mode == "2d" and switched.training.learning_rate == 3e-4  # the hand edit survives
    assert switched.masking.struct_mask is None
    assert [path for path, _why in reset] == ["masking.struct_mask"] and "planes" in reset[0][1]
    plain, nothing = with_mode(make_config("n2v", "2d", "fast", {"learning_rate": 3e-4}), "2.5d")
    assert plain.mode == "2.5d" and plain.training.learning_rate == 3e-4 and nothing == []


def test_sections_exist_only_for_the_methods_they_apply_to():
    care, n2v, n2n = make_config("care"), make_config("n2v"), make_config("n2n")
    assert care.masking is None and care.deconv is None and care.supervised is not None
    assert n2v.supervised is None and n2v.masking is not None and n2v.deconv is not None
    assert n2n.deconv is None and n2n.psf_sigma is None
    with pytest.raises(ConfigError) as caught:
        make_config("care", "2d", "fast", {"mask_percent": 5})
    assert caught.value.fields == ["masking.mask_percent"] and "does not apply to method care" in str(caught.value)
    with pytest.raises(ConfigError, match="deconv.psf_sigma: does not apply to method n2n"):
        make_config("n2n", "2d", "fast", {"psf_sigma": 1.0})


def test_configs_written_with_every_section_still_load():
    """Run folders from before sections were per method hold all of them: they load, the extras dropped."""
    from denoise_studio.engine.config import DeconvConfig, MaskingConfig, SupervisedConfig

    old = make_config("care").to_dict()
    old.update(masking=MaskingConfig(mask_percent=6.25).model_dump(), deconv=DeconvConfig().model_dump())
    loaded = DenoiseConfig.from_dict(old)
    assert loaded.masking is None and loaded.deconv is None and loaded == make_config("care")
    old = make_config("n2v").to_dict() | {"supervised": SupervisedConfig().model_dump()}
    assert DenoiseConfig.from_dict(old) == make_config("n2v")
