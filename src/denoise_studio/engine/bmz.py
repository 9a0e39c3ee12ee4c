"""BioImage Model Zoo packages: a trained model that deepImageJ, Icy and bioimageio.core run without
this package, and such a package read back as a model.

The package (bioimageio.spec 0.5) holds the network twice: as TorchScript, and as a state dict
whose architecture file travels inside the zip. That file is generated from this package's own
U-Net source (:func:`architecture_source`), so it never drifts from the network that was trained
and imports nothing but torch. The normalisation is BMZ pre/post-processing (a fixed mean/std in,
a linear map back out), the halo is the network's exact tile margin, the README's Validation
section reports the reference-free quality estimate on the test image, and bioimageio.core's own
test must pass before the zip is written (atomically).

Reading: a zip this package wrote carries its ``config.json`` (and noise model) as attachments and
loads as the model it was; any other BMZ model is refused with a line that says where to run it.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import unet as unet_module
from .errors import ConfigError, InputError
from .model import TrainedModel
from .persistence import CONFIG_FILE, FORMAT, NOISE_MODEL_FILE, WEIGHTS_FILE, config_record, save_noise_models
from .registry import stop_reason_text

#: The callable of the architecture file, and the file's name inside the zip.
ARCHITECTURE_CALLABLE = "DenoiseStudioUNet"
ARCHITECTURE_FILE = "denoise_studio_unet.py"
TORCHSCRIPT_FILE = "model_torchscript.pt"
#: bioimageio.core's fixed normalisation divides by ``std + eps``; the test output must too.
CORE_NORMALIZATION_EPS = 1e-6
#: Side of the test image cut from the user's image (smaller images are used whole).
TEST_SIDE = 256
INSTALL_HINT = "BioImage Model Zoo export needs bioimageio.core: pip install 'napari-denoise-studio[bmz]'"

#: What each method's package cites (the method's paper), as (text, DOI).
CITATIONS: dict[str, tuple[str, str]] = {
    "n2v": ("Krull, Buchholz, Jug. Noise2Void - learning denoising from single noisy images. CVPR 2019",
            "10.1109/CVPR.2019.00223"),
    "n2v2": ("Hoeck et al. N2V2 - fixing Noise2Void checkerboard artifacts with modified sampling strategies and a "
             "tweaked network architecture. ECCV Workshops 2022", "10.1007/978-3-031-25069-9_33"),
    "autostructn2v": ("Broaddus et al. Removing structured noise with self-supervised blind-spot networks. "
                      "ISBI 2020", "10.1109/ISBI45749.2020.9098336"),
    "n2n": ("Lehtinen et al. Noise2Noise: learning image restoration without clean data. ICML 2018",
            "10.48550/arXiv.1803.04189"),
    "care": ("Weigert et al. Content-aware image restoration: pushing the limits of fluorescence microscopy. "
             "Nature Methods 2018", "10.1038/s41592-018-0216-7"),
}  # fmt: skip
METHOD_TAGS = {"n2v": ("noise2void",), "n2v2": ("noise2void",), "autostructn2v": ("noise2void",),
               "n2n": ("noise2noise",), "care": ("care",)}  # fmt: skip
UNET_CITATION = ("Ronneberger, Fischer, Brox. U-Net: convolutional networks for biomedical image segmentation. "
                 "MICCAI 2015", "10.1007/978-3-319-24574-4_28")  # fmt: skip


def package_name(text: str) -> str:
    """``text`` as a BMZ model name: letters, digits, spaces and ``_+-()`` only (so "2.5D" becomes "2p5D")."""
    text = text.replace("2.5D", "2p5D").replace(".", "p")
    cleaned = "".join(char if char.isalnum() or char in " _+-()" else " " for char in text)
    return " ".join(cleaned.split())[:128]


class BmzError(ValueError):
    """A model that cannot be exported, a package that failed bioimageio.core's test, or a zip that is
    not one of ours."""


@dataclass
class BmzMetadata:
    """What the package says about itself (the napari dialog's fields)."""

    name: str
    description: str
    authors: list[str] = field(default_factory=list)
    license: str = "CC-BY-4.0"
    #: (text, DOI) pairs; the method's paper is always cited.
    citations: list[tuple[str, str]] = field(default_factory=list)


# -- the architecture file ---------------------------------------------------------------------
def architecture_source() -> str:
    """A self-contained module (torch only) with this package's U-Net and a keyword-argument entry
    point, ``DenoiseStudioUNet(in_channels, out_channels, dims, **network)``; ``network`` are the
    fields of the model's ``ModelConfig``."""
    parts = [
        inspect.getsource(item)
        for item in (
            unet_module._check_dims, unet_module._sampling_factor, unet_module.centre_channels,
            unet_module.ConvBlock, unet_module.Down, unet_module.Up, unet_module.UNet,
        )
    ]  # fmt: skip
    header = '''\
        """The U-Net of napari-denoise-studio, exported for the BioImage Model Zoo (needs only torch)."""

        from __future__ import annotations

        from types import SimpleNamespace

        import torch
        import torch.nn.functional as F
        from torch import nn

        DIMS = (2, 3)

        '''
    entry = f'''\


        class {ARCHITECTURE_CALLABLE}(UNet):
            """The U-Net from plain keyword arguments: the fields of the model's network settings."""

            def __init__(self, in_channels: int = 1, out_channels: int = 1, dims: int = 2, **network):
                super().__init__(SimpleNamespace(**network), in_channels, out_channels, dims=dims)
        '''
    return textwrap.dedent(header) + "\n\n".join(parts) + textwrap.dedent(entry)


def architecture_kwargs(model: TrainedModel) -> dict:
    network = model.network
    return {
        "in_channels": int(network.in_channels),
        "out_channels": int(network.out_channels),
        "dims": int(network.dims),
        **model.network.config.model_dump(mode="json"),
    }


# -- export ------------------------------------------------------------------------------------
def check_exportable(model: TrainedModel) -> None:
    """Refuse, saying why, a model the package format here cannot describe."""
    if model.mode not in ("2d", "2.5d"):
        raise BmzError(f"BioImage Model Zoo export takes 2D and 2.5D models; this one is {model.mode.upper()}")
    if model.channels != 1:
        raise BmzError(f"BioImage Model Zoo export takes single-channel models; this one has {model.channels} channels")
    if model.deconvolving:
        raise BmzError("a DecoNoising model gives two outputs; BioImage Model Zoo export takes denoising models only")


def test_input(model: TrainedModel, image: np.ndarray) -> np.ndarray:
    """The test tensor ``(1, C, Y, X)``: a central crop of ``image`` (2D: a ``(Y, X)`` plane, or the
    middle one of a stack; 2.5D: the three middle slices of a ``(Z, Y, X)`` stack), its sides a
    multiple of the network's step."""
    # Cut before reading: a lazy (dask, zarr) image is read only where the crop is.
    if model.mode == "2.5d":
        if image.ndim != 3 or image.shape[0] < 3:
            raise InputError(f"a 2.5D model's test image is a stack of at least 3 slices, got shape {image.shape}")
        middle = image.shape[0] // 2
        planes = image[middle - 1 : middle + 2]
    else:
        if image.ndim == 3:  # a stack: its middle plane
            image = image[image.shape[0] // 2]
        if image.ndim != 2:
            raise InputError(f"a 2D model's test image is a (Y, X) plane or a stack, got shape {image.shape}")
        planes = image[np.newaxis]
    step = model.network.step
    sides = [min(TEST_SIDE, side) // step * step for side in planes.shape[-2:]]
    if min(sides) < 2 * step:
        raise InputError(f"the test image is too small ({planes.shape[-2]}x{planes.shape[-1]} pixels)")
    top, left = ((side - cut) // 2 for side, cut in zip(planes.shape[-2:], sides, strict=True))
    crop = np.asarray(planes[:, top : top + sides[0], left : left + sides[1]], dtype=np.float32)
    if not np.isfinite(crop).all():
        raise InputError("the test image holds NaN or infinite values")
    return np.ascontiguousarray(crop[np.newaxis])


def reference_output(model: TrainedModel, inputs: np.ndarray) -> np.ndarray:
    """What bioimageio.core computes: fixed normalisation, the network in fp32 on the whole tensor, the
    linear map back."""
    norm, out = model.normalization, model.output_normalization
    normalised = (inputs - norm.offset) / (norm.scale + CORE_NORMALIZATION_EPS)
    network = model.network.to("cpu").float().eval()
    with torch.no_grad():
        result = network(torch.from_numpy(normalised.astype(np.float32))).numpy()
    return (result * out.scale + out.offset).astype(np.float32)


def export_bmz(
    model: TrainedModel, target: str | os.PathLike, image: np.ndarray, metadata: BmzMetadata, *, overwrite: bool = False
) -> Path:
    """Write ``model`` as a BioImage Model Zoo zip to ``target``, with a test image cut from ``image``;
    bioimageio.core's test must pass first (else :class:`BmzError` with its failures, nothing written)."""
    try:
        import bioimageio.core  # noqa: F401
    except ImportError:
        raise BmzError(INSTALL_HINT) from None
    check_exportable(model)
    target = Path(target)
    if target.suffix.lower() != ".zip":
        raise InputError(f"{target}: a BioImage Model Zoo package is a .zip file")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another file or allow overwriting it")
    metadata = replace(metadata, name=package_name(metadata.name))
    if len(metadata.name) < 5:
        raise ConfigError("name: give the model a name of at least 5 letters (letters, digits, spaces, _+-())")
    inputs = test_input(model, image)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="denoise-studio-bmz-") as work:
        work = Path(work)
        description = _describe(model, inputs, metadata, work)
        staged = target.with_name(f".{target.name}.part")
        try:
            _save_package(description, staged)
            _test_package(staged)
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
    os.chmod(target, 0o666 & ~_umask())
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _describe(model: TrainedModel, inputs: np.ndarray, metadata: BmzMetadata, work: Path):
    from bioimageio.spec import InvalidDescr
    from bioimageio.spec.model import v0_5 as spec

    from .assessment import assess
    from .figures import side_by_side
    from .prediction import Predictor

    network = model.network.to("cpu").float().eval()
    state = {key: value.detach().cpu() for key, value in network.state_dict().items()}
    torch.save(state, work / WEIGHTS_FILE)
    (work / ARCHITECTURE_FILE).write_text(architecture_source())
    example = torch.from_numpy(inputs)
    # Traced, not scripted: the network's layout is fixed by its settings, and tracing keeps every size.
    with torch.no_grad():
        torch.jit.trace(network, example, check_trace=False).save(str(work / TORCHSCRIPT_FILE))
    outputs = reference_output(model, inputs)
    np.save(work / "test_input.npy", inputs)
    np.save(work / "test_output.npy", outputs)
    import tifffile

    centre = inputs.shape[1] // 2
    tifffile.imwrite(work / "sample_input.tif", inputs[0] if inputs.shape[1] > 1 else inputs[0, 0])  # (C,) Y, X
    tifffile.imwrite(work / "sample_output.tif", outputs[0, 0])
    import imageio.v3 as iio

    iio.imwrite(work / "cover.png", side_by_side([("noisy", inputs[0, centre]), ("denoised", outputs[0, 0])]))
    _write_record(model, work)

    halo = Predictor(network, model.normalization, model.mode, device="cpu").margin
    step = network.step
    smallest = (2 * halo // step + 1) * step
    quality = _quality_lines(model, inputs[0, centre], outputs[0, 0], assess)
    (work / "README.md").write_text(_readme(model, metadata, halo, smallest, quality))

    in_id = spec.TensorId("input")
    names = ["raw"] if inputs.shape[1] == 1 else ["z-1", "z+0", "z+1"]
    in_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=names)]
    out_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=["denoised"])]
    for axis in ("y", "x"):
        in_axes.append(spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=smallest, step=step)))
        out_axes.append(
            spec.SpaceOutputAxisWithHalo(
                id=spec.AxisId(axis), size=spec.SizeReference(tensor_id=in_id, axis_id=spec.AxisId(axis)), halo=halo
            )
        )
    norm, out = model.normalization, model.output_normalization
    try:
        description = _model_description(spec, model, metadata, work, norm, out, in_axes, out_axes, names, halo)
    except ValueError as err:  # pydantic's ValidationError: the spec's own checks (e.g. of the test tensors)
        raise BmzError(f"the package description is not valid: {err}") from None
    if isinstance(description, InvalidDescr):
        raise BmzError(f"the package description is not valid: {description.validation_summary.format()}")
    return description


def _model_description(spec, model, metadata, work, norm, out, in_axes, out_axes, names, halo):
    in_id, out_id = spec.TensorId("input"), spec.TensorId("output")
    authors = [spec.Author(name=name) for name in metadata.authors] or [spec.Author(name="napari-denoise-studio user")]
    citations = [*([CITATIONS[model.method]] if model.method in CITATIONS else []), UNET_CITATION, *metadata.citations]
    torch_version = spec.Version(torch.__version__.split("+")[0])
    return spec.ModelDescr(
        name=metadata.name.strip(),
        description=metadata.description.strip() or f"{model.title} denoiser trained with napari-denoise-studio",
        authors=authors,
        cite=[spec.CiteEntry(text=text, doi=spec.Doi(doi)) for text, doi in dict.fromkeys(citations)],
        license=spec.LicenseId(metadata.license),
        documentation=spec.FileDescr(source=work / "README.md"),
        covers=[spec.FileDescr(source=work / "cover.png")],
        attachments=[spec.FileDescr(source=work / CONFIG_FILE)]
        + ([spec.FileDescr(source=work / NOISE_MODEL_FILE)] if (work / NOISE_MODEL_FILE).exists() else []),
        tags=["denoising", "pytorch", "unet", "2d", *METHOD_TAGS.get(model.method, ())],
        inputs=[
            spec.InputTensorDescr(
                id=in_id, axes=in_axes, description="noisy image" + (", slices Z-1, Z, Z+1" if len(names) > 1 else ""),
                test_tensor=spec.FileDescr(source=work / "test_input.npy"),
                sample_tensor=spec.FileDescr(source=work / "sample_input.tif"),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[spec.FixedZeroMeanUnitVarianceDescr(
                    kwargs=spec.FixedZeroMeanUnitVarianceKwargs(mean=float(norm.offset), std=float(norm.scale))
                )],
            )
        ],
        outputs=[
            spec.OutputTensorDescr(
                id=out_id, axes=out_axes, description="denoised image, in the input's intensities"
                if model.target_normalization is None else "denoised image, in the training target's intensities",
                test_tensor=spec.FileDescr(source=work / "test_output.npy"),
                sample_tensor=spec.FileDescr(source=work / "sample_output.tif"),
                data=spec.IntervalOrRatioDataDescr(type="float32"),
                postprocessing=[spec.ScaleLinearDescr(
                    kwargs=spec.ScaleLinearKwargs(gain=float(out.scale), offset=float(out.offset))
                )],
            )
        ],
        weights=spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=work / WEIGHTS_FILE,
                architecture=spec.ArchitectureFromFileDescr(
                    source=work / ARCHITECTURE_FILE, callable=spec.Identifier(ARCHITECTURE_CALLABLE),
                    kwargs=architecture_kwargs(model),
                ),
                pytorch_version=torch_version,
            ),
            torchscript=spec.TorchscriptWeightsDescr(
                source=work / TORCHSCRIPT_FILE, pytorch_version=torch_version, parent="pytorch_state_dict",
                comment="torch.jit.trace of the pytorch_state_dict network",
            ),
        ),
    )  # fmt: skip


def _write_record(model: TrainedModel, work: Path) -> None:
    """Our ``config.json`` (one network: an autoStructN2V model goes as its structN2V stage 2, mask
    included) and the noise model, attached so that the zip loads back as the model it was."""
    import json

    record = config_record(
        model.config, model.normalizations, model.summary, target_normalization=model.target_normalization,
        input_axes=model.input_axes,
    )  # fmt: skip
    record["method"] = model.config.method
    (work / CONFIG_FILE).write_text(json.dumps(record, indent=2))
    if model.noise_models:
        save_noise_models(work, model.noise_models)


def _quality_lines(model: TrainedModel, noisy: np.ndarray, denoised: np.ndarray, assess) -> list[str]:
    if model.noise_model is None or model.target_normalization is not None:
        return ["No reference-free estimate: this model has no noise model (paired methods answer in their "
                "target's intensities)."]  # fmt: skip
    try:
        result = assess(noisy, denoised, model.noise_model)
    except (ValueError, InputError) as err:
        return [f"The reference-free estimate could not be made on the test image: {err}"]
    low, high = result.psnr_range
    return [
        f"On the packaged test image, against the noise model measured after training (no ground truth): "
        f"estimated PSNR {result.psnr_estimate:.1f} dB (plausible {low:.1f} to {high:.1f} dB), "
        f"estimated MSE {result.mse_estimate:.4g} in the input's intensities; residual: {result.whiteness.verdict}.",
    ]


def _readme(model: TrainedModel, metadata: BmzMetadata, halo: int, smallest: int, quality: list[str]) -> str:
    summary = model.summary
    ended = stop_reason_text(model.stop_reason).lower()
    norm, out = model.normalization, model.output_normalization
    slices = "three neighbouring slices (Z-1, Z, Z+1) as channels in, the centre slice out" if model.mode == "2.5d" \
        else "one plane in, one plane out"  # fmt: skip
    lines = [
        f"# {metadata.name.strip()}",
        "",
        metadata.description.strip() or f"A {model.title} denoiser trained with napari-denoise-studio.",
        "",
        "## What it is",
        f"- Method: {model.title}; {slices}.",
        f"- Network: U-Net, depth {model.network.config.depth}, {model.network.config.base_features} features "
        f"(`{ARCHITECTURE_FILE}`, callable `{ARCHITECTURE_CALLABLE}`; it needs only torch).",
        f"- Training: {summary.get('steps', '?')} steps, {summary.get('elapsed_s', '?')} s on "
        f"{summary.get('device', '?')} ({summary.get('precision', '?')}); {ended}.",
        f"- Normalisation: (x - {norm.offset:.6g}) / {norm.scale:.6g} in; x * {out.scale:.6g} + {out.offset:.6g} out.",
        f"- Tiles: sides a multiple of {model.network.step}, at least {smallest} px; crop a halo of {halo} px "
        "from every tile side (the network's exact receptive field).",
    ]
    grid = _mask_grid(model)
    if grid:
        lines += ["- The structured-noise mask it was trained with (`#`: hidden with each blind spot):", "", grid, ""]
    if model.noise_model is not None:
        lines.append(f"- Noise model measured after training: {model.noise_model.describe()}.")
    lines += [
        "",
        "## Validation",
        *quality,
        "The test tensors check that a runtime reproduces the network's output; they say nothing about quality "
        "on other data. Check results on your own images, ideally against a high-SNR acquisition of the same field.",
        "",
        "## Use",
        "Open it in deepImageJ (Fiji) or Icy, or run it with bioimageio.core "
        "(`bioimageio predict`); in napari-denoise-studio, `load_model` and `predict` take the zip as it is.",
    ]
    return "\n".join(lines) + "\n"


def _mask_grid(model: TrainedModel) -> str:
    """The struct mask (autoStructN2V's approved one) as a text grid, the centre slice of a 2.5D one."""
    masking = model.config.masking
    mask = model.mask if model.mask is not None else (masking.struct_mask if masking is not None else None)
    if mask is None:
        return ""
    mask = np.asarray(mask, dtype=bool)
    plane = mask[mask.shape[0] // 2] if mask.ndim == 3 else mask
    return "\n".join("    " + " ".join("#" if value else "." for value in row) for row in plane)


def _save_package(description, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(description, output_path=path)


def _test_package(path: Path) -> None:
    """bioimageio.core's own test (both weight formats, several sizes); its failures, if any, as one error."""
    import bioimageio.core

    summary = bioimageio.core.test_model(path, devices=["cpu"])
    if summary.status != "passed":
        failures = [
            f"{detail.name}: {'; '.join(error.msg for error in detail.errors)}"
            for detail in summary.details
            if detail.status == "failed"
        ]
        reasons = " | ".join(failures or [summary.status])
        raise BmzError(f"bioimageio.core's test failed, nothing was written: {reasons}")


# -- import ------------------------------------------------------------------------------------
def is_bmz_zip(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.suffix.lower() != ".zip" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in ("rdf.yaml", "bioimageio.yaml") or name.endswith(".bioimageio.yaml")
                       for name in archive.namelist())  # fmt: skip
    except zipfile.BadZipFile:
        return False


def read_bmz(path: str | os.PathLike) -> TrainedModel:
    """A zip this package exported, as the model it was (weights read with ``weights_only=True``);
    any other BMZ model is refused, saying where to run it."""
    from .persistence import ModelFileError, load_model

    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if CONFIG_FILE not in names or WEIGHTS_FILE not in names or not _ours(archive.read(CONFIG_FILE)):
            raise ModelFileError(
                f"{path} is a BioImage Model Zoo model that napari-denoise-studio did not make; run it with "
                "bioimageio.core, deepImageJ (Fiji) or Icy"
            )
        with tempfile.TemporaryDirectory(prefix="denoise-studio-bmz-") as folder:
            for name in (CONFIG_FILE, WEIGHTS_FILE, NOISE_MODEL_FILE):
                if name in names:
                    (Path(folder) / name).write_bytes(archive.read(name))
            model = load_model(folder)
    model.run_dir = None
    model.summary = {**model.summary, "bmz_package": str(path)}
    return model


def _ours(config: bytes) -> bool:
    import json

    try:
        return json.loads(config).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False
