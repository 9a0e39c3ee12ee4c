"""Prediction of data larger than memory: peak memory and speed, in-process and on a local cluster.

A 100 x 2048 x 2048 uint16 stack (synthetic: a real FMD confocal frame tiled and re-noised per slice,
about 0.8 GB) is written as an OME-Zarr and as an OME-TIFF, then predicted to OME-Zarr (and the
TIFF to an OME-TIFF) by a small trained N2V model, block by block with dask. Each prediction runs
in a fresh process (the command line), so its peak resident memory (``ru_maxrss`` of the child)
is its own.

    python benchmarks/benchmark_bigdata.py                 # writes its section of docs/benchmarks.md
    python benchmarks/benchmark_bigdata.py --slices 8      # a quick look, prints only
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

import denoise_studio as ds
from denoise_studio.engine.io import load_image
from denoise_studio.engine.zarr_io import write_ome_zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

FMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "paired" / "fmd_confocal"
SIDE = 2048


def make_stack(slices: int, seed: int = 0) -> np.ndarray:
    """``slices`` x 2048 x 2048 uint16: the fish ground truth tiled 4 x 4, Poisson-Gaussian noise per slice."""
    rng = np.random.default_rng(seed)
    clean = load_image(FMD / "fish_gt_avg50.tif")[0].astype(np.float32) * 40 + 200
    tiled = np.tile(clean, (SIDE // clean.shape[0], SIDE // clean.shape[1]))
    stack = np.empty((slices, SIDE, SIDE), np.uint16)
    for z in range(slices):
        noisy = rng.poisson(np.clip(tiled, 0, None) / 4.0) * 4.0 + rng.normal(0, 20, tiled.shape)
        stack[z] = np.clip(noisy, 0, 65535).astype(np.uint16)
    return stack


#: Runs the command line in a fresh process and writes its own peak RSS and its children's (the dask
#: workers of --workers) to a file. The process's own peak is VmHWM, which starts afresh at exec:
#: ru_maxrss keeps the high-water mark of the process that forked it (this script, holding the stack),
#: so it would report this script's memory. The workers' figure is ru_maxrss of the children, an upper
#: bound for the same reason (each worker is forked from the command's process).
CHILD = """
import resource, sys
from denoise_studio.cli import main
status = main(sys.argv[2:])
own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{own} {workers}")
sys.exit(status)
"""


def run_cli(args: list[str], report: Path) -> tuple[float, float, float]:
    """Seconds, peak RSS of the process and of its largest worker (GB) of one CLI run."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(report), *args], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    own, workers = (int(value) / 2**20 for value in report.read_text().split())  # kB -> GB
    return elapsed, own, workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--train-slices", type=int, default=200, help="slices of the stack trained on from disk")
    parser.add_argument(
        "--cluster-slices", type=int, default=25,
        help="slices of the --workers 2 runs (MP/s is a rate; the full stack on 2 cores takes long)",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not FMD.exists():
        print(f"skipped: {FMD} is absent (the real FMD data lives in ../shared/data)")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bigdata-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        stack = make_stack(args.slices)
        size_gb = stack.nbytes / 1e9
        zarr_in = work / "stack.zarr"
        write_ome_zarr(zarr_in, stack, "ZYX", scales={"X": 0.1, "Y": 0.1, "Z": 0.5})
        part = stack[: args.cluster_slices]
        zarr_part, tiff_part = work / "part.zarr", work / "part.ome.tif"
        write_ome_zarr(zarr_part, part, "ZYX", scales={"X": 0.1, "Y": 0.1, "Z": 0.5})
        tifffile.imwrite(tiff_part, part, ome=True, photometric="minisblack", metadata={"axes": "ZYX"}, bigtiff=True)
        config = ds.make_config("n2v", "2d", "fast", max_time=args.train_seconds, epochs=10_000, seed=0)
        ds.train(stack[0, :512, :512], config, run_dir=work / "run")
        del stack, part
        rows = []
        full, few = args.slices, args.cluster_slices
        cases = [
            ("OME-Zarr -> OME-Zarr, in-process", full, [str(zarr_in), "--out", str(work / "a.zarr")]),
            ("OME-Zarr -> OME-Zarr, --workers 2", few, [str(zarr_part), "--out", str(work / "b.zarr"), "--workers",
                                                         "2"]),
            ("OME-TIFF -> OME-TIFF, in-process", few, [str(tiff_part), "--out", str(work / "c.ome.tif"), "--dtype",
                                                       "input"]),
            ("OME-TIFF -> OME-TIFF, --workers 2", few, [str(tiff_part), "--out", str(work / "d.ome.tif"), "--workers",
                                                         "2", "--dtype", "input"]),
        ]  # fmt: skip
        for label, slices, case in cases:
            seconds, peak, worker = run_cli(["predict", str(work / "run"), *case], work / "rss.txt")
            megapixels = slices * SIDE * SIDE / 1e6
            label = f"{label} ({slices} slices)"
            rows.append((label, seconds, megapixels / seconds, peak, worker))
            rate = megapixels / seconds
            print(label, f"{seconds:.0f} s, {rate:.2f} MP/s, RSS {peak:.2f} / {worker:.2f} GB", flush=True)
        # Training from disk: a larger stack, written slice by slice so this process never holds it.
        train_tiff = work / "train.ome.tif"
        shape = (args.train_slices, SIDE, SIDE)
        tifffile.imwrite(train_tiff, shape=shape, dtype=np.uint16, ome=True, photometric="minisblack",
                         metadata={"axes": "ZYX"}, bigtiff=True)  # fmt: skip
        planes = tifffile.memmap(train_tiff)
        for start in range(0, args.train_slices, 10):
            planes[start : start + 10] = make_stack(min(10, args.train_slices - start), seed=start)
        planes.flush()
        del planes
        train_gb = args.train_slices * SIDE * SIDE * 2 / 1e9
        seconds, train_peak, _ = run_cli(
            ["train", str(train_tiff), "--from-disk", "--no-predict", "--max-time", str(args.train_seconds),
             "--out", str(work / "disk_run")],
            work / "rss.txt",
        )  # fmt: skip
        print(f"training from disk: {seconds:.0f} s, peak RSS {train_peak:.2f} GB", flush=True)
        lines = [
            "## Data larger than memory",
            "",
            f"Machine: {machine()}. Input: {args.slices} x {SIDE} x {SIDE} uint16 ({size_gb:.2f} GB; the FMD fish "
            "ground truth tiled 4 x 4 with fresh Poisson-Gaussian noise per slice), as OME-Zarr (chunks 16 x 512 x "
            "512) and its first slices as OME-TIFF. Model: N2V, preset fast, trained "
            f"{args.train_seconds:g} s. Default blocks (4 x 512 x 512 for a 2D model) with the model's exact margin "
            f"as halo. The TIFF runs and the --workers 2 runs predict the first {few} slices (MP/s is a rate and the "
            "peak memory does not grow with the size; on 2 cores the cluster only spreads the same compute over two "
            "processes).",
            "Peak RSS: VmHWM of the command's process; for --workers 2 also ru_maxrss of its largest worker "
            "(an upper bound: it includes what the worker inherited at fork).",
            "",
            "| case | time (s) | MP/s | peak RSS (GB) | peak RSS of a worker (GB) |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {label} | {seconds:.0f} | {rate:.2f} | {peak:.2f} | {worker:.2f} |" if "workers" in label
                else f"| {label} | {seconds:.0f} | {rate:.2f} | {peak:.2f} | - |"
                for label, seconds, rate, peak, worker in rows
            ],
            "",
            f"Training from disk (`train --from-disk`, N2V fast, {args.train_seconds:g} s budget) on a "
            f"{args.train_slices} x {SIDE} x {SIDE} uint16 OME-TIFF ({train_gb:.2f} GB): peak RSS "
            f"**{train_peak:.2f} GB**, {seconds:.0f} s in all (patches read through zarr, nothing memory-mapped).",
            "",
            f"Command: `python benchmarks/benchmark_bigdata.py --slices {args.slices} --train-slices "
            f"{args.train_slices}`.",
        ]
        text = "\n".join(lines)
        print(text)
        if args.slices >= 100:
            write_section("bigdata", text)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
