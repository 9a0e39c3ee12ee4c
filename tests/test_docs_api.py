"""Every Python code block of docs/api.md runs, in order, as a user would paste it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_doc_has_code(tmp_path):
    assert len(code_blocks(DOC.read_text())) >= 4


def test_every_code_block_of_the_api_doc_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    for index, block in enumerate(code_blocks(DOC.read_text()), start=1):
        # Shorter budgets than the doc's, so the suite stays quick; the code is otherwise as written.
        block = re.sub(r"max_time=\d+", "max_time=3", block)
        try:
            exec(compile(block, f"docs/api.md block {index}", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message says which block failed
            pytest.fail(f"docs/api.md block {index} failed: {type(err).__name__}: {err}")
    assert (tmp_path / "runs" / "fish" / "config.json").exists()
    assert (tmp_path / "stack_denoised.tif").exists()
    assert set(namespace["both"]) == {"denoised", "stage1"}
    assert namespace["run"].summary["stop_reason"] == "stopped"
