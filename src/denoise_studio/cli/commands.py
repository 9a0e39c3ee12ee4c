"""The commands: each turns its flags into one call of the public API and prints what it made."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import api
from ..engine.axes import layout_for
from ..engine.compare import compare_results, format_table
from ..engine.config import ModelConfig
from ..engine.errors import ConfigError
from ..engine.events import StopRequest
from ..engine.figures import side_by_side, write_png
from ..engine.filters import apply_filter_spec, filter_function, parse_filter_spec
from ..engine.io import InputError, load_image, read_image_meta, write_tiff
from ..engine.outputs import output_path, predict_and_write, predict_file_to, wanted_outputs
from ..engine.persistence import save_mask
from ..engine.registry import METHODS
from ..samples import starter_model_path
from .progress import ProgressPrinter, StopOnSignals
from .review import parse_extractor, print_extraction, terminal_review

EXIT_STOPPED = 130
#: The model name that means the bundled starter model.
STARTER_NAME = "starter"


class UsageError(Exception):
    """A command-line problem the user can fix (existing output, missing file...)."""


def load_named_model(name: str) -> api.TrainedModel:
    """A run folder (or its config.json); ``starter`` is the bundled starter model unless a folder of
    that name exists here."""
    if name == STARTER_NAME and not Path(name).exists():
        return api.load_model(starter_model_path())
    return api.load_model(name)


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm_overwrite(path: Path, force: bool, is_dir: bool = False) -> bool:
    """True when ``path`` may be overwritten: it is new or empty, --force was given, or the user said yes."""
    if is_dir and path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; choose another --out")
    exists = path.exists() and (not is_dir or any(path.iterdir()))
    if not exists or force:
        return True
    if _interactive():
        answer = input(f"{path} exists. Overwrite? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return True
    raise UsageError(f"{path} already exists; choose another output or pass --force to overwrite")


def _refuse_input_as_output(output: Path, inputs: list[str]) -> None:
    for source in inputs:
        if api.same_file(source, output):
            raise UsageError(f"{output} is an input of this command; choose another output (it is never overwritten)")


def _parse_sets(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set learning_rate=1e-3")
        overrides[key.strip()] = value
    return overrides


def _train_overrides(args: argparse.Namespace, pipeline: bool) -> dict[str, object]:
    """``--set`` values plus the dedicated flags (a flag wins over the same key in ``--set``)."""
    overrides: dict[str, object] = _parse_sets(args.set or [])
    for flag in ("epochs", "max_time", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            overrides[flag] = value
    if pipeline:
        if args.channels is not None:
            raise UsageError("--channels does not apply to autostructn2v: it takes one channel at a time")
        if args.auto_approve:
            overrides["auto_approve"] = True
        return overrides
    if args.channels is not None:
        overrides["channels"] = args.channels
    paired = {"target_from": args.target_from, "psf_sigma": args.deconv_psf, "positivity": args.positivity}
    overrides.update({key: value for key, value in paired.items() if value is not None})
    if args.register:
        overrides["register_target"] = True
    return overrides


def _load_mask(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot be read as a mask (.npy of booleans): {err}") from None


def _init_model(args: argparse.Namespace, pipeline: bool) -> api.TrainedModel | None:
    """The model ``--init`` continues; the network is its own, so flags that would change it are refused."""
    if args.init is None:
        if args.renormalize:
            raise UsageError("--renormalize goes with --init RUN_DIR")
        return None
    if pipeline:
        raise UsageError("--init: autostructn2v trains both of its networks from scratch; continue with n2v or n2v2")
    init = load_named_model(args.init)
    if args.mode is not None and args.mode != init.mode:
        raise UsageError(f"--mode {args.mode}: the model of --init is {init.mode}; its network keeps its mode")
    network_fields = set(ModelConfig.model_fields)
    for item in args.set or []:
        key = item.partition("=")[0].strip()
        if key.startswith("model.") or key in network_fields:
            raise UsageError(f"--set {key}: the network comes from --init; drop this setting")
    if args.deconv_psf is not None:
        raise UsageError("--deconv-psf: the network comes from --init (with its PSF, if it has one)")
    return init


def cmd_train(args: argparse.Namespace) -> int:
    info = METHODS[args.method]
    if not info.pipeline and (args.auto_approve or args.mask):
        raise UsageError("--auto-approve and --mask belong to --method autostructn2v")
    if info.pipeline and (args.target or args.target_from or args.deconv_psf or args.register):
        raise UsageError("--target, --target-from, --register and --deconv-psf do not apply to autostructn2v")
    _check_simulation_flags(args, info.simulated)
    init = _init_model(args, info.pipeline)
    mode = args.mode or (init.mode if init is not None else "2d")
    overrides = _train_overrides(args, info.pipeline)
    if info.simulated:
        # The noise of the images to denoise; --set simulation.* values win over the fitted ones.
        overrides = api.simulation_settings(args.noise_model or args.input[0], axes=args.axes) | overrides
    config = api.make_config(args.method, mode, args.preset, overrides)
    if args.field_of_view is not None:
        if init is not None:
            raise UsageError("--field-of-view: the network comes from --init; drop this setting")
        if any(key in ("depth", "model.depth") for key in _parse_sets(args.set or [])):
            raise UsageError("--field-of-view sets the depth; drop --set depth, or --field-of-view")
        config = api.with_field_of_view(config, args.field_of_view)
    if info.pipeline and not (config.auto_approve or args.mask or _interactive()):
        raise UsageError("no terminal to review the mask on; pass --auto-approve, or --mask MASK.npy")
    out = Path(args.out)
    overwrite = _confirm_overwrite(out, args.force, is_dir=True)
    from_disk = True if args.from_disk else None
    # SBD trains on the clean images and denoises the inputs.
    training_files = args.clean if info.simulated else args.input
    # An image too large for memory (or any, with --from-disk) is trained on from disk, patch by patch.
    on_disk = [api.reads_from_disk(Path(path), from_disk) for path in training_files]
    read = [
        (None, None) if lazy else read_image_meta(path, args.axes)
        for path, lazy in zip(training_files, on_disk, strict=True)
    ]
    images = [path if lazy else image for path, lazy, (image, _) in zip(training_files, on_disk, read, strict=True)]
    metas = [meta for _, meta in read]
    axes = [args.axes if meta is None else meta.axes for meta in metas]
    # A target has its input's axes (the file's own, or --axes).
    targets = [read_image_meta(path, a)[0] for path, a in zip(args.target, axes, strict=False)] if args.target else None
    if targets is not None and len(targets) != len(images):
        raise UsageError(f"{len(images)} input image(s) but {len(args.target)} --target image(s)")
    mask = _load_mask(args.mask) if args.mask else None
    stop, printer = StopRequest(), ProgressPrinter()
    with StopOnSignals(stop):
        run = api.train(
            images, config, targets=targets, run_dir=out, overwrite=overwrite, mask=mask,
            review=terminal_review, callback=printer, stop=stop,
            input_files=[*args.input, *(args.target or []), *(args.clean or [])], names=training_files, axes=axes,
            from_disk=from_disk, init=init, renormalize=args.renormalize,
        )  # fmt: skip
    if info.pipeline and run.extraction is not None and (config.auto_approve or mask is not None):
        print_extraction(run.extraction)
    print(f"{info.label} {run.state.value}: {run.message}")
    if run.model is None:
        print(f"no model was kept; {out} holds no run files")
        return EXIT_STOPPED
    _print_model(run.model, out)
    if args.no_predict:
        return 0
    if info.simulated:
        read = [read_image_meta(path, args.axes) for path in args.input]
        images, metas = [image for image, _ in read], [meta for _, meta in read]
    _denoise_inputs(run.model, args, images, metas, out, printer)
    return 0


def _check_simulation_flags(args: argparse.Namespace, simulated: bool) -> None:
    if simulated and not args.clean:
        raise UsageError("--method sbd trains on clean images: give them with --clean CLEAN.tif ...")
    if not simulated and (args.clean or args.noise_model):
        raise UsageError("--clean and --noise-model belong to --method sbd")
    if simulated and (args.target or args.target_from or args.register):
        raise UsageError("--target, --target-from and --register do not apply to sbd: its targets are the clean images")


def _print_model(model: api.TrainedModel, out: Path) -> None:
    print(f"model: {out / 'config.json'}")
    simulation = model.config.simulation
    if simulation is not None:
        span = simulation.signal_range
        scale = f", clean images mapped onto intensities {span[0]:.4g}-{span[1]:.4g}" if span else ""
        print(f"simulated noise: from {simulation.noise_source or 'the given settings'}{scale}")
    for index, noise in enumerate(model.noise_models):
        channel = "" if len(model.noise_models) == 1 else f" (channel {index})"
        print(f"noise model{channel}: {noise.describe()}")


def _denoise_inputs(
    model: api.TrainedModel, args: argparse.Namespace, images: list, metas: list, out: Path, printer
) -> None:
    """Denoise the images a run learnt from into its folder (``args.input``: their files)."""
    # A stopped training still denoises its input with the best model; Ctrl-C now stops that too.
    stop = StopRequest()
    with StopOnSignals(stop):
        for index, (path, image, meta) in enumerate(zip(args.input, images, metas, strict=True)):
            stem = None if len(images) == 1 else f"{index + 1}_{Path(path).stem}"
            if meta is None:  # trained on from disk: predicted block by block into files
                for which in wanted_outputs(model):
                    target = predict_file_to(
                        model, path, output_path(out, which, stem), output=which, axes=args.axes,
                        dtype=args.dtype, overwrite=True, callback=printer, stop=stop,
                    )  # fmt: skip
                    print(f"{which}: {target}")
                continue
            if meta.axes is not None:
                meta = meta.for_layout(layout_for(image.shape, image.dtype, meta.axes, path))
            prediction = predict_and_write(
                model, image, out, axes=meta.axes, meta=meta, dtype=args.dtype, source=path, stem=stem,
                callback=printer, stop=stop,
            )  # fmt: skip
            for output, file in prediction.files.items():
                print(f"{output}: {file}")


def cmd_adapt(args: argparse.Namespace) -> int:
    model = load_named_model(args.model)
    out = Path(args.out)
    _refuse_input_as_output(out, [args.input])
    overwrite = _confirm_overwrite(out, args.force, is_dir=True)
    image, meta = read_image_meta(args.input, args.axes)
    stop, printer = StopRequest(), ProgressPrinter()
    with StopOnSignals(stop):
        run = api.adapt(
            model, image, run_dir=out, overwrite=overwrite, max_time=args.max_time, learning_rate=args.learning_rate,
            seed=args.seed, axes=meta.axes, callback=printer, stop=stop, input_files=[args.input],
        )  # fmt: skip
    if run.model is None:
        print(f"GainTuning {run.state.value}: {run.message}; no model was kept")
        return EXIT_STOPPED
    summary = run.model.summary
    before, after = summary.get("initial_val_loss"), run.model.best_val_loss
    verdict = "improved" if summary.get("best_epoch", 0) > 0 else "not improved: the model is unchanged"
    print(
        f"GainTuning {run.state.value} in {summary.get('elapsed_s', 0):.0f} s: held-out loss {before:.4g} -> "
        f"{after:.4g} ({verdict})"
    )
    _print_model(run.model, out)
    args.input = [args.input]
    if not args.no_predict:
        _denoise_inputs(run.model, args, [image], [meta], out, printer)
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _refuse_input_as_output(out, [args.input])
    _confirm_overwrite(out, args.force)
    image = load_image(args.input)
    try:
        filtered = apply_filter_spec(image, args.filter)
    except ValueError as err:
        raise UsageError(f"--filter: {err}") from None
    print(f"filtered: {write_tiff(out, filtered[0] if image.shape[0] == 1 else filtered)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    figure = Path(args.figure) if args.figure else None
    if figure is not None:
        # The figure is checked before any work: it must never replace an input (or any file unasked).
        _refuse_input_as_output(figure, [args.noisy, *args.results, *([args.reference] if args.reference else [])])
        _confirm_overwrite(figure, args.force)
    noisy = load_image(args.noisy)
    results = {Path(path).stem: load_image(path) for path in args.results}
    for spec in args.filter or []:
        try:
            results[spec] = apply_filter_spec(noisy, spec)
        except ValueError as err:
            raise UsageError(f"--filter: {err}") from None
    reference = load_image(args.reference) if args.reference else None
    noise_model = None
    if args.model:
        model = load_named_model(args.model)
        if model.channels > 1:
            raise UsageError(f"--model {args.model}: compare takes one channel; this model has {model.channels}")
        noise_model = model.noise_model
        if noise_model is None:
            raise UsageError(f"--model {args.model}: this model has no noise model (paired methods, or trained before "
                             "noise models were measured)")
    denoisers = {spec: filter_function(*parse_filter_spec(spec)) for spec in args.filter or []}
    try:
        rows = compare_results(noisy, results, reference, noise_model=noise_model, denoisers=denoisers)
    except ValueError as err:
        raise InputError(str(err)) from None
    print(format_table(rows))
    if noise_model is not None:
        print("estimated PSNR: " + "; ".join(f"{row['name']}: {row['estimate_method']}" for row in rows[1:]))
    if figure is not None:
        panels = [("noisy", noisy), *results.items()] + ([("reference", reference)] if reference is not None else [])
        print(f"figure: {write_png(figure, side_by_side(panels, reference))}")
    return 0


def cmd_assess(args: argparse.Namespace) -> int:
    """Reference-free quality numbers for a result: printed as a table, or as JSON with --json."""
    if args.model and args.filter:
        raise UsageError("--model and --filter name the denoiser that made the result: give one of them")
    maps = {}
    if args.maps:
        maps = {name: Path(f"{args.maps}_{name}.tif") for name in ("residual", "likelihood")}
        inputs = [args.noisy, args.denoised, *(p for p in (args.second, args.calibration, args.dark) if p)]
        for path in maps.values():
            _refuse_input_as_output(path, inputs)
            _confirm_overwrite(path, args.force)
    noise_model = None
    if args.calibration or args.dark:
        noise_model = api.fit_noise_model(args.calibration, args.dark, noisy=None if args.calibration else args.noisy,
                                          denoised=None if args.calibration else args.denoised)
    denoiser = None
    if args.filter:
        try:
            denoiser = filter_function(*parse_filter_spec(args.filter))
        except ValueError as err:
            raise UsageError(f"--filter: {err}") from None

    result = api.assess(
        args.noisy, args.denoised, model=args.model, second=args.second, noise_model=noise_model,
        denoiser=denoiser, data_range=args.data_range, axes=args.axes,
    )  # fmt: skip
    for name, path in maps.items():
        array = result.residual if name == "residual" else result.likelihood_map
        write_tiff(path, array)
    if args.json:
        record = result.to_dict()
        record["maps"] = {name: str(path) for name, path in maps.items()}
        print(json.dumps(record, indent=2))
        return 0
    width = max(len(label) for label, _ in result.summary_lines())
    for label, value in result.summary_lines():
        print(f"{label:<{width}}  {value}")
    for note in result.notes:
        print(f"note: {note}")
    for name, path in maps.items():
        print(f"{name} map: {path}")
    return 0


def cmd_mask(args: argparse.Namespace) -> int:
    """Extract a mask from an existing model's residual on an image (any N2V model serves as stage 1)."""
    out = None
    if args.out:
        out = Path(args.out)
        if out.suffix != ".npy":
            out = out.with_name(out.name + ".npy")  # numpy would add it anyway: check the file really written
        _refuse_input_as_output(out, [args.input])
        _confirm_overwrite(out, args.force)
    model = load_named_model(args.model)
    params = parse_extractor(" ".join(args.set or []), api.MaskExtractorConfig())
    result = api.extract_mask(model, load_image(args.input), params, device=args.device)
    print_extraction(result)
    if out is not None:
        print(f"mask: {save_mask(out, result.mask)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    model = load_named_model(args.model)
    if args.output == "deconvolved" and not model.deconvolving:
        raise UsageError("--output deconvolved needs a DecoNoising model (trained with --deconv-psf)")
    options = dict(
        output=args.output, axes=args.axes, dtype=args.dtype, tile_size=args.tile, batch_size=args.batch,
        device=args.device, chunks=args.chunks, workers=args.workers, scheduler=args.scheduler, tta=args.tta,
    )  # fmt: skip
    if args.out_dir is not None:
        return _predict_many(model, args, options)
    if len(args.inputs) > 1:
        raise UsageError(f"{len(args.inputs)} inputs need --out-dir DIR (--out names one output file)")
    if args.zarr:
        raise UsageError("--zarr goes with --out-dir; with --out the file's suffix (.zarr) chooses")
    out = Path(args.out)
    _refuse_input_as_output(out, args.inputs)
    overwrite = _confirm_overwrite(out, args.force)
    stop = StopRequest()
    with StopOnSignals(stop):
        target = api.predict_file(
            model, args.inputs[0], out, overwrite=overwrite, callback=ProgressPrinter(), stop=stop, **options
        )
    print(f"{args.output}: {target}")
    return 0


def _predict_many(model: api.TrainedModel, args: argparse.Namespace, options: dict) -> int:
    """``predict ... --out-dir``: every input in turn; exit status 1 when any failed."""
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file, not a folder; choose another --out-dir")
    stop = StopRequest()
    with StopOnSignals(stop):
        result = api.predict_files(
            model, args.inputs, out_dir, overwrite=args.force, zarr=True if args.zarr else None,
            callback=ProgressPrinter(), stop=stop, **options,
        )  # fmt: skip
    for outcome in result.failed:
        print(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
    print(result.summary())
    if result.stopped:
        return EXIT_STOPPED
    return 1 if result.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    citations = []
    for item in args.cite:
        text, sep, doi = item.rpartition("|")
        if not sep or not text.strip() or not doi.strip():
            raise UsageError(f"--cite {item!r}: expected 'TEXT|DOI', e.g. 'Me et al. 2026|10.1234/abcd'")
        citations.append((text.strip(), doi.strip()))
    model = load_named_model(args.model)
    target = Path(args.bmz)
    _refuse_input_as_output(target, [args.image])
    overwrite = _confirm_overwrite(target, args.force)
    path = api.export_bmz(
        model, target, args.image, name=args.name, description=args.description, authors=args.author,
        license=args.license, citations=citations, overwrite=overwrite,
    )  # fmt: skip
    print(f"BioImage Model Zoo package (bioimageio.core's test passed): {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    out = Path(args.out)
    _confirm_overwrite(out, args.force, is_dir=True)
    run_demo(out, max_time=args.max_time, callback=ProgressPrinter())
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    """Open napari with the plugin docked and a sample (or the given files) loaded."""
    try:
        from .._qt.launch import main as launch
    except ImportError as err:
        raise UsageError(
            f"the napari face is not installed ({err.name}); pip install 'napari-denoise-studio[napari]'"
        ) from None
    return launch(sample=None if args.sample == "none" else args.sample, files=args.files)
