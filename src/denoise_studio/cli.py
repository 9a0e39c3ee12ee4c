"""The command line: flags -> config -> engine, with progress bars on the terminal.

Bad input ends with exit status 2 and one clear line on stderr, never a traceback. Ctrl-C during
training stops it cleanly and keeps the best model so far (a second Ctrl-C aborts).
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from . import __version__
from .engine.compare import compare_results, format_table
from .engine.config import (
    METHODS,
    MODES,
    PRESETS,
    ConfigError,
    MaskExtractorConfig,
    format_validation_error,
    make_autostruct_config,
    make_config,
)
from .engine.data import Normalization, plane_input
from .engine.events import PipelineStateError, ProgressEvent, StopRequest
from .engine.figures import side_by_side, write_png
from .engine.filters import apply_filter_spec
from .engine.io import InputError, load_image, write_tiff
from .engine.model_files import ModelFileError, load_model, save_model
from .engine.prediction import PredictionStopped, Predictor
from .engine.targets import prepare_targets
from .engine.training import train

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 130


class UsageError(Exception):
    """A command-line problem the user can fix (existing output, missing file...)."""


# -- terminal progress -------------------------------------------------------------------------
class ProgressPrinter:
    """A one-line progress bar on a terminal; one line per epoch when stderr is not a terminal."""

    def __init__(self, stream=None, width: int = 30, interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("started", "finished"):
            self._newline()
            label = "start" if event.kind == "started" else "done"
            self.stream.write(f"[{event.stage}] {label}: {event.message}\n")
            self.stream.flush()
            return
        now = time.monotonic()
        final_plane = event.kind == "plane" and event.batch == event.batches
        if event.kind in ("batch", "plane", "tile") and not self.tty:
            if final_plane:
                self.stream.write(f"[{event.stage}] {event.batches} planes in {event.elapsed:.1f} s\n")
            return
        if event.kind in ("batch", "plane", "tile") and now - self._last < self.interval and not final_plane:
            return
        self._last = now
        line = self._format(event)
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:120])
            if event.kind == "epoch" and event.epoch == event.epochs:
                self._newline()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _format(self, event: ProgressEvent) -> str:
        filled = int(round(event.fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        left = f" ~{_duration(event.time_left)} left" if event.time_left is not None else ""
        if event.kind in ("plane", "tile"):
            return f"[{event.stage}] |{bar}| {event.prediction_position}{left}"
        parts = [f"[{event.stage}] |{bar}| epoch {event.epoch}/{event.epochs}"]
        if event.train_loss is not None:
            parts.append(f"loss {event.train_loss:.4f}")
        if event.val_loss is not None:
            parts.append(f"val {event.val_loss:.4f}")
        if event.best_val_loss is not None:
            parts.append(f"best {event.best_val_loss:.4f}")
        return " ".join(parts) + left

    def _newline(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _StopOnInterrupt:
    """First Ctrl-C asks the engine to stop (keeping the best model); the second one aborts."""

    def __init__(self, stop: StopRequest):
        self.stop = stop
        self._previous = None

    def __enter__(self):
        if sys.stdin is not None and hasattr(signal, "SIGINT"):
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # not in the main thread
                self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.stop.requested:
            raise KeyboardInterrupt
        sys.stderr.write("\nstopping after this batch (Ctrl-C again to abort)...\n")
        self.stop.set()

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# -- helpers -------------------------------------------------------------------------------------
def _check_output(path: Path, force: bool, is_dir: bool = False) -> None:
    """Never overwrite a user's file without asking."""
    if is_dir and path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; choose another --out")
    exists = path.exists() and (not is_dir or any(path.iterdir()))
    if not exists or force:
        return
    if sys.stdin is not None and sys.stdin.isatty():
        answer = input(f"{path} exists. Overwrite? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return
    raise UsageError(f"{path} already exists; choose another output or pass --force to overwrite")


def _parse_sets(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set learning_rate=1e-3")
        overrides[key.strip()] = value
    return overrides


def write_history(path: Path, history: list[dict]) -> None:
    if not history:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


# -- commands ------------------------------------------------------------------------------------
def _train_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--set`` values plus the dedicated flags (a flag wins over the same key in ``--set``)."""
    overrides: dict[str, object] = _parse_sets(args.set or [])
    for flag in ("epochs", "max_time", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            overrides[flag] = value
    paired = {"target_from": args.target_from, "psf_sigma": args.deconv_psf, "positivity": args.positivity}
    overrides.update({key: value for key, value in paired.items() if value is not None})
    if args.register:
        overrides["register_target"] = True
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    if args.method == "autostructn2v":
        return cmd_train_autostruct(args)
    if args.auto_approve or args.mask:
        raise UsageError("--auto-approve and --mask belong to --method autostructn2v")
    config = make_config(args.method, args.mode, args.preset, _train_overrides(args))
    out = Path(args.out)
    _check_output(out, args.force, is_dir=True)
    images = [load_image(path) for path in args.input]
    raw_targets = [load_image(path) for path in args.target] if args.target else None
    targets = prepare_targets(config, images, raw_targets)
    normalization = Normalization.fit(images, config.data)
    target_normalization = Normalization.fit(targets, config.data) if targets is not None else None

    def checkpoint(state: dict, summary: dict) -> None:
        # The best weights so far are always on disk, even if the run is killed.
        save_model(out, config, normalization, state, summary, target_normalization=target_normalization)

    stop = StopRequest()
    printer = ProgressPrinter()
    # The targets are resolved once, here (filter-made ones included), so the trainer gets them as given.
    resolved = config.model_copy(update={"supervised": config.supervised.model_copy(update={"target_from": None})})
    with _StopOnInterrupt(stop):
        result = train(
            resolved, images, callback=printer, stop=stop, checkpoint=checkpoint, normalization=normalization,
            targets=targets, target_normalization=target_normalization,
        )  # fmt: skip
    write_history(out / "history.csv", result.history)
    print(f"model: {out / 'config.json'}, {out / 'model.pth'}")
    if args.no_predict:
        return 0
    outputs = ["denoised", "deconvolved"] if config.deconv.psf_sigma is not None else ["denoised"]
    for output in outputs:
        predictor = Predictor(
            result.model, result.normalization, config.mode, device=config.training.device,
            output_normalization=target_normalization, output=output,
        )  # fmt: skip
        for index, (path, image) in enumerate(zip(args.input, images, strict=True)):
            denoised = predictor.predict(image[0] if image.shape[0] == 1 else image, callback=printer)
            name = f"{output}.tif" if len(images) == 1 else f"{output}_{index + 1}_{Path(path).stem}.tif"
            print(f"{output}: {write_tiff(out / name, denoised)}")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_output(out, args.force)
    image = load_image(args.input)
    try:
        filtered = apply_filter_spec(image, args.filter)
    except ValueError as err:
        raise UsageError(f"--filter: {err}") from None
    print(f"filtered: {write_tiff(out, filtered[0] if image.shape[0] == 1 else filtered)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    noisy = load_image(args.noisy)
    results = {Path(path).stem: load_image(path) for path in args.results}
    for spec in args.filter or []:
        try:
            results[spec] = apply_filter_spec(noisy, spec)
        except ValueError as err:
            raise UsageError(f"--filter: {err}") from None
    reference = load_image(args.reference) if args.reference else None
    try:
        rows = compare_results(noisy, results, reference)
    except ValueError as err:
        raise InputError(str(err)) from None
    print(format_table(rows))
    if args.figure:
        panels = [("noisy", noisy), *results.items()] + ([("reference", reference)] if reference is not None else [])
        write_png(Path(args.figure), side_by_side(panels, reference))
        print(f"figure: {args.figure}")
    return 0


def _print_extraction(result) -> None:
    print(result.to_text_grid())
    print(
        f"kernel {result.kernel_size}x{result.kernel_size}, {result.active_pixels} active px, "
        f"coverage {result.coverage_percent:.1f} %, noise floor {result.floor:.3f}"
    )
    print(result.summary())
    for warning in result.warnings:
        print(f"warning: {warning}")


def _parse_extractor(line: str, current: MaskExtractorConfig) -> MaskExtractorConfig:
    values = current.to_dict() if hasattr(current, "to_dict") else current.model_dump()
    for item in line.split():
        key, sep, value = item.partition("=")
        if not sep or key not in MaskExtractorConfig.model_fields:
            raise ConfigError(f"extractor.{key}: unknown field (known: {', '.join(MaskExtractorConfig.model_fields)})")
        values[key] = value
    try:
        return MaskExtractorConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError("extractor." + format_validation_error(err)) from None


def terminal_review(pipeline) -> None:
    """The review gate on a terminal: approve, regenerate with new parameters, or skip stage 2."""
    while True:
        _print_extraction(pipeline.extraction)
        if not pipeline.extraction.structured:
            print("recommendation: skip stage 2 (it would equal N2V)")
        answer = input("[a]pprove and train stage 2 / [r]egenerate with new parameters / [s]kip stage 2: ")
        answer = answer.strip().lower()[:1]
        if answer == "a":
            pipeline.approve()
            return
        if answer == "s":
            pipeline.skip_stage2()
            return
        if answer == "r":
            line = input("parameters, e.g. base_percentile=60 percentile_decay=1.3 max_pixels=9: ")
            try:
                pipeline.regenerate(_parse_extractor(line, pipeline.config.extractor))
            except ConfigError as err:
                print(f"error: {err}")


def cmd_train_autostruct(args: argparse.Namespace) -> int:
    overrides = _parse_sets(args.set or [])
    for flag in ("epochs", "max_time", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            overrides[flag] = value
    if args.auto_approve:
        overrides["auto_approve"] = True
    from .engine.methods.autostruct import AutoStructPipeline

    config = make_autostruct_config(args.mode, args.preset, overrides)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if not (config.auto_approve or args.mask or interactive):
        raise UsageError("no terminal to review the mask on; pass --auto-approve, or --mask MASK.npy")
    out = Path(args.out)
    _check_output(out, args.force, is_dir=True)
    images = [load_image(path) for path in args.input]
    stop = StopRequest()
    printer = ProgressPrinter()
    pipeline = AutoStructPipeline(config, images, callback=printer, stop=stop, run_dir=out)
    with _StopOnInterrupt(stop):
        if args.mask:
            pipeline.use_mask(_load_mask(args.mask))
            pipeline.run_stage2()
        else:
            pipeline.run(review=None if config.auto_approve else terminal_review)
            if pipeline.extraction is not None and config.auto_approve:
                _print_extraction(pipeline.extraction)
    pipeline.save()
    for stage, result in (("stage1", pipeline.stage1), ("stage2", pipeline.stage2)):
        if result is not None:
            write_history(out / f"history_{stage}.csv", result.history)
    print(f"autoStructN2V {pipeline.state.value}: {pipeline.message}")
    print(f"model: {out / 'config.json'}")
    if args.no_predict or pipeline.final is None:
        return 0
    final = pipeline.final
    predictor = Predictor(final.model, pipeline.normalization, config.mode, device=config.stage2.training.device)
    for index, (path, image) in enumerate(zip(args.input, images, strict=True)):
        denoised = predictor.predict(image[0] if image.shape[0] == 1 else image, callback=printer)
        name = "denoised.tif" if len(images) == 1 else f"denoised_{index + 1}_{Path(path).stem}.tif"
        print(f"denoised: {write_tiff(out / name, denoised)}")
    return 0


def _load_mask(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot be read as a mask (.npy of booleans): {err}") from None


def cmd_mask(args: argparse.Namespace) -> int:
    """Extract a mask from an existing model's residual on an image (any N2V model serves as stage 1)."""
    from .engine.mask_extraction import extract_struct_mask

    loaded = load_model(args.model)
    model = loaded.stage_models.get("stage1", loaded.model)
    image = load_image(args.input)
    params = _parse_extractor(" ".join(args.set or []), MaskExtractorConfig())
    predictor = Predictor(model, loaded.normalization, loaded.mode, device=args.device or "auto")
    noisy = loaded.normalization.normalize(image)
    denoised = np.stack(
        [predictor.predict_normalized_plane(plane_input(noisy, z, loaded.mode)) for z in range(noisy.shape[0])]
    )
    result = extract_struct_mask(noisy, denoised, params, mode=loaded.mode)
    _print_extraction(result)
    if args.out:
        out = Path(args.out)
        _check_output(out, args.force)
        np.save(out, result.mask)
        print(f"mask: {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    loaded = load_model(args.model)
    out = Path(args.out)
    _check_output(out, args.force)
    if args.output == "deconvolved" and loaded.config.deconv.psf_sigma is None:
        raise UsageError("--output deconvolved needs a DecoNoising model (trained with --deconv-psf)")
    predictor = Predictor(
        loaded.model, loaded.normalization, loaded.mode, tile_size=args.tile, batch_size=args.batch,
        device=args.device or "auto", output_normalization=loaded.target_normalization, output=args.output,
    )  # fmt: skip
    stop = StopRequest()
    with _StopOnInterrupt(stop):
        target = predictor.predict_file(args.input, out, callback=ProgressPrinter(), stop=stop)
    print(f"denoised: {target}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), max_time=args.max_time, force=args.force)
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    """Open napari with the plugin docked and a sample (or the given files) loaded."""
    try:
        from ._qt.launch import main as launch
    except ImportError as err:
        raise UsageError(
            f"the napari face is not installed ({err.name}); pip install 'napari-denoise-studio[napari]'"
        ) from None
    return launch(sample=None if args.sample == "none" else args.sample, files=args.files)


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse turns the ValueError into exit status 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denoise-studio",
        description="Self-supervised denoising of microscopy images (Noise2Void family).",
    )
    parser.add_argument("--version", action="version", version=f"denoise-studio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on noisy images and denoise them")
    p.add_argument("input", nargs="+", help="TIFF/PNG image(s) or stack(s) to train on")
    p.add_argument("--method", choices=(*METHODS, "autostructn2v"), default="n2v")
    p.add_argument("--mode", choices=MODES, default="2d")
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
    p.add_argument("--deconv-psf", type=float, dest="deconv_psf", help="n2v/n2v2: DecoNoising with a Gaussian PSF")
    p.add_argument("--positivity", type=float, help="DecoNoising: weight of the positivity penalty (default 1)")
    p.add_argument("--auto-approve", action="store_true", help="autostructn2v: approve the extracted mask unseen")
    p.add_argument("--mask", help="autostructn2v: use this mask (.npy) and train stage 2 (structN2V) only")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="apply a trained model to an image or stack (streamed to disk)")
    p.add_argument("model", help="run directory (or its config.json)")
    p.add_argument("input", help="TIFF/PNG image or stack")
    p.add_argument("--out", required=True, help="output TIFF")
    p.add_argument("--tile", type=_positive_int, default=256, help="tile side in pixels (the overlap is automatic)")
    p.add_argument("--batch", type=_positive_int, default=4, help="tiles per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--output",
        choices=("denoised", "deconvolved"),
        default="denoised",
        help="DecoNoising models can also give the deconvolved image",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_predict)

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
    p.set_defaults(func=cmd_compare)

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (InputError, ConfigError, ModelFileError, UsageError, PipelineStateError) as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_INPUT
    except PredictionStopped as err:
        sys.stderr.write(f"stopped: {err}; no output was written\n")
        return EXIT_STOPPED
    except OSError as err:  # disk full, permission denied...
        sys.stderr.write(f"error: {err.strerror or err} ({getattr(err, 'filename', '') or ''})\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        return EXIT_STOPPED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
