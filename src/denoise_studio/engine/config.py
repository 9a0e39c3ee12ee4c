"""Validated run configuration, presets and JSON round trip.

One :class:`DenoiseConfig` describes a training run completely. The CLI fills it from flags,
the napari widgets edit it, and it is written beside the weights as JSON. Every field is
validated here and only here: unknown or out-of-range values raise :class:`ConfigError`
with a message that names the field.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import registry
from .errors import ConfigError

# The allowed values come from the registry (Literal of a tuple is Literal of its items).
Method = Literal[registry.SINGLE_NETWORK_METHODS]  # type: ignore[valid-type]
Mode = Literal[tuple(registry.MODES)]  # type: ignore[valid-type]
Preset = Literal[registry.PRESETS]  # type: ignore[valid-type]

#: Single-network methods, as the registry lists them (autoStructN2V has its own config below).
METHODS: tuple[str, ...] = registry.SINGLE_NETWORK_METHODS
BLIND_SPOT_METHODS: tuple[str, ...] = registry.BLIND_SPOT_METHODS
SUPERVISED_METHODS: tuple[str, ...] = registry.SUPERVISED_METHODS
TARGET_FILTERS: tuple[str, ...] = registry.TARGET_FILTERS
MODES: tuple[str, ...] = tuple(registry.MODES)
PRESETS: tuple[str, ...] = registry.PRESETS

#: Largest mask-extractor radius (kernel side 15, as CAREamics caps structN2V spans).
MAX_EXTRACTOR_RADIUS = 7

#: Fewest blind spots a patch may have (percent of its pixels).
MIN_MASK_PERCENT = 0.05

MIN_SLICES_2P5D = registry.MIN_SLICES_2P5D


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """How training patches are drawn from the images."""

    patch_size: int = Field(64, ge=16, le=512, description="Side of the square training patches (pixels).")
    patch_size_z: int = Field(
        16, ge=4, le=256, description="3D mode: depth of the training patches (slices); a multiple of the Z pooling."
    )
    channels: Literal["independent", "joint"] = Field(
        "independent",
        description="Several channels: independent (each its own normalisation, one network shared by all) "
        "or joint (all channels in together, all channels out).",
    )
    patches_per_image: int = Field(
        100, ge=1, le=100_000, description="Patches drawn from each image (or slice) per epoch."
    )
    val_fraction: float = Field(
        0.1, ge=0.02, le=0.5, description="Share of the image area held out for validation (never trained on)."
    )
    augment: bool = Field(True, description="Random flips (and rotations, see augment_rotate) of patches.")
    augment_rotate: bool = Field(
        True,
        description="Also use 90-degree rotations and transposes. Turn off for structured noise: "
        "they mix the noise axes.",
    )
    normalization: Literal["meanstd", "percentile"] = Field(
        "meanstd", description="Intensity normalisation computed on the training data and stored with the model."
    )
    percentile_low: float = Field(1.0, ge=0.0, lt=50.0, description="Lower percentile (percentile normalisation).")
    percentile_high: float = Field(99.8, gt=50.0, le=100.0, description="Upper percentile (percentile normalisation).")


class MaskingConfig(_Strict):
    """Blind-spot masking (Noise2Void family)."""

    mask_percent: float = Field(
        15.0, ge=MIN_MASK_PERCENT, le=25.0, description="Percentage of pixels of a patch that are blind spots."
    )
    strategy: Literal["uniform", "median", "mean"] = Field(
        "uniform",
        description="Value put into a blind spot: a random neighbour (N2V), the neighbourhood median (N2V2) "
        "or the neighbourhood mean. The centre pixel and other blind spots are never used.",
    )
    neighbourhood_radius: int = Field(
        5, ge=1, le=7, description="Radius of the neighbourhood the replacement value comes from."
    )
    struct_mask: list[list[list[bool]]] | None = Field(
        None,
        description="structN2V kernel, planes x K x K (1 plane in 2D, 3 planes Z-1, Z, Z+1 in 2.5D); "
        "its non-centre pixels get random values.",
    )

    @field_validator("struct_mask")
    @classmethod
    def _check_struct_mask(cls, value: list[list[list[bool]]] | None) -> list[list[list[bool]]] | None:
        if value is None:
            return value
        planes = len(value)
        if planes not in (1, 3):
            raise ValueError(f"needs 1 plane (2D) or 3 planes (2.5D), got {planes}")
        size = len(value[0])
        if size % 2 == 0 or size > 15:
            raise ValueError(f"kernel side must be odd and at most 15, got {size}")
        for plane in value:
            if len(plane) != size or any(len(row) != size for row in plane):
                raise ValueError("every plane must be a square K x K grid of the same size")
        centre_plane = value[planes // 2]
        if not centre_plane[size // 2][size // 2]:
            raise ValueError("the centre pixel of the centre plane must be set")
        return value

    @model_validator(mode="after")
    def _check_replacement_source(self) -> MaskingConfig:
        # A blind spot takes its value from a neighbour outside the struct kernel; a kernel that
        # covers the whole neighbourhood leaves no such pixel, so refuse it here, naming the fields.
        if self.struct_mask is None:
            return self
        centre = self.struct_mask[len(self.struct_mask) // 2]
        k = len(centre) // 2
        r = self.neighbourhood_radius
        free = any(
            (dy, dx) != (0, 0) and not (abs(dy) <= k and abs(dx) <= k and centre[dy + k][dx + k])
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
        )
        if not free:
            raise ValueError(
                f"masking.struct_mask covers the whole replacement neighbourhood (radius {r}); "
                "raise masking.neighbourhood_radius or clear some kernel pixels"
            )
        return self


class ModelConfig(_Strict):
    """The U-Net."""

    depth: int = Field(2, ge=1, le=5, description="Number of down-sampling levels of the U-Net.")
    base_features: int = Field(32, ge=4, le=256, description="Feature channels of the first level.")
    upsampling: Literal["nearest", "bilinear", "transposed"] = Field(
        "nearest", description="How the decoder up-samples: resize (nearest/bilinear) or transposed convolution."
    )
    resize_conv: bool = Field(
        True, description="Follow a resize up-sampling with a 3x3 convolution (avoids checkerboard artefacts)."
    )
    blur_pool: bool = Field(False, description="Anti-aliased (blurred) down-sampling, as in N2V2.")
    top_skip: bool = Field(True, description="Skip connection at full resolution (N2V2 removes it).")
    batch_norm: bool = Field(False, description="Batch normalisation after each convolution.")
    residual: bool = Field(False, description="Predict a correction added to the input (residual U-Net).")
    skip_connections: bool = Field(
        True, description="Skip connections between encoder and decoder (an autoencoder has none)."
    )
    pool_z: bool = Field(
        True,
        description="3D mode: down-sample in Z too; turn off for anisotropic stacks with few, thick slices "
        "(pooling and up-sampling then act in Y and X only).",
    )


class TrainingConfig(_Strict):
    """Optimisation, stopping and hardware."""

    epochs: int = Field(100, ge=1, le=100_000, description="Maximum number of epochs.")
    batch_size: int = Field(8, ge=1, le=512, description="Patches per optimisation step.")
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="Adam learning rate.")
    lr_schedule: Literal["plateau", "cosine", "constant"] = Field(
        "plateau",
        description="plateau: halve on a validation plateau; cosine: decay to 2% over the run "
        "(epochs or max_time, whichever ends first); constant.",
    )
    early_stopping: bool = Field(True, description="Stop when the validation loss stops improving.")
    patience: int = Field(10, ge=1, le=10_000, description="Epochs without improvement before early stopping.")
    max_time: float | None = Field(
        None, gt=0.0, description="Wall-time budget in seconds; training stops cleanly and keeps the best model."
    )
    seed: int | None = Field(
        42, ge=0, le=2**31 - 1, description="Random seed; the same seed gives the same CPU run."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast where the processor supports it natively, else fp32."
    )


class MaskExtractorConfig(_Strict):
    """autoStructN2V: how the structured-noise mask is extracted from the stage-1 residual."""

    adaptive: bool = Field(True, description="Ring-wise percentile thresholds that get stricter outwards.")
    base_percentile: float = Field(
        50.0, ge=0.0, le=99.0, description="Percentile threshold of the first ring around the centre."
    )
    percentile_decay: float = Field(
        1.15, ge=1.0, le=3.0, description="Factor per ring; higher means stricter outer rings."
    )
    max_pixels: int = Field(25, ge=1, le=225, description="Largest number of masked pixels (centre included).")
    max_radius: int = Field(
        5, ge=2, le=MAX_EXTRACTOR_RADIUS, description="Largest correlation lag examined (kernel side 2r+1)."
    )
    abs_floor: float = Field(0.10, ge=0.0, le=1.0, description="Smallest |correlation| that counts as structure.")
    z_sigma: float = Field(5.0, ge=0.0, le=50.0, description="Noise floor in standard errors of white noise.")
    two_sided: bool = Field(True, description="Score |correlation| (negative correlations count too).")
    dilate: bool = Field(True, description="Extend a detected line by one pixel at each end.")


class SupervisedConfig(_Strict):
    """Training from (input, target) pairs: Noise2Noise, CARE, autoencoder."""

    loss: Literal["l2", "l1"] = Field("l2", description="Loss between prediction and target on every pixel.")
    target_from: str | None = Field(
        None,
        description="Build the target from the input with a filter: 'gaussian:SIGMA', 'median:SIZE' or 'nlm' "
        "(CARE with a filter-made target).",
    )
    register_target: bool = Field(
        False,
        description="Shift the target onto the input when they are misaligned (the shift comes from the "
        "windowed cross-correlation of the two images).",
    )
    max_shift: float = Field(
        1.0, ge=0.0, le=100.0, description="Largest misalignment (pixels) accepted without registering."
    )

    @field_validator("target_from")
    @classmethod
    def _check_target_from(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name, _, parameter = value.partition(":")
        if name not in TARGET_FILTERS:
            raise ValueError(f"unknown filter {name!r}; use gaussian:SIGMA, median:SIZE or nlm")
        if name != "nlm":
            try:
                size = float(parameter)
            except ValueError:
                raise ValueError(f"{name} needs a size, e.g. {name}:{'1.5' if name == 'gaussian' else '5'}") from None
            if not 0 < size <= 25:
                raise ValueError(f"{name} size must be in (0, 25], got {parameter}")
        return value


class DeconvConfig(_Strict):
    """DecoNoising (Goncharova et al. 2020): the network predicts a phantom image that, blurred by a
    Gaussian PSF, must explain the data; a positivity penalty keeps the phantom non-negative."""

    psf_sigma: float | None = Field(
        None, gt=0.0, le=10.0, description="Gaussian PSF sigma in pixels; set to enable DecoNoising."
    )
    positivity: float = Field(1.0, ge=0.0, le=1000.0, description="Weight of the positivity penalty.")


class SimulationConfig(_Strict):
    """Simulation-based training (SBD): the training images are clean, and Poisson–Gaussian noise
    (plus optional scan-line offsets) is drawn afresh on them for every batch. The noise parameters are
    in the intensity units of the images to denoise (a noise model fitted on them)."""

    gain: float | None = Field(
        None, ge=0.0, description="Intensity of one detected photon or electron (the Poisson part); 0: Gaussian only."
    )
    offset: float = Field(0.0, description="Dark level: the signal above it is Poisson.")
    read_variance: float | None = Field(None, ge=0.0, description="Signal-independent (read) noise variance.")
    row_sigma: float = Field(
        0.0, ge=0.0, description="Scan-line noise (EM): standard deviation of an offset shared by each row."
    )
    signal_low: float | None = Field(
        None,
        description="Map every clean image's 2nd percentile to this intensity, and its 98th to signal_high: the "
        "signal range of the image to denoise, so the simulated SNR is that image's. None: the clean images are "
        "already in its intensities.",
    )
    signal_high: float | None = Field(None, description="See signal_low: the high end of the target's signal range.")
    noise_source: str = Field("", description="Where the noise model came from (a run folder or an image).")

    @model_validator(mode="after")
    def _check_signal_range(self) -> SimulationConfig:
        if (self.signal_low is None) != (self.signal_high is None):
            raise ValueError("simulation.signal_low and simulation.signal_high are set together (or both left empty)")
        if self.signal_low is not None and not self.signal_low < self.signal_high:
            raise ValueError(
                f"simulation.signal_low ({self.signal_low}) must be below simulation.signal_high ({self.signal_high})"
            )
        return self

    @property
    def signal_range(self) -> tuple[float, float] | None:
        return None if self.signal_low is None else (self.signal_low, self.signal_high)

    @property
    def ready(self) -> bool:
        return self.gain is not None and self.read_variance is not None and (self.gain > 0 or self.read_variance > 0)


class PredictionConfig(_Strict):
    """How the trained model is applied unless a call says otherwise."""

    tta: bool = Field(
        False,
        description="Test-time augmentation by default: average the network over the flips/rotations it was "
        "trained under (8, or 4 for structured noise; that many times slower).",
    )


class DenoiseConfig(_Strict):
    """Everything that defines a training run."""

    method: Method = "n2v"
    mode: Mode = "2d"
    preset: Preset | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    #: Sections that exist only for the methods they apply to (None otherwise): blind-spot masking
    #: for N2V/N2V2, pairs for Noise2Noise/CARE/autoencoder, DecoNoising for N2V/N2V2.
    masking: MaskingConfig | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    supervised: SupervisedConfig | None = None
    deconv: DeconvConfig | None = None
    simulation: SimulationConfig | None = None
    prediction: PredictionConfig = Field(default_factory=PredictionConfig)

    @model_validator(mode="before")
    @classmethod
    def _sections_that_apply(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        info = registry.METHODS.get(data.get("method", "n2v"))
        if info is None:
            return data  # the method field itself names the problem
        data = dict(data)
        for section, applies in section_rules(info).items():
            if applies:
                if data.get(section) is None:
                    data[section] = {}
            else:
                # Run folders written before sections were per method hold every section.
                data.pop(section, None)
        return data

    @property
    def is_blind_spot(self) -> bool:
        return self.method in BLIND_SPOT_METHODS

    @property
    def psf_sigma(self) -> float | None:
        """DecoNoising's PSF, or None (no DecoNoising, or a method without it)."""
        return self.deconv.psf_sigma if self.deconv is not None else None

    @model_validator(mode="after")
    def _check_consistency(self) -> DenoiseConfig:
        if self.supervised is not None and self.supervised.target_from is not None and self.method != "care":
            raise ValueError("supervised.target_from builds a CARE target; use method care")
        step = 2**self.model.depth
        if self.data.patch_size % step:
            raise ValueError(
                f"data.patch_size ({self.data.patch_size}) must be a multiple of {step}: the U-Net halves "
                f"it model.depth ({self.model.depth}) times"
            )
        if self.data.patch_size < 4 * step:
            raise ValueError(
                f"data.patch_size ({self.data.patch_size}) is too small for model.depth {self.model.depth}; "
                f"use at least {4 * step}"
            )
        if self.mode == "3d":
            step_z = step if self.model.pool_z else 1
            if self.data.patch_size_z % step_z:
                raise ValueError(
                    f"data.patch_size_z ({self.data.patch_size_z}) must be a multiple of {step_z}: with model.pool_z "
                    f"the U-Net halves it model.depth ({self.model.depth}) times; lower the depth or turn off pool_z"
                )
        kernel = self.masking.struct_mask if self.masking is not None else None
        if kernel is not None and self.mode == "3d":
            raise ValueError("masking.struct_mask: struct masks are 2D/2.5D only; clear it for mode 3d")
        if kernel is not None:
            planes = len(kernel)
            wanted = 3 if self.mode == "2.5d" else 1
            if planes not in (1, wanted):
                raise ValueError(f"masking.struct_mask has {planes} planes; mode {self.mode} takes {wanted}")
        return self

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenoiseConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise config_error(err) from None

    def updated(self, overrides: dict[str, Any]) -> DenoiseConfig:
        """A copy with ``overrides`` applied (keys dotted or flat, see :func:`apply_overrides`)."""
        return apply_overrides(self, overrides)


#: The section classes of a DenoiseConfig, by field name (the faces build their editors from them).
SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "masking": MaskingConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "supervised": SupervisedConfig,
    "deconv": DeconvConfig,
    "simulation": SimulationConfig,
    "prediction": PredictionConfig,
}


def validation_issues(err: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each problem pydantic found.

    A check of the whole config (or of a section) names the fields it concerns in its message, e.g.
    ``data.patch_size (72) must be a multiple of 16: ... model.depth (4) ...``: it gives one issue
    per field named, each path complete (``stage1.data.patch_size`` inside autoStructN2V), so that
    a face can mark every field concerned without reading the text.
    """
    issues = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"])
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if "input" in item and item["type"] != "extra_forbidden" and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        named = [path for path in _FIELD_PATH.findall(message) if path.split(".")[0] in _SECTION_NAMES]
        scope = field.split(".") if field else []
        # A check of a whole config, stage or section (its location is one of those, not a field).
        whole = not scope or scope[-1] in _SECTION_NAMES
        if item["type"] == "value_error" and named and whole:
            for path in dict.fromkeys(named):
                head = path.split(".")[0]
                # "stage2" + "masking.struct_mask": the message names fields from the section's parent.
                prefix = scope[: scope.index(head)] if head in scope else scope
                issues.append((".".join([*prefix, path]), message))
        else:
            issues.append((field, message))
    return issues


_FIELD_PATH = re.compile(r"\b([a-z_0-9]+(?:\.[a-z_0-9]+){1,2})\b")
_SECTION_NAMES = (
    "data", "masking", "model", "training", "supervised", "deconv", "simulation", "extractor", "stage1", "stage2",
)


def format_validation_error(err: ValidationError) -> str:
    parts, seen = [], set()
    for field, message in validation_issues(err):
        if message in seen:
            continue  # one message that concerns several fields is said once
        seen.add(message)
        head = message.split(" ", 1)[0]
        if field and field.endswith(head):
            parts.append(field[: len(field) - len(head)] + message)  # "stage2." + "data.patch_size (72) ..."
        else:
            parts.append(f"{field or 'config'}: {message}")
    return "; ".join(parts)


def config_error(err: ValidationError) -> ConfigError:
    return ConfigError(format_validation_error(err), validation_issues(err))


def field_names() -> dict[str, str]:
    """Flat field name -> dotted path, for every settable field (used for ``--set key=value``)."""
    names: dict[str, str] = {}
    for section, model in SECTIONS.items():
        for name in model.model_fields:
            names[name] = f"{section}.{name}"
    return names


def resolve_key(key: str) -> str:
    """Turn ``lr``-style flat names or dotted paths into a dotted path; unknown keys raise."""
    key = key.strip().replace("-", "_")
    if key in ("method", "mode", "preset"):
        return key
    if "." in key:
        section, _, name = key.partition(".")
        if section in SECTIONS and name in SECTIONS[section].model_fields:
            return key
        raise ConfigError(f"{key}: unknown field")
    names = field_names()
    if key in names:
        return names[key]
    raise ConfigError(f"{key}: unknown field (known: {', '.join(sorted(names))})")


def _parse_value(raw: Any) -> Any:
    """Values from the command line arrive as strings; JSON covers numbers, bools, null and lists."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false", "on", "off", "yes", "no"):
        return lowered in ("true", "on", "yes")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def section_rules(info: registry.MethodInfo) -> dict[str, bool]:
    """Which optional sections a method's config has."""
    return {
        "masking": info.blind_spot,
        "supervised": not info.blind_spot,
        "deconv": info.supports_deconvolution,
        "simulation": info.simulated,
    }


def apply_overrides(config: DenoiseConfig, overrides: dict[str, Any]) -> DenoiseConfig:
    data = config.to_dict()
    for key, raw in overrides.items():
        path = resolve_key(key)
        value = _parse_value(raw)
        if "." in path:
            section, name = path.split(".")
            if data.get(section) is None:
                applies = [m for m, info in registry.METHODS.items() if section_rules(info).get(section)]
                message = f"does not apply to method {config.method} (only to {', '.join(applies)})"
                raise ConfigError(f"{path}: {message}", [(path, message)])
            data[section][name] = value
        else:
            data[path] = value
    return DenoiseConfig.from_dict(data)


# -- presets -------------------------------------------------------------------------------
#: The presets, as data: section -> field -> value over the config's defaults.
PRESET_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    # Tuned on a 2-core CPU (docs/benchmarks.md): a narrow, shallow net with a dense stratified mask
    # and a cosine schedule over a 2-minute budget beats wider nets that manage fewer optimiser steps.
    "fast": {
        "data": {"patch_size": 64, "patches_per_image": 200},
        "masking": {"mask_percent": 6.25, "strategy": "mean", "neighbourhood_radius": 1},
        "model": {"depth": 2, "base_features": 16},
        "training": {
            "epochs": 400, "batch_size": 16, "learning_rate": 1e-3, "lr_schedule": "cosine",
            "early_stopping": False, "max_time": 110.0,
        },
    },
    # The published module defaults.
    "balanced": {
        "data": {"patch_size": 64, "patches_per_image": 100},
        "masking": {"mask_percent": 15.0, "strategy": "uniform", "neighbourhood_radius": 5},
        "model": {"depth": 4, "base_features": 64},
        "training": {
            "epochs": 100, "batch_size": 8, "learning_rate": 1e-4, "lr_schedule": "plateau",
            "early_stopping": True, "patience": 10,
        },
    },
    # The Fast recipe with a deeper U-Net (a wider field of view) over a 5-minute budget: measured against
    # Fast and Balanced on every shared FMD and W2S pair (docs/benchmarks.md, section presets).
    "quality": {
        "data": {"patch_size": 64, "patches_per_image": 200},
        "masking": {"mask_percent": 6.25, "strategy": "mean", "neighbourhood_radius": 1},
        "model": {"depth": 3, "base_features": 16},
        "training": {
            "epochs": 1000, "batch_size": 16, "learning_rate": 1e-3, "lr_schedule": "cosine",
            "early_stopping": False, "max_time": 290.0,
        },
        # The margin over Fast on the shared pairs comes mostly from test-time augmentation.
        "prediction": {"tta": True},
    },
}  # fmt: skip

#: What a method changes over any preset.
METHOD_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    # N2V2 (Hoeck et al. 2022): median replacement, blur-pool, no top-level skip.
    "n2v2": {"masking": {"strategy": "median"}, "model": {"blur_pool": True, "top_skip": False}},
    # noisy -> noisy through a bottleneck: without skips the identity cannot pass the bottleneck.
    "autoencoder": {"model": {"skip_connections": False}},
}


def _preset_values(preset: str) -> dict[str, dict[str, Any]]:
    if preset not in PRESET_VALUES:
        raise ConfigError(f"preset: unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    return {section: dict(values) for section, values in PRESET_VALUES[preset].items()}


def make_config(
    method: str = "n2v",
    mode: str = "2d",
    preset: str = "fast",
    overrides: dict[str, Any] | None = None,
) -> DenoiseConfig:
    """Build a validated config from a method, a mode and a preset, then apply ``overrides``."""
    if method not in METHODS:
        raise ConfigError(f"method: unknown method {method!r} (choose from {', '.join(METHODS)})")
    if mode not in MODES:
        raise ConfigError(f"mode: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    values = _preset_values(preset)
    for section, changes in METHOD_VALUES.get(method, {}).items():
        values.setdefault(section, {}).update(changes)
    if method == "n2v2":
        # The median needs a neighbourhood: at least radius 2.
        values["masking"]["neighbourhood_radius"] = max(2, PRESET_VALUES[preset]["masking"]["neighbourhood_radius"])
    data: dict[str, Any] = {"method": method, "mode": mode, "preset": preset, **values}
    config = DenoiseConfig.from_dict(data)
    if overrides:
        config = apply_overrides(config, overrides)
    return config


# -- autoStructN2V ----------------------------------------------------------------------------
class AutoStructConfig(_Strict):
    """autoStructN2V: stage 1 (N2V), mask extraction, review, stage 2 (structN2V with the mask)."""

    method: Literal["autostructn2v"] = "autostructn2v"
    mode: Mode = "2d"
    preset: Preset | None = None
    stage1: DenoiseConfig
    stage2: DenoiseConfig
    extractor: MaskExtractorConfig = Field(default_factory=MaskExtractorConfig)
    auto_approve: bool = Field(False, description="Approve the extracted mask without review and go on to stage 2.")
    stage2_max_coverage: float = Field(
        40.0,
        ge=5.0,
        le=100.0,
        description="Largest share (%) of a stage-2 patch overwritten by struct kernels: with a large kernel the "
        "blind-spot percentage is lowered so that mask percent x kernel pixels stays below it (the network "
        "needs to see most of its input).",
    )
    stage2_init: Literal["scratch", "stage1"] = Field(
        "scratch",
        description="Start stage 2 from random weights, or fine-tune stage 1's weights (needs a small learning rate).",
    )

    @model_validator(mode="after")
    def _check_stages(self) -> AutoStructConfig:
        allowed = registry.METHODS["autostructn2v"].modes
        if self.mode not in allowed:
            raise ValueError(f"autoStructN2V works in modes {' and '.join(allowed)} only, not {self.mode}")
        for name in ("stage1", "stage2"):
            stage = getattr(self, name)
            if stage.mode != self.mode:
                raise ValueError(f"{name}.mode ({stage.mode}) differs from mode ({self.mode})")
        if self.stage1.masking.struct_mask is not None:
            raise ValueError("stage1.masking.struct_mask must be empty: stage 1 is plain N2V")
        if self.stage2_init == "stage1" and self.stage1.model != self.stage2.model:
            raise ValueError("stage2_init 'stage1' needs the same stage1.model and stage2.model settings")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoStructConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise config_error(err) from None


def updated_extractor(current: MaskExtractorConfig, values: dict[str, Any]) -> MaskExtractorConfig:
    """``current`` with ``values`` applied (strings are parsed as on the command line); an unknown or
    bad value raises a ConfigError naming ``extractor.<field>``."""
    unknown = [key for key in values if key not in MaskExtractorConfig.model_fields]
    if unknown:
        known = ", ".join(MaskExtractorConfig.model_fields)
        raise ConfigError(f"extractor.{unknown[0]}: unknown field (known: {known})")
    data = current.model_dump() | {key: _parse_value(value) for key, value in values.items()}
    try:
        return MaskExtractorConfig.model_validate(data)
    except ValidationError as err:
        raise config_error(err).prefixed("extractor") from None


#: autoStructN2V settings of the run itself (not of a stage or of the extractor).
AUTOSTRUCT_TOP_FIELDS = ("auto_approve", "stage2_max_coverage", "stage2_init")


def _autostruct_stage_values(preset: str, stage: int) -> dict[str, dict[str, Any]]:
    if preset == "balanced":
        # The published module defaults for the two stages.
        if stage == 1:
            return {
                "data": {"patch_size": 32, "patches_per_image": 100, "augment": False},
                "masking": {"mask_percent": 15.0},
                "training": {"batch_size": 4, "learning_rate": 1e-4},
            }
        return {
            "data": {"patch_size": 64, "patches_per_image": 200, "augment": True, "augment_rotate": False},
            "masking": {"mask_percent": 10.0},
            "training": {"batch_size": 2, "learning_rate": 1e-5},
        }
    # fast / quality: the CPU-tuned N2V recipe of each preset, with augmentation off in stage 1
    # (the extractor must see the noise as it is) and axis-keeping flips only in stage 2.
    if stage == 1:
        return {"data": {"augment": False}}
    return {"data": {"augment": True, "augment_rotate": False}}


def make_autostruct_config(
    mode: str = "2d",
    preset: str = "fast",
    overrides: dict[str, Any] | None = None,
) -> AutoStructConfig:
    """autoStructN2V config from a preset; override keys may be prefixed ``stage1.``, ``stage2.``
    or ``extractor.``; unprefixed training keys apply to both stages."""
    allowed = registry.METHODS["autostructn2v"].modes
    if mode not in allowed:
        raise ConfigError(f"mode: autoStructN2V works in {' and '.join(allowed)} only, not {mode!r}")
    stages = {}
    for stage in (1, 2):
        config = make_config("n2v", mode, preset)
        data = config.to_dict()
        for section, values in _autostruct_stage_values(preset, stage).items():
            data[section].update(values)
        if preset == "balanced":
            data["model"].update(depth=2, base_features=32)
        stages[f"stage{stage}"] = data
    record: dict[str, Any] = {"mode": mode, "preset": preset, **stages}
    stage_overrides: dict[str, dict[str, Any]] = {"stage1": {}, "stage2": {}}
    for key, raw in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if head in ("stage1", "stage2") and rest:
            stage_overrides[head][rest] = raw
        elif head == "extractor" and rest:
            if rest not in MaskExtractorConfig.model_fields:
                raise ConfigError(f"{key}: unknown field")
            record.setdefault("extractor", {})[rest] = _parse_value(raw)
        elif key in AUTOSTRUCT_TOP_FIELDS:
            record[key] = _parse_value(raw)
        elif key in MaskExtractorConfig.model_fields:
            record.setdefault("extractor", {})[key] = _parse_value(raw)
        else:
            stage_overrides["stage1"][key] = raw
            stage_overrides["stage2"][key] = raw
    for name, values in stage_overrides.items():
        if values:
            try:
                record[name] = apply_overrides(DenoiseConfig.from_dict(record[name]), values).to_dict()
            except ConfigError as err:
                raise err.prefixed(name) from None
    return AutoStructConfig.from_dict(record)


# -- switching the mode -------------------------------------------------------------------------
def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _set_dotted(data: dict[str, Any], path: str, value: Any) -> None:
    *heads, last = path.split(".")
    for head in heads:
        data = data[head]
    data[last] = value


def with_mode(
    config: DenoiseConfig | AutoStructConfig, mode: str, preset: str = "fast"
) -> tuple[DenoiseConfig | AutoStructConfig, list[tuple[str, str]]]:
    """The same settings in another mode, and the (field, reason) of every setting that could not stay.

    Most settings carry over as they are. When the whole does not validate in the new mode (a 3-plane
    struct mask in 2D, say), the preset's config for the new mode is the base and every hand-set value
    is carried over that still validates; the others are returned, so the user is told which were reset.
    """
    kind = type(config)
    data = config.to_dict()
    mode_paths = ["mode", "stage1.mode", "stage2.mode"] if isinstance(config, AutoStructConfig) else ["mode"]
    for path in mode_paths:
        _set_dotted(data, path, mode)
    try:
        return kind.from_dict(data), []
    except ConfigError:
        pass
    if isinstance(config, AutoStructConfig):
        base = make_autostruct_config(mode, preset)
    else:
        base = make_config(config.method, mode, preset)
    kept = base.to_dict()
    kept["preset"] = config.preset  # hand-edited stays hand-edited
    base_flat = _flatten(kept)
    pending = [
        (path, value)
        for path, value in _flatten(config.to_dict()).items()
        if path not in mode_paths and path != "preset" and base_flat.get(path) != value
    ]
    # Values that only fit together (a patch size with its depth) may fail alone: retry until nothing moves.
    reset: list[tuple[str, str]] = []
    while pending:
        reset, progressed = [], False
        for path, value in pending:
            trial = json.loads(json.dumps(kept))
            _set_dotted(trial, path, value)
            try:
                kind.from_dict(trial)
            except ConfigError as err:
                reset.append((path, value, err.issues[0][1] if err.issues else str(err)))
                continue
            kept, progressed = trial, True
        if not progressed:
            break
        pending = [(path, value) for path, value, _why in reset]
    return kind.from_dict(kept), [(path, why) for path, _value, why in reset]
