"""Train the bundled starter model: N2V, Fast preset, on the bundled noisy confocal sample.

It lets Import -> Process (and ``predict starter ...``) work offline on a first start. The run
folder keeps its whole training record (config.json with the seed and versions, history.csv,
noise_model.json). Rerun after a change to the model file format:

    python scripts/make_starter_model.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import tifffile

import denoise_studio as ds
from denoise_studio.samples import STARTER_MODEL, sample_dir, sample_path

KEEP = ("config.json", "model.pth", "history.csv", "noise_model.json")
#: 13 steps each: about as many steps as the Fast preset takes in its 110 s on a 2-core CPU with bf16.
EPOCHS = 200


def main() -> int:
    noisy = tifffile.imread(sample_path("fmd_fish_confocal_noisy.tif"))
    # A fixed number of steps, not the preset's time budget: the same model on any machine, however busy.
    config = ds.make_config("n2v", "2d", "fast", seed=0, max_time=None, epochs=EPOCHS)
    with tempfile.TemporaryDirectory() as work:
        run = ds.train(noisy, config, run_dir=Path(work) / "run", names=["fmd_fish_confocal_noisy.tif"])
        if run.model is None:
            print(f"no model: {run.message}", file=sys.stderr)
            return 1
        target = sample_dir() / STARTER_MODEL
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        for name in KEEP:
            shutil.copy2(Path(work) / "run" / name, target / name)
    print(f"{run.state.value}: {run.message}\n{target}: {', '.join(KEEP)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
