"""The vocabulary every face reads: methods, modes, presets, filters of a CARE target, outputs.

One table per word. The config validates against it, the command line takes its choices from it,
the napari docks take their labels and hints from it and model files are checked against it, so a
new method is added here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class MethodInfo:
    """What a face needs to know about a way of training."""

    name: str
    label: str
    hint: str
    #: "none", "required" (Noise2Noise: a second noisy acquisition) or "optional" (CARE: a clean image,
    #: or a target made from the input by a filter).
    target: str = "none"
    blind_spot: bool = False
    supports_deconvolution: bool = False
    #: A two-stage pipeline with a review gate between the stages (autoStructN2V).
    pipeline: bool = False
    #: Trains on clean images with noise drawn from a noise model for every batch (SBD).
    simulated: bool = False
    modes: tuple[str, ...] = ("2d", "2.5d", "3d")

    @property
    def needs_target(self) -> bool:
        """The method learns from (input, target) pairs."""
        return self.target != "none"


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo(
            "n2v",
            "Noise2Void",
            "Noise independent from pixel to pixel (shot and read noise): the default choice.",
            blind_spot=True,
            supports_deconvolution=True,
        ),
        MethodInfo(
            "n2v2",
            "N2V2",
            "Like Noise2Void, without its checkerboard artefacts; try it when N2V looks blocky.",
            blind_spot=True,
            supports_deconvolution=True,
        ),
        MethodInfo(
            "n2n",
            "Noise2Noise",
            "Two noisy acquisitions of the same field (noise independent between them): learns one from the other.",
            target="required",
        ),
        MethodInfo(
            "care",
            "CARE",
            "A clean (high-SNR) image of the same field, or a filter-made target: supervised noisy → clean.",
            target="optional",
        ),
        MethodInfo(
            "autoencoder",
            "Autoencoder",
            "No second image and no blind spot: a bottleneck network as a quick baseline; smooths fine detail.",
        ),
        MethodInfo(
            "sbd",
            "Simulation (SBD)",
            "Clean or simulated images of similar structures plus a noise model (fitted on your noisy image): "
            "trains on fresh simulated noise every batch; for very low SNR where no clean image of the field exists.",
            simulated=True,
        ),
        MethodInfo(
            "autostructn2v",
            "autoStructN2V",
            "Noise correlated along lines or stripes (scan lines, camera patterns): "
            "finds the noise structure, lets you review it as a mask, then trains structN2V.",
            blind_spot=True,
            pipeline=True,
            # The mask review shows 2D kernels (three planes in 2.5D); there are no 3D struct masks.
            modes=("2d", "2.5d"),
        ),
    )
}

#: Methods that train one network (everything but the two-stage pipelines).
SINGLE_NETWORK_METHODS: tuple[str, ...] = tuple(name for name, info in METHODS.items() if not info.pipeline)
BLIND_SPOT_METHODS: tuple[str, ...] = tuple(
    name for name in SINGLE_NETWORK_METHODS if METHODS[name].blind_spot
)
#: Methods that learn from (input, target) pairs, the autoencoder (input = target) included.
SUPERVISED_METHODS: tuple[str, ...] = tuple(
    name for name in SINGLE_NETWORK_METHODS if not METHODS[name].blind_spot
)
TARGET_METHODS: tuple[str, ...] = tuple(name for name, info in METHODS.items() if info.needs_target)
DECONVOLUTION_METHODS: tuple[str, ...] = tuple(
    name for name, info in METHODS.items() if info.supports_deconvolution
)


@dataclass(frozen=True)
class ModeInfo:
    name: str
    label: str
    hint: str


#: 2.5D needs enough slices for a meaningful train/validation split of centre slices.
MIN_SLICES_2P5D = 20
#: 3D patches are data.patch_size_z slices deep (at least 4); the stack must hold one.
MIN_SLICES_3D = 4

MODES: dict[str, ModeInfo] = {
    info.name: info
    for info in (
        ModeInfo("2d", "2D", "Each image or slice on its own."),
        ModeInfo(
            "2.5d", "2.5D", f"Uses the slices above and below; needs a stack of at least {MIN_SLICES_2P5D} slices."
        ),
        ModeInfo(
            "3d", "3D",
            "A 3D U-Net on 3D patches: the whole volume around each voxel; needs a stack at least as deep as "
            "the patch (data.patch_size_z); turn off model.pool_z for stacks of few, thick slices.",
        ),  # fmt: skip
    )
}

PRESET_LABELS: dict[str, str] = {"fast": "Fast", "balanced": "Balanced", "quality": "High Quality"}
PRESETS: tuple[str, ...] = tuple(PRESET_LABELS)

#: Filters that can make a CARE target from the noisy input.
TARGET_FILTERS: tuple[str, ...] = ("gaussian", "median", "nlm")

#: What a trained model can give: the denoised image, and for DecoNoising also the deconvolved one.
OUTPUTS: tuple[str, ...] = ("denoised", "deconvolved")

#: Why a training ended, worded once for the CLI, the docks and the model card.
STOP_REASONS: dict[str, str] = {
    "completed": "all epochs done",
    "early_stopping": "early stopping: the validation loss stopped improving",
    "time_budget": "the time budget was reached",
    "stopped": "stopped on request; the best model so far is kept",
    "skipped": "stage 2 skipped; the stage-1 (N2V) model is the result",
    "no_step": "stopped before the first training step; no model was kept",
    "interrupted": "the run did not finish (killed or crashed); the best model saved so far is kept",
}


def method_info(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method: unknown method {name!r} (choose from {', '.join(METHODS)})") from None


def method_label(name: str) -> str:
    info = METHODS.get(name)
    return info.label if info else name


def mode_label(name: str) -> str:
    info = MODES.get(name)
    return info.label if info else name


def stop_reason_text(reason: str) -> str:
    return STOP_REASONS.get(reason, reason.replace("_", " "))
