"""Writing one benchmark's section of docs/benchmarks.md without touching the other sections."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n\nEach section is written by the script it names; rerun the script to refresh it.\n"


def write_section(name: str, text: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    current = path.read_text() if path.exists() else TITLE
    if begin in current and end in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        updated = head + block + tail
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated)
    return path


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return info.readlines()
    except OSError:
        return []


def native_bf16() -> bool:
    """Whether the processor has bf16 instructions (AVX512-BF16 or AMX); without them bf16 autocast is
    emulated and slower than fp32."""
    flags = next((line for line in _cpuinfo() if line.startswith("flags")), "")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def machine() -> str:
    """The processor and thread count, for the header of a benchmark section: timings and budgets
    (``max_time``) mean different numbers of steps on different processors."""
    import torch

    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    model = names[0] if names else (platform.processor() or platform.machine())
    return (
        f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"{'native' if native_bf16() else 'no native'} bf16 ({os.cpu_count()} cores)"
    )


def resumable_parser(doc: str, data: Path) -> argparse.ArgumentParser:
    """The options every resumable benchmark takes: where the shared data is, the JSON-lines file of
    measured rows (a rerun skips rows already there) and --report (measure nothing, write the section)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--results", type=Path, help="JSON lines file: rows are appended; rows already there are kept")
    parser.add_argument("--report", action="store_true", help="train nothing: write the section from --results")
    return parser


def read_rows(path: Path | None) -> list[dict]:
    """The JSON-lines rows a benchmark kept in ``path`` (none when there is no file)."""
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keep_row(row: dict, path: Path | None) -> None:
    """Print a measured row and append it to ``path``, so that a rerun skips it."""
    print(json.dumps(row), flush=True)
    if path is not None:
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")
