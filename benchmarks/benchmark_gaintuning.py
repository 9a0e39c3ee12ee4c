"""GainTuning out of distribution: a model trained on one shared image, adapted to another of a different
sample or modality, against the same model unadapted and against N2V trained on the target itself.

Each source model is N2V with the Fast preset (110 s) on one noisy image. For each target it is scored
as it is, then adapted with ``ds.adapt`` (default budget, 60 s at most, early stopping on held-out
blocks) and scored again; "own" is Fast N2V trained on the target's noisy image (110 s). PSNR in dB
against the target's reference (W2S after an affine fit: its two images were normalised separately).
One run, one process, one machine: compare the rows with each other, not with another machine's.

    python benchmarks/benchmark_gaintuning.py                          # writes docs/benchmarks.md
    python benchmarks/benchmark_gaintuning.py --results gt.jsonl       # keep rows; a rerun skips rows already there
    python benchmarks/benchmark_gaintuning.py --results gt.jsonl --report
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import denoise_studio as ds
from denoise_studio.engine.io import load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_fmd import DEFAULT_DATA, pairs  # noqa: E402
from benchmark_presets import score  # noqa: E402
from report import keep_row, machine, read_rows, resumable_parser, write_section  # noqa: E402

#: Source image -> the targets it is adapted to: other samples of its modality, and the other modality.
PLAN = {
    "FMD BPAE_B": ("FMD fish", "FMD mice", "W2S 090_0", "W2S 115_1"),
    "W2S 085_1": ("W2S 100_1", "W2S 105_2", "FMD fish", "FMD BPAE_G"),
}


def read_pair(table: dict, name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    noisy_path, reference_path, affine = table[name]
    noisy = np.squeeze(load_image(noisy_path)).astype(np.float32)
    return noisy, np.squeeze(load_image(reference_path)).astype(np.float32), affine


def fast_model(noisy: np.ndarray) -> tuple[ds.TrainedModel, float]:
    start = time.perf_counter()
    model = ds.train(noisy, ds.make_config("n2v", "2d", "fast", {"seed": 1})).model
    return model, time.perf_counter() - start


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| source → target | noisy | unadapted | adapted | gain | adapt s | steps | own N2V (110 s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        own = f"{row['own_psnr']:.2f}" if row.get("own_psnr") is not None else "–"
        lines.append(
            f"| {row['source']} → {row['target']} | {row['noisy_psnr']:.2f} | {row['before_psnr']:.2f} | "
            f"{row['after_psnr']:.2f} | {row['after_psnr'] - row['before_psnr']:+.2f} | {row['adapt_s']:.0f} | "
            f"{row['steps']} | {own} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = resumable_parser(__doc__, DEFAULT_DATA)
    parser.add_argument("--no-own", action="store_true", help="skip N2V trained on each target")
    args = parser.parse_args(argv)

    available = {name: (noisy, reference, affine) for name, noisy, reference, affine in pairs(args.data, quick=False)}
    if not all(path.exists() for path, _, _ in available.values()):
        print(f"real data not available under {args.data}; nothing to measure")
        return 0
    rows = read_rows(args.results)
    own: dict[str, float] = {row["target"]: row["own_psnr"] for row in rows if row.get("own_psnr") is not None}
    for source, targets in ({} if args.report else PLAN).items():
        todo = [t for t in targets if not any(r["source"] == source and r["target"] == t for r in rows)]
        if not todo:
            continue
        model, source_s = fast_model(read_pair(available, source)[0])
        for target in todo:
            noisy, reference, affine = read_pair(available, target)
            row = {"source": source, "target": target, "source_train_s": round(source_s, 1)}
            row["noisy_psnr"] = round(score(noisy, reference, affine), 2)
            row["before_psnr"] = round(score(model.predict(noisy), reference, affine), 2)
            start = time.perf_counter()
            adapted = ds.adapt(model, noisy, seed=0).model
            row["adapt_s"] = round(time.perf_counter() - start, 1)
            summary = adapted.summary
            row |= {"steps": summary["steps"], "best_epoch": summary["best_epoch"], "stop": summary["stop_reason"]}
            row["after_psnr"] = round(score(adapted.predict(noisy), reference, affine), 2)
            if not args.no_own:
                if target not in own:
                    own_model, _ = fast_model(noisy)
                    own[target] = round(score(own_model.predict(noisy), reference, affine), 2)
                row["own_psnr"] = own[target]
            rows.append(row)
            keep_row(row, args.results)
    text = table(rows)
    print("\n".join(text))
    gains = [row["after_psnr"] - row["before_psnr"] for row in rows]
    section = [
        "## GainTuning: adapting a model to an image it has not seen",
        "",
        f"Machine: {machine()}. Source model: N2V, Fast preset (110 s, seed 1) on the source's noisy image. "
        "Adapted with `ds.adapt(model, noisy)` (equivalently `denoise-studio adapt RUN_DIR IMAGE --out DIR`): "
        "a gain per feature channel, learning rate 5e-3, at most 60 s, early stopping on held-out blocks "
        "(20 % of the image). PSNR in dB against the target's reference (W2S after an affine fit); "
        "own N2V: Fast trained on the target itself. Written by `python benchmarks/benchmark_gaintuning.py`.",
        "",
        *text,
        "",
    ]
    if gains:
        section.append(
            f"Adaptation changed PSNR by {min(gains):+.2f} to {max(gains):+.2f} dB (mean {np.mean(gains):+.2f}) "
            f"over {len(gains)} source/target pairs."
        )
    if rows:
        write_section("gaintuning", "\n".join(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
