"""Many files with one model: the inputs a user names (files, folders, patterns), one output each.

A hundred files should take one command or one click. Each file goes through the same
:func:`~.outputs.predict_file_to` as a single one (streamed, block by block when large); an output
that exists is skipped unless overwriting is allowed, and a file that fails is reported without
stopping the others.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .bigdata import is_zarr_path
from .errors import InputError, PredictionStopped
from .events import ProgressCallback, RunState, StateEvent, StopRequest, emit
from .io import PNG_SUFFIXES, TIFF_SUFFIXES
from .model import TrainedModel
from .outputs import OUTPUT_TAGS, output_path, predict_file_to

#: What a folder is searched for (not recursively): the image files prediction reads.
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, *PNG_SUFFIXES, ".zarr")

WRITTEN, SKIPPED, FAILED, NOT_RUN = "written", "skipped", "failed", "not run"


@dataclass
class FileOutcome:
    """What became of one input: its output ``written``, ``skipped`` (it existed), ``failed`` (``error``
    says why) or ``not run`` (stopped before it)."""

    source: Path
    target: Path
    status: str
    error: str = ""
    seconds: float = 0.0


@dataclass
class BatchResult:
    outcomes: list[FileOutcome] = field(default_factory=list)
    stopped: bool = False

    def with_status(self, status: str) -> list[FileOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == status]

    @property
    def written(self) -> list[FileOutcome]:
        return self.with_status(WRITTEN)

    @property
    def failed(self) -> list[FileOutcome]:
        return self.with_status(FAILED)

    @property
    def skipped(self) -> list[FileOutcome]:
        return self.with_status(SKIPPED)

    def summary(self) -> str:
        parts = [f"{len(self.written)} written"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (output exists)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        not_run = self.with_status(NOT_RUN)
        if not_run:
            parts.append(f"{len(not_run)} not run (stopped)")
        return f"{len(self.outcomes)} files: " + ", ".join(parts)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or is_zarr_path(path))


def image_stem(path: Path) -> str:
    """The name without its image suffix (``cells.ome.tif`` -> ``cells``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def expand_inputs(
    items: Sequence[str | os.PathLike], skip: Callable[[Path], bool] | None = None
) -> list[Path]:
    """The image files named by ``items``: files, folders (their image files, not recursively; an
    OME-Zarr folder is one image) and glob patterns (``**`` recurses), in order, each once.
    ``skip`` leaves out files a folder or pattern finds (a file named on its own always counts)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file() or is_zarr_path(path) and path.exists():
            found.append(path)
            continue
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if is_image_path(p))
            if not matches:
                raise InputError(f"{path}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if is_image_path(Path(p)))
            if not matches:
                raise InputError(f"{item}: no such file, and no image file matches it as a pattern")
        found.extend(match for match in matches if skip is None or not skip(match))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_targets(
    sources: Sequence[Path], out_dir: Path, output: str = "denoised", zarr: bool | None = None
) -> list[Path]:
    """One output path in ``out_dir`` per source, ``<stem>_<output>``: an OME-Zarr for an OME-Zarr input
    (or all with ``zarr``), else an OME-TIFF. Inputs of one name from different folders are told
    apart by their folder's name."""
    stems = [image_stem(source) for source in sources]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    targets: list[Path] = []
    taken: set[Path] = set()
    for source, stem in zip(sources, stems, strict=True):
        if counts[stem] > 1:
            stem = f"{source.resolve().parent.name}_{stem}"
        as_zarr = is_zarr_path(source) if zarr is None else zarr
        target = output_path(out_dir, output, stem, suffix=".zarr" if as_zarr else ".tif")
        number = 2
        while target in taken:
            target = output_path(out_dir, output, f"{stem}_{number}", suffix=target.suffix)
            number += 1
        taken.add(target)
        targets.append(target)
    return targets


def predict_files(
    model: TrainedModel,
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    output: str = "denoised",
    overwrite: bool = False,
    zarr: bool | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    **options,
) -> BatchResult:
    """Predict every image of ``sources`` (see :func:`expand_inputs`) into ``out_dir``, one after the
    other. ``options`` are those of :func:`~.outputs.predict_file_to` (axes, dtype, tile_size,
    batch_size, device, chunks, workers, scheduler, tta).

    Each file reports ``[i/n] name: ...`` as a :class:`StateEvent` (stage "files", ``step`` i of
    ``steps`` n) before and after its own prediction events. Stopping ends the file in progress
    without writing it; the rest are "not run".
    """
    out_dir = Path(out_dir)
    tag = f"_{OUTPUT_TAGS.get(output, output)}"
    # An output folder that is also an input folder: this command's earlier results are not inputs.
    paths = expand_inputs(
        sources, skip=lambda path: _same_folder(path.parent, out_dir) and image_stem(path).endswith(tag)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = output_targets(paths, out_dir, output, zarr)
    inputs = {path.resolve() for path in paths}
    result = BatchResult()
    total = len(paths)
    for index, (source, target) in enumerate(zip(paths, targets, strict=True), start=1):
        where = f"[{index}/{total}] {source.name}"
        if stop is not None and stop.requested:
            result.stopped = True
            result.outcomes.append(FileOutcome(source, target, NOT_RUN))
            continue
        if target.resolve() in inputs:
            result.outcomes.append(FileOutcome(source, target, FAILED, f"its output would replace the input {target}"))
            _report(callback, f"{where}: failed: its output would replace an input", index, total)
            continue
        if target.exists() and not overwrite:
            result.outcomes.append(FileOutcome(source, target, SKIPPED))
            _report(callback, f"{where}: skipped, {target.name} exists", index, total)
            continue
        _report(callback, f"{where} -> {target.name}", index, total)
        outcome = _predict_one(model, source, target, output, overwrite, callback, stop, options)
        result.outcomes.append(outcome)
        if outcome.status == NOT_RUN:
            result.stopped = True
            _report(callback, f"{where}: stopped, nothing written", index, total)
        elif outcome.status == FAILED:
            _report(callback, f"{where}: failed: {outcome.error}", index, total)
        else:
            _report(callback, f"{where}: written in {outcome.seconds:.1f} s", index, total)
    return result


def _predict_one(model, source, target, output, overwrite, callback, stop, options) -> FileOutcome:
    start = time.perf_counter()
    try:
        predict_file_to(
            model, source, target, output=output, overwrite=overwrite, callback=callback, stop=stop, **options
        )
    except PredictionStopped:
        return FileOutcome(source, target, NOT_RUN)
    except MemoryError as err:
        return FileOutcome(source, target, FAILED, str(err) or "out of memory")
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the others; its reason is kept
        message = str(err) or type(err).__name__
        if not isinstance(err, (InputError, ValueError, OSError)):
            message = f"{type(err).__name__}: {message}"
        return FileOutcome(source, target, FAILED, message)
    return FileOutcome(source, target, WRITTEN, seconds=time.perf_counter() - start)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _report(callback: ProgressCallback | None, message: str, index: int, total: int) -> None:
    emit(callback, StateEvent("files", RunState.PREDICTING, message, step=index, steps=total))
