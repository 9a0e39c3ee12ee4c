"""The command-line parser: subcommands, flags and their help; choices come from the registry."""

from __future__ import annotations

import argparse

from .. import __version__
from ..engine.io import OUTPUT_DTYPES
from ..engine.registry import METHODS, MODES, OUTPUTS, PRESETS
from .commands import (
    cmd_adapt,
    cmd_assess,
    cmd_compare,
    cmd_demo,
    cmd_export,
    cmd_filter,
    cmd_gui,
    cmd_mask,
    cmd_predict,
    cmd_train,
)


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse turns the ValueError into exit status 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


AXES_HELP = (
    "what each dimension is, letters of STCZYX (samples, time, channels, depth, Y, X), e.g. CZYX; "
    "default: the file's own axes (OME-TIFF, ImageJ), else YX or ZYX"
)
MODEL_HELP = "run directory (or its config.json); 'starter': the bundled starter model (N2V, confocal)"
DTYPE_HELP = "type of the output: float32, or input (the input's type, rounded and clipped)"


def _chunks(text: str) -> tuple[int, int, int]:
    """argparse type: three whole numbers of at least 1, ``Z,Y,X``."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (three numbers), got {text!r}")
    return tuple(_positive_int(part) for part in parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denoise-studio",
        description="Self-supervised denoising of microscopy images (Noise2Void family).",
    )
    parser.add_argument("--version", action="version", version=f"denoise-studio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on noisy images and denoise them")
    p.add_argument(
        "input", nargs="+",
        help="TIFF/PNG image(s) or stack(s) to train on (sbd: the noisy images to denoise; the noise model is "
        "fitted on the first unless --noise-model)",
    )  # fmt: skip
    methods = "; ".join(f"{name}: {info.label}" for name, info in METHODS.items())
    p.add_argument("--method", choices=tuple(METHODS), default="n2v", help=methods)
    p.add_argument("--mode", choices=tuple(MODES), help="2d (the default), 2.5d or 3d; with --init, the model's")
    p.add_argument("--preset", choices=PRESETS, default="fast")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-time", type=float, dest="max_time", help="wall-time budget in seconds")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set patch_size=96 --set training.learning_rate=5e-4",
    )
    p.add_argument("--out", required=True, help="run directory for config.json, model.pth, denoised.tif")
    p.add_argument("--no-predict", action="store_true", help="only train; do not denoise the input")
    p.add_argument("--target", nargs="+", help="n2n: second noisy acquisition(s); care: clean acquisition(s)")
    p.add_argument(
        "--target-from", dest="target_from", help="care: target made by a filter: gaussian:1.5, median:5, nlm"
    )
    p.add_argument("--register", action="store_true", help="shift a misaligned target onto the input")
    p.add_argument(
        "--clean", nargs="+", metavar="CLEAN",
        help="sbd: clean (high-SNR, averaged or simulated) images of similar structures to train on",
    )  # fmt: skip
    p.add_argument(
        "--noise-model", dest="noise_model", metavar="RUN_DIR|NOISY",
        help="sbd: the noise to simulate: a trained model's noise model (its run folder), or one fitted on a "
        "noisy image (default: the first input)",
    )  # fmt: skip
    p.add_argument(
        "--field-of-view", type=_positive_int, dest="field_of_view", metavar="PIXELS",
        help="the U-Net gets the smallest depth that sees this far across (wider helps at low SNR)",
    )  # fmt: skip
    p.add_argument("--deconv-psf", type=float, dest="deconv_psf", help="n2v/n2v2: DecoNoising with a Gaussian PSF")
    p.add_argument("--positivity", type=float, help="DecoNoising: weight of the positivity penalty (default 1)")
    p.add_argument("--auto-approve", action="store_true", help="autostructn2v: approve the extracted mask unseen")
    p.add_argument("--mask", help="autostructn2v: use this mask (.npy) and train stage 2 (structN2V) only")
    p.add_argument("--axes", help=AXES_HELP)
    p.add_argument(
        "--channels", choices=("independent", "joint"),
        help="several channels: each its own normalisation, one shared network (independent, the default), "
        "or all channels in and out together (joint)",
    )  # fmt: skip
    p.add_argument("--dtype", choices=OUTPUT_DTYPES, default="float32", help=DTYPE_HELP)
    p.add_argument(
        "--from-disk", action="store_true", dest="from_disk",
        help="read training patches from the files instead of loading them (automatic for OME-Zarr and for "
        "files too large for memory)",
    )  # fmt: skip
    p.add_argument(
        "--init", metavar="RUN_DIR",
        help="continue or fine-tune this trained model ('starter': the bundled one): its weights are the start, "
        "its network (mode, U-Net) is kept, and so is its normalisation unless --renormalize",
    )  # fmt: skip
    p.add_argument("--renormalize", action="store_true", help="with --init: fit the new images' normalisation")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "adapt",
        help="GainTuning: adapt a trained model to one image it has not seen (a gain per feature channel, "
        "tuned on that image alone)",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("input", help="the image to adapt to (it is denoised with the adapted model)")
    p.add_argument("--out", required=True, metavar="ADAPTED_RUN", help="run directory of the adapted model")
    p.add_argument(
        "--max-time", type=float, dest="max_time",
        help="budget in seconds (default 60); held-out blocks of the image stop it earlier when the gains stop helping",
    )  # fmt: skip
    p.add_argument("--learning-rate", type=float, dest="learning_rate", help="Adam step of the gains (default 5e-3)")
    p.add_argument("--seed", type=int)
    p.add_argument("--axes", help=AXES_HELP)
    p.add_argument("--dtype", choices=OUTPUT_DTYPES, default="float32", help=DTYPE_HELP)
    p.add_argument("--no-predict", action="store_true", help="only adapt; do not denoise the image")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser(
        "predict", help="apply a trained model to images or stacks (streamed to disk), one file or many"
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument(
        "inputs", nargs="+", metavar="input",
        help="TIFF/PNG/OME-Zarr images; several files, folders (their image files) and quoted glob patterns "
        "('raw/*.tif', 'data/**/*.tif') go into --out-dir",
    )  # fmt: skip
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out", help="output file of one input: .tif/.tiff (OME-TIFF) or .zarr (OME-Zarr with a pyramid)"
    )
    where.add_argument(
        "--out-dir", metavar="DIR",
        help="folder for many inputs: <name>_denoised.tif each (.zarr for OME-Zarr inputs); existing outputs are "
        "skipped unless --force, and a failing file is reported without stopping the rest",
    )  # fmt: skip
    p.add_argument("--zarr", action="store_true", help="with --out-dir: write every output as OME-Zarr")
    p.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=None,
        help="test-time augmentation: average the model over its flips/rotations (8, or 4 for structured noise; "
        "that many times slower); default: the model's own setting (on for the High Quality preset)",
    )  # fmt: skip
    p.add_argument("--tile", type=_positive_int, default=256, help="tile side in pixels (the overlap is automatic)")
    p.add_argument("--batch", type=_positive_int, default=4, help="tiles per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--output",
        choices=(*OUTPUTS, "stage1"),
        default="denoised",
        help="DecoNoising models also give the deconvolved image; autoStructN2V runs their stage-1 network",
    )
    p.add_argument("--axes", help=AXES_HELP)
    p.add_argument("--dtype", choices=OUTPUT_DTYPES, default="float32", help=DTYPE_HELP)
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers", type=_positive_int,
        help="predict block by block on a local dask cluster of N worker processes (data larger than memory)",
    )  # fmt: skip
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="predict block by block on an existing dask cluster, e.g. tcp://host:8786 (its workers must see "
        "the input and output paths)",
    )  # fmt: skip
    p.add_argument(
        "--chunks", type=_chunks, metavar="Z,Y,X",
        help="block size of block-by-block prediction (default 16,512,512; the overlap is the model's exact margin)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="export a trained model as a BioImage Model Zoo zip (deepImageJ, Icy, bioimageio.core)"
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--bmz", required=True, metavar="OUT.zip", help="the package to write")
    p.add_argument(
        "--image", required=True,
        help="an image of the kind the model denoises (a stack for 2.5D): its centre becomes the test image and cover",
    )  # fmt: skip
    p.add_argument("--name", help="the model's name (default: its method and mode)")
    p.add_argument("--description", default="", help="one or two sentences: what it denoises")
    p.add_argument("--author", action="append", default=[], help="an author's name (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence id of the package (default CC-BY-4.0)")
    p.add_argument(
        "--cite", action="append", default=[], metavar="TEXT|DOI",
        help="a citation to add (the method's paper is always cited), e.g. 'Me et al. 2026|10.1234/abcd'",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite an existing zip")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("filter", help="apply a classical filter (gaussian, median, box, box3d, nlm)")
    p.add_argument("input")
    p.add_argument("--filter", required=True, help="e.g. gaussian:1.5, median:5, box:3, box3d:3, nlm")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("compare", help="compare results (and filters) with numbers and a side-by-side figure")
    p.add_argument("noisy")
    p.add_argument("results", nargs="*", help="denoised images to compare")
    p.add_argument("--filter", action="append", help="also compare a filter, e.g. --filter gaussian:1.5")
    p.add_argument("--reference", help="a high-SNR image of the same field: PSNR, SSIM, SNR")
    p.add_argument("--figure", help="write a side-by-side PNG")
    p.add_argument("--model", help="a run folder: its noise model adds a reference-free PSNR estimate per result")
    p.add_argument("--force", action="store_true", help="overwrite an existing figure file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("assess", help="how good is a denoised image without a reference: PSNR estimate, residual")
    p.add_argument("noisy")
    p.add_argument("denoised")
    p.add_argument("--model", help="run folder of the model that made DENOISED (its noise model, and the model)")
    p.add_argument("--filter", help="the filter that made DENOISED, e.g. gaussian:1.5 (for the estimate)")
    p.add_argument("--second", help="an independent noisy acquisition of the same field (the best MSE estimate)")
    p.add_argument("--calibration", help="repeated frames of a static field (T, Y, X) for the noise model")
    p.add_argument("--dark", help="dark frames (T, Y, X) for the noise model's offset and read noise")
    p.add_argument("--data-range", type=float, help="range for the PSNR (default: the noisy image's 0.1-99.9 %% span)")
    p.add_argument("--axes", help="axes of the images (letters of STCZYX), when not in the files")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--maps", help="write PREFIX_residual.tif and PREFIX_likelihood.tif")
    p.add_argument("--force", action="store_true", help="overwrite existing map files")
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser("mask", help="extract a structured-noise mask from a trained model's residual")
    p.add_argument("model", help="run directory of a trained model (N2V or autoStructN2V)")
    p.add_argument("input", help="the noisy image or stack")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="extractor parameter, e.g. --set base_percentile=60 --set max_pixels=9",
    )
    p.add_argument("--out", help="save the mask as .npy")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--force", action="store_true", help="overwrite an existing mask file")
    p.set_defaults(func=cmd_mask)

    p = sub.add_parser("gui", help="open napari with the Denoise Studio docks and a sample loaded")
    p.add_argument("files", nargs="*", help="image files to open instead of a sample")
    p.add_argument("--sample", choices=("confocal", "stem", "timelapse", "none"), default="confocal")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("demo", help="denoise the bundled sample image and write a side-by-side PNG")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--max-time", type=float, default=60.0, dest="max_time", help="training budget in seconds")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.set_defaults(func=cmd_demo)
    return parser
