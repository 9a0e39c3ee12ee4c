"""The public Python API: the one way the command line, the napari docks and scripts start work.

    import denoise_studio as ds
    cfg = ds.make_config("n2v", mode="2d", preset="fast", max_time=30)
    run = ds.train([noisy], cfg, run_dir="runs/fish")
    model = ds.load_model("runs/fish")
    denoised = model.predict(noisy)
    ds.predict_file(model, "big.tif", "out.tif")

See ``docs/api.md`` for every function and its options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .engine.assessment import Assessment, Denoiser
from .engine.assessment import assess as _assess
from .engine.batch import BatchResult, predict_files  # noqa: F401 - public: ds.predict_files
from .engine.bigdata import fits_in_memory
from .engine.bmz import is_bmz_zip, read_bmz
from .engine.config import (
    AutoStructConfig,
    ConfigError,
    DenoiseConfig,
    MaskExtractorConfig,
    make_autostruct_config,
    updated_extractor,
)
from .engine.config import make_config as _make_single_config
from .engine.data import check_stack_for_mode
from .engine.events import ProgressCallback, StopRequest
from .engine.io import InputError, load_image, peek_image, read_image_meta, single_channel_stack
from .engine.lazy import open_for_training
from .engine.mask_extraction import MaskExtractionResult
from .engine.model import STAGE1, TrainedModel
from .engine.noise_model import NoiseModel, fit_from_calibration
from .engine.outputs import predict_file_to
from .engine.persistence import load_model as _load_model
from .engine.pipelines.autostruct import mask_from_correlation, residual_correlation
from .engine.registry import METHODS
from .engine.run import ReviewHook, RunResult, continuing_config, run_training

RunConfig = DenoiseConfig | AutoStructConfig
ImageInput = np.ndarray | str | os.PathLike


def make_config(
    method: str = "n2v",
    mode: str = "2d",
    preset: str = "fast",
    overrides: dict[str, Any] | None = None,
    **fields: Any,
) -> RunConfig:
    """A validated config for ``method`` in ``mode`` from ``preset``, with any field changed.

    Fields go by keyword (``max_time=30``, ``learning_rate=5e-4``) or in ``overrides`` with dotted
    names (``{"training.batch_size": 8}``; autoStructN2V also ``stage1.``/``stage2.``/``extractor.``).
    An unknown field or a value out of range raises :class:`ConfigError` naming the field.
    """
    values = {**(overrides or {}), **fields}
    if method not in METHODS:
        raise ConfigError(f"method: unknown method {method!r} (choose from {', '.join(METHODS)})")
    if METHODS[method].pipeline:
        return make_autostruct_config(mode, preset, values)
    return _make_single_config(method, mode, preset, values)


def with_field_of_view(config: DenoiseConfig, pixels: int) -> DenoiseConfig:
    """``config`` with the shallowest U-Net that sees at least ``pixels`` across (its depth, and a patch
    size large enough for that depth). A wide field of view matters most at low SNR, where a pixel's
    neighbourhood must hold enough signal (Mohan et al., simulation-based denoising)."""
    from .engine.unet import depth_for_field_of_view, field_of_view

    if isinstance(config, AutoStructConfig):
        raise ConfigError("field of view: set stage1.model.depth and stage2.model.depth of autoStructN2V instead")
    if pixels < 3:
        raise ConfigError(f"field of view: give at least 3 pixels, got {pixels}")
    depth = depth_for_field_of_view(config.model, pixels)
    widest = field_of_view(config.model.model_copy(update={"depth": depth}))
    if widest < pixels:
        raise ConfigError(f"field of view: the deepest U-Net (depth {depth}) sees {widest} px; ask for at most that")
    step = 2**depth
    # A patch of at least four steps of the deepest level, and a whole number of them.
    values = {"model.depth": depth, "data.patch_size": max(-(-config.data.patch_size // step) * step, 4 * step)}
    if config.mode == "3d" and config.model.pool_z:
        values["data.patch_size_z"] = max(-(-config.data.patch_size_z // step) * step, step)
    return config.updated(values)


AxesInput = str | Sequence[str | None] | None


def reads_from_disk(path: Path, from_disk: bool | None) -> bool:
    """Whether a training file is read patch by patch rather than loaded: an OME-Zarr always, a TIFF
    when asked, or when it would not fit comfortably in memory."""
    if path.suffix.lower() == ".zarr" or path.is_dir():
        return True
    if from_disk is not None:
        return from_disk
    shape, dtype, _meta = peek_image(path)
    return not fits_in_memory(shape, dtype)


def _as_images(
    images: ImageInput | Sequence[ImageInput], axes: AxesInput = None, from_disk: bool | None = False
) -> tuple[list[np.ndarray], list[str], list[Path], list[str | None]]:
    """Arrays, names, files and axes of the images: a file's axes are its own unless ``axes`` says
    otherwise; an array's are ``axes`` (None: ``(Y, X)``/``(Z, Y, X)``). Files read from disk (see
    :func:`reads_from_disk`) are zarr arrays that the run reads patch by patch."""
    if isinstance(images, (np.ndarray, str, os.PathLike)):
        images = [images]
    images = list(images)
    given = list(axes) if isinstance(axes, (list, tuple)) else [axes] * len(images)
    if len(given) != len(images):
        raise InputError(f"axes: {len(given)} axes strings for {len(images)} image(s)")
    arrays, names, files, found = [], [], [], []
    for index, (image, image_axes) in enumerate(zip(images, given, strict=True)):
        if isinstance(image, (str, os.PathLike)):
            if from_disk is not False and reads_from_disk(Path(image), from_disk):
                array, meta = open_for_training(image, image_axes)
            else:
                array, meta = read_image_meta(image, image_axes)
            arrays.append(array)
            names.append(str(image))
            files.append(Path(image))
            found.append(meta.axes)
        else:
            arrays.append(np.asarray(image))
            names.append(f"image {index + 1}")
            found.append(image_axes)
    return arrays, names, files, found


def train(
    images: ImageInput | Sequence[ImageInput],
    config: RunConfig,
    *,
    targets: ImageInput | Sequence[ImageInput] | None = None,
    run_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    review: ReviewHook | None = None,
    mask: np.ndarray | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    input_files: Sequence[str | os.PathLike] = (),
    names: Sequence[str] | None = None,
    axes: AxesInput = None,
    from_disk: bool | None = None,
    init: TrainedModel | str | os.PathLike | None = None,
    renormalize: bool = False,
) -> RunResult:
    """Train on ``images`` (arrays or image files); blocks until the run ends.

    ``axes`` (one string for all images or one per image, letters of STCZYX such as "CZYX"): what
    each dimension is; a file's own axes (OME-TIFF, ImageJ) are used when not given, an array without
    axes is ``(Y, X)`` or ``(Z, Y, X)``. Several channels train independently (each its own
    normalisation, one network) or jointly (``data.channels`` "joint"); S and T are independent samples.
    ``from_disk``: read training patches from the files instead of loading them (None: for an OME-Zarr,
    and for a TIFF too large for memory; blind-spot methods and the autoencoder only).

    ``targets``: the paired images of Noise2Noise / CARE. ``run_dir``: where config.json, the weights
    and history.csv go (locked while the run writes; an existing run folder needs ``overwrite``).
    autoStructN2V: ``review(request)`` returns :class:`Approve`, :class:`Regenerate` or
    :class:`SkipStage2` (default: approve as extracted); ``mask`` skips stage 1 and trains stage 2
    with that mask. ``callback`` receives progress events; ``stop.set()`` ends the run cleanly,
    keeping the best model (none when no step was taken). Returns a :class:`RunResult` with the
    model, the history and the summary. ``input_files`` (the files arrays were read from) are never
    overwritten by the run; ``names`` label the images in messages.

    ``init``: continue or fine-tune a trained model (or its run folder): its weights are the start,
    its network (mode, U-Net, DecoNoising PSF) replaces ``config``'s, and its normalisation is kept
    unless ``renormalize`` (then the new images' is fitted). Any single-network method may continue
    any model of the same network (N2V on new data, CARE from an N2V model); autoStructN2V cannot.
    """
    if init is not None:
        init = init if isinstance(init, TrainedModel) else load_model(init)
        config = continuing_config(config, init)
    arrays, found_names, files, found_axes = _as_images(images, axes, from_disk)
    target_arrays = None
    if targets is not None:
        target_arrays, _target_names, target_files, _target_axes = _as_images(targets, found_axes)
        files += target_files
    return run_training(
        config, arrays, targets=target_arrays, run_dir=run_dir, overwrite=overwrite, review=review, mask=mask,
        callback=callback, stop=stop, input_files=[*files, *input_files], names=names or found_names,
        axes=found_axes, init=init, renormalize=renormalize,
    )  # fmt: skip


def adapt(
    model: TrainedModel | str | os.PathLike,
    image: ImageInput,
    *,
    run_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_time: float | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
    axes: str | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    input_files: Sequence[str | os.PathLike] = (),
) -> RunResult:
    """GainTuning: adapt ``model`` (or its run folder) to one ``image`` it has not seen, by tuning a
    gain per feature channel of its network with the blind-spot loss on that image; blocks until done.

    Held-out blocks of the image choose the best gains (early stopping), and the unadapted network is
    one of the candidates: an adaptation that does not help returns the model unchanged. The result
    is an ordinary model of the same network (the gains are folded into its weights), written to
    ``run_dir`` like any run (``adapted_from`` and the held-out loss before and after in its summary).
    ``max_time`` (seconds, default 60) bounds it; ``stop.set()`` ends it keeping the best gains so far.
    Any single-network model, and autoStructN2V's final network (with its mask), can be adapted.
    ``input_files`` (the file an array was read from) are never overwritten by the run.
    """
    from .engine.gaintuning import adaptation_config

    if not isinstance(model, TrainedModel):
        model = load_model(model)
    config = adaptation_config(model.config, max_time=max_time, learning_rate=learning_rate, seed=seed)
    arrays, names, files, found_axes = _as_images(image, axes, from_disk=False)
    return run_training(
        config, arrays, run_dir=run_dir, overwrite=overwrite, callback=callback, stop=stop,
        input_files=[*files, *input_files], names=names, axes=found_axes, init=model, adapt=True,
    )  # fmt: skip


def load_model(path: str | os.PathLike, weights: str | os.PathLike | None = None) -> TrainedModel:
    """A trained model from its run folder (or config.json), any method, or from a BioImage Model Zoo
    zip this package exported; ``weights`` picks another weights file for the final network."""
    if weights is None and is_bmz_zip(path):
        return read_bmz(path)
    return _load_model(path, weights)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through links too), or would once the second is written."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def predict_file(
    model: TrainedModel,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    output: str = "denoised",
    axes: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    tile_size: int = 256,
    batch_size: int = 4,
    device: str | None = None,
    chunks: tuple[int, int, int] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    tta: bool | None = None,
) -> Path:
    """Denoise an image file into ``target`` atomically, with the input's axes, pixel sizes and channel
    names: OME-TIFF (``.tif``/``.tiff``) or OME-Zarr with a pyramid (``.zarr``).

    Memory stays bounded: an OME-Zarr, or a file too large for memory, is predicted block by block
    with dask (blocks of ``chunks`` (Z, Y, X) with the model's exact tile margin as halo), in this
    process, on a local cluster of ``workers`` processes, or on the dask ``scheduler`` at an address
    (its workers must see both paths); a single-channel TIFF stack is streamed plane by plane.

    ``output``: "denoised", "deconvolved" (DecoNoising) or "stage1" (autoStructN2V's first network).
    ``axes`` overrides the file's own; ``dtype`` "input" writes the input's type (rounded, clipped).
    The input is never overwritten, ``overwrite`` or not; another existing file only with ``overwrite``.
    ``tta``: test-time augmentation, the network's answers under its flips/rotations averaged
    (``model.test_time_transforms``: 8, or 4 for structured noise; that many times slower).
    """
    if same_file(source, target):
        raise InputError(f"{target} is the input image itself; choose another output file")
    if Path(target).exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another output or allow overwriting it")
    return predict_file_to(
        model, source, target, output=output, axes=axes, dtype=dtype, overwrite=overwrite, tile_size=tile_size,
        batch_size=batch_size, device=device, chunks=chunks, workers=workers, scheduler=scheduler,
        callback=callback, stop=stop, tta=tta,
    )  # fmt: skip


def extract_mask(
    model: TrainedModel,
    images: ImageInput | Sequence[ImageInput],
    extractor: MaskExtractorConfig | None = None,
    *,
    device: str | None = None,
    **fields: Any,
) -> MaskExtractionResult:
    """A structured-noise mask from the residual of ``model`` (any N2V model; autoStructN2V: its
    stage 1) on ``images``; extractor settings as a config or by keyword (``max_pixels=9``)."""
    if model.mode not in METHODS["autostructn2v"].modes:
        raise InputError(f"mask extraction needs a 2D or 2.5D model; this one is {model.title}")
    extractor = updated_extractor(extractor or MaskExtractorConfig(), fields)
    arrays, names, _files, found_axes = _as_images(images)
    stacks = [
        check_stack_for_mode(single_channel_stack(a, axes, n), model.mode, name=n)
        for a, n, axes in zip(arrays, names, found_axes, strict=True)
    ]
    network = model.stage_networks.get(STAGE1, model.network)
    rho, pixels = residual_correlation(network, model.normalization, model.mode, stacks, device=device or model.device)
    return mask_from_correlation(rho, pixels, extractor)


def _single_channel(image: ImageInput, axes: str | None, what: str) -> np.ndarray:
    """A file or array as a ``(Y, X)`` image or ``(Z, Y, X)`` stack of one channel."""
    if isinstance(image, (str, os.PathLike)):
        array, meta = read_image_meta(image, axes)
        stack = single_channel_stack(array, meta.axes, name=str(image))
    else:
        stack = single_channel_stack(np.asarray(image), axes, name=what)
    return stack[0] if stack.shape[0] == 1 else stack


def assess(
    noisy: ImageInput,
    denoised: ImageInput,
    *,
    model: TrainedModel | str | os.PathLike | None = None,
    second: ImageInput | None = None,
    noise_model: NoiseModel | None = None,
    denoiser: Denoiser | None = None,
    data_range: float | None = None,
    axes: str | None = None,
) -> Assessment:
    """How good is ``denoised`` (made from ``noisy``) without a clean reference? See :mod:`.engine.assessment`.

    ``model`` (a trained model or its run folder): its measured noise model, and the model itself as
    the denoiser for the Stein term, i.e. ``denoised`` is that model's output. ``second``: an
    independent noisy acquisition of the same field (its estimate needs no noise model).
    ``noise_model`` (e.g. from :func:`fit_noise_model` on calibration frames) wins over the model's;
    ``denoiser``: the function that made ``denoised`` when it is not the model (a filter).
    ``data_range``: for the PSNR (default: the noisy image's 0.1-99.9 percentile span).
    One channel: ``(Y, X)`` or ``(Z, Y, X)``.
    """
    x = _single_channel(noisy, axes, "noisy image")
    s = _single_channel(denoised, axes, "denoised image")
    y2 = None if second is None else _single_channel(second, axes, "second acquisition")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if model is not None:
        if model.channels > 1:
            raise InputError(f"assess takes one channel; this model has {model.channels}")
        noise_model = noise_model or model.noise_model
        if denoiser is None:
            trained = model

            def denoiser(image: np.ndarray) -> np.ndarray:
                return trained.predict(image)

    return _assess(x, s, noise_model, second=y2, denoiser=denoiser, data_range=data_range)


def fit_noise_model(
    frames: ImageInput | None = None,
    dark: ImageInput | None = None,
    *,
    noisy: ImageInput | None = None,
    denoised: ImageInput | None = None,
) -> NoiseModel:
    """A noise model from calibration data: ``frames`` (repeated frames of a static lit field, ``(T, Y, X)``)
    and/or ``dark`` frames, or a ``noisy`` image with a ``denoised`` version of it (dark frames then fix
    the offset and read noise)."""

    def read(image: ImageInput | None, what: str) -> np.ndarray | None:
        return None if image is None else _single_channel(image, None, what)

    return fit_from_calibration(
        read(frames, "calibration frames"), read(dark, "dark frames"), noisy=read(noisy, "noisy image"),
        denoised=read(denoised, "denoised image"),
    )  # fmt: skip


def simulation_settings(
    source: NoiseModel | TrainedModel | ImageInput,
    *,
    signal: tuple[float, float] | None = None,
    axes: str | None = None,
) -> dict[str, Any]:
    """The ``simulation.*`` settings of simulation-based training (SBD) for the images ``source`` stands for:

    - a trained model or its run folder: its measured noise model (scan lines included: its
      ``row_variance``); an SBD model: the noise it simulated;
    - a noisy image (file or array, one channel): a noise model fitted on it alone
      (:func:`~denoise_studio.engine.noise_model.fit_from_noisy`);
    - a :class:`NoiseModel`.

    ``signal`` (low, high; default: that image's signal range, the ends of the noise model's bins) puts
    the clean images on the target's scale. Pass the result to :func:`make_config`:
    ``ds.make_config("sbd", overrides=ds.simulation_settings("runs/target"), max_time=120)``, then
    ``ds.train(clean_images, config)``.
    """
    from .engine.noise_model import fit_from_noisy
    from .engine.simulation import simulation_settings as settings_of

    label = ""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        is_model = path.is_dir() or path.name == "config.json" or is_bmz_zip(path)
        source = load_model(path) if is_model else _single_channel(path, axes, "noisy image")
    if isinstance(source, TrainedModel):
        label = label or source.name
        if source.config.simulation is not None:  # an SBD model: the noise it simulated, as it simulated it
            values = source.config.simulation.model_dump()
            return {f"simulation.{key}": value for key, value in values.items()} | {"simulation.noise_source": label}
        if source.noise_model is None:
            raise InputError(
                f"{label}: this model has no noise model (one channel, trained on the noisy images alone, has one); "
                "fit one on the noisy image instead"
            )
        noise_model = source.noise_model
    elif isinstance(source, NoiseModel):
        noise_model = source
    else:
        array = np.asarray(source)
        noise_model = fit_from_noisy(_single_channel(array, axes, "noisy image"))
        label = label or "a noisy image"
    return settings_of(noise_model, signal, source=label)


def export_bmz(
    model: TrainedModel | str | os.PathLike,
    target: str | os.PathLike,
    image: ImageInput,
    *,
    name: str | None = None,
    description: str = "",
    authors: Sequence[str] = (),
    license: str = "CC-BY-4.0",
    citations: Sequence[tuple[str, str]] = (),
    overwrite: bool = False,
) -> Path:
    """Export a 2D or 2.5D single-channel model (or its run folder) as a BioImage Model Zoo zip that
    deepImageJ, Icy and bioimageio.core run without this package.

    ``image``: an image of the kind the model denoises (a ``(Y, X)`` plane; a ``(Z, Y, X)`` stack for
    2.5D); its centre becomes the package's test image and cover. ``citations`` are (text, DOI) pairs
    added to the method's paper. bioimageio.core's test must pass before ``target`` is written
    (atomically); ``load_model``/``predict`` take the zip back. Needs the ``bmz`` extra.
    """
    from .engine.bmz import BmzMetadata
    from .engine.bmz import export_bmz as _export

    if not isinstance(model, TrainedModel):
        model = load_model(model)
    # An array is cut before it is read (a lazy one is read only where the test image is).
    pixels = load_image(image) if isinstance(image, (str, os.PathLike)) else image
    metadata = BmzMetadata(
        name=name or f"{model.title} denoiser", description=description, authors=list(authors), license=license,
        citations=list(citations),
    )  # fmt: skip
    return _export(model, target, pixels, metadata, overwrite=overwrite)
