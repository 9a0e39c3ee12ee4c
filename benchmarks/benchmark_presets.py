"""The presets keep their promise: Fast, Balanced and High Quality side by side on every shared pair.

Each preset is trained as a user gets it (N2V, its own budget or epochs) on the noisy image alone and
scored against the high-SNR reference (W2S: after an affine fit, its two images were normalised
separately), with and without test-time augmentation. One run, one process, one machine: compare
the rows with each other, not with another machine's.

    python benchmarks/benchmark_presets.py                       # every FMD and W2S pair, writes docs/benchmarks.md
    python benchmarks/benchmark_presets.py --pairs "FMD fish"    # some pairs; prints only
    python benchmarks/benchmark_presets.py --results runs.jsonl  # keep each row; a rerun skips rows already there
    python benchmarks/benchmark_presets.py --results runs.jsonl --presets fast quality   # some presets now...
    python benchmarks/benchmark_presets.py --results runs.jsonl --report                 # ...the section from the rows
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import denoise_studio as ds
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import affine_psnr, psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_fmd import DEFAULT_DATA, pairs  # noqa: E402
from report import keep_row, machine, read_rows, resumable_parser, write_section  # noqa: E402

PRESETS = ("fast", "balanced", "quality")
LABELS = {"fast": "Fast", "balanced": "Balanced", "quality": "High Quality"}


def score(prediction: np.ndarray, reference: np.ndarray, affine: bool) -> float:
    return affine_psnr(prediction, reference) if affine else psnr(prediction, reference)


def run_preset(preset: str, noisy: np.ndarray, reference: np.ndarray, affine: bool, cap: float | None) -> dict:
    overrides = {"seed": 1}
    if cap is not None and preset == "balanced":
        overrides["max_time"] = cap
    config = ds.make_config("n2v", "2d", preset, overrides)
    start = time.perf_counter()
    model = ds.train(noisy, config).model
    trained = time.perf_counter() - start
    row = {"preset": preset, "train_s": round(trained, 1), "steps": model.summary.get("steps", 0)}
    if "max_time" in overrides and preset == "balanced":
        row["cap_s"] = overrides["max_time"]
    for tta in (False, True):
        start = time.perf_counter()
        denoised = model.predict(noisy, tta=tta)
        key = "tta" if tta else "plain"
        row[f"{key}_psnr"] = round(score(denoised, reference, affine), 2)
        row[f"{key}_predict_s"] = round(time.perf_counter() - start, 2)
    return row


def table(rows: list[dict], names: list[str]) -> list[str]:
    lines = [
        "| pair | noisy | " + " | ".join(f"{LABELS[p]}" for p in PRESETS) + " | "
        + " | ".join(f"{LABELS[p]} + TTA" for p in PRESETS) + " | High Quality as it predicts (TTA) − best other |",
        "|---|---:|" + "---:|" * (2 * len(PRESETS) + 1),
    ]  # fmt: skip
    for name in names:
        found = {row["preset"]: row for row in rows if row["pair"] == name}
        if not found:
            continue
        noisy = next(iter(found.values()))["noisy_psnr"]
        plain = [found[p]["plain_psnr"] if p in found else None for p in PRESETS]
        tta = [found[p]["tta_psnr"] if p in found else None for p in PRESETS]
        # Each preset as a user gets it: Fast and Balanced predict plainly, High Quality with TTA.
        others = [v for p, v in zip(PRESETS, plain, strict=True) if p != "quality" and v is not None]
        margin = f"{tta[2] - max(others):+.2f}" if tta[2] is not None and others else "–"
        cells = [f"{v:.2f}" if v is not None else "–" for v in (*plain, *tta)]
        lines.append(f"| {name} | {noisy:.2f} | " + " | ".join(cells) + f" | {margin} |")
    return lines


def speed_lines(rows: list[dict]) -> list[str]:
    lines = ["| preset | training s (median) | steps (median) | prediction s per image, plain / TTA (median) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for preset in PRESETS:
        mine = [row for row in rows if row["preset"] == preset]
        if not mine:
            continue
        median = {key: float(np.median([row[key] for row in mine])) for key in mine[0] if key.endswith(("_s", "steps"))}
        lines.append(
            f"| {LABELS[preset]} | {median['train_s']:.0f} | {median['steps']:.0f} | "
            f"{median['plain_predict_s']:.2f} / {median['tta_predict_s']:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = resumable_parser(__doc__, DEFAULT_DATA)
    parser.add_argument("--pairs", nargs="*", help="names such as 'FMD fish' or 'W2S 085_1' (default: all)")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--balanced-max-time", type=float, help="cap Balanced's training (default: the preset's own)")
    args = parser.parse_args(argv)

    chosen = [p for p in pairs(args.data, quick=False) if not args.pairs or p[0] in args.pairs]
    missing = [name for name, noisy, _, _ in chosen if not noisy.exists()]
    if missing:
        print(f"real data not available ({', '.join(missing)} missing under {args.data}); nothing to measure")
        return 0
    rows = read_rows(args.results)
    for name, noisy_path, reference_path, affine in [] if args.report else chosen:
        noisy = np.squeeze(load_image(noisy_path)).astype(np.float32)
        reference = np.squeeze(load_image(reference_path)).astype(np.float32)
        for preset in args.presets:
            if any(row["pair"] == name and row["preset"] == preset for row in rows):
                continue
            row = {"pair": name, "noisy_psnr": round(score(noisy, reference, affine), 2)}
            row |= run_preset(preset, noisy, reference, affine, args.balanced_max_time)
            rows.append(row)
            keep_row(row, args.results)
    names = [name for name, *_ in chosen]
    text = "\n".join(table(rows, names))
    print(text)
    if not args.pairs:
        capped = sorted({row["cap_s"] for row in rows if row["preset"] == "balanced" and row.get("cap_s")})
        caps = "".join(f"; Balanced capped at {cap:.0f} s" for cap in capped)
        section = [
            "## Presets side by side: Fast, Balanced, High Quality",
            "",
            f"Machine: {machine()}. N2V on each noisy image alone, seed 1, each preset as a user gets it "
            f"(Fast: 110 s; High Quality: 290 s; Balanced: its epochs and early stopping{caps}). PSNR in dB "
            "against the reference (W2S after an affine fit); TTA: the 8 flips/rotations averaged at "
            "prediction. Written by `python benchmarks/benchmark_presets.py`.",
            "",
            *table(rows, names),
            "",
            *speed_lines(rows),
        ]
        write_section("presets", "\n".join(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
