"""OME-Zarr in and out: round trips, the pyramid, lazy reading, refusals, atomic and bounded writing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from denoise_studio.engine.chunked import compute_context
from denoise_studio.engine.errors import InputError
from denoise_studio.engine.io import STALE_PART_AGE_S
from denoise_studio.engine.zarr_io import ZarrImage, is_ome_zarr, read_ome_zarr, write_ome_zarr


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def noisy(shape, dtype=np.uint16, seed=0) -> np.ndarray:
    values = np.random.default_rng(seed).random(shape) * 1000
    return values.astype(dtype)


def multiscales(path: Path) -> dict:
    return json.loads((path / ".zattrs").read_text())["multiscales"][0]


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".part"))


# -- round trips ---------------------------------------------------------------------------------------


def test_zyx_round_trip_keeps_values_axes_scales_units_and_channel_name(tmp_path):
    image = noisy((3, 70, 90))
    path = write_ome_zarr(
        tmp_path / "stack.ome.zarr",
        image,
        "ZYX",
        scales={"Z": 2.0, "Y": 0.25, "X": 0.25},
        units={"Z": "µm", "Y": "um", "X": "micrometer"},
        translation={"Z": 10.0, "Y": 1.5, "X": -3.0},
        channel_names=["GFP"],
    )
    assert path == tmp_path / "stack.ome.zarr"
    assert is_ome_zarr(path)
    read = read_ome_zarr(path)
    assert isinstance(read, ZarrImage)
    assert read.axes == "ZYX" and read.shape == image.shape and read.dtype == np.uint16
    np.testing.assert_array_equal(read.data.compute(), image)
    assert read.scales == {"Z": 2.0, "Y": 0.25, "X": 0.25}
    assert read.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    assert read.translation == {"Z": 10.0, "Y": 1.5, "X": -3.0}
    assert read.channel_names == ["GFP"]
    assert read.version == "0.4"
    meta = multiscales(path)
    assert meta["version"] == "0.4"
    assert meta["axes"] == [
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]


def test_tczyx_float_dask_round_trip_with_channel_names(tmp_path):
    image = noisy((2, 2, 3, 40, 50), np.float32, seed=1)
    source = da.from_array(image, chunks=(1, 1, 2, 17, 23))
    path = write_ome_zarr(
        tmp_path / "t.zarr",
        source,
        "tczyx",
        scales={"T": 1.5, "Z": 1.0, "Y": 0.1, "X": 0.1},
        units={"T": "s", "X": "nm", "Y": "nm"},
        channel_names=["DAPI", "mCherry"],
    )
    read = read_ome_zarr(path)
    assert read.axes == "TCZYX"
    np.testing.assert_array_equal(read.data.compute(), image)
    assert read.scales == {"T": 1.5, "Z": 1.0, "Y": 0.1, "X": 0.1}
    assert read.units == {"T": "second", "Y": "nanometer", "X": "nanometer"}
    assert read.translation == {}
    assert read.channel_names == ["DAPI", "mCherry"]
    assert [axis["type"] for axis in multiscales(path)["axes"]] == ["time", "channel", "space", "space", "space"]


def test_axes_out_of_ngff_order_are_written_in_it(tmp_path):
    image = noisy((3, 2, 40, 30))  # ImageJ order: slices before channels
    path = write_ome_zarr(tmp_path / "zc.zarr", image, "ZCYX", scales={"Z": 3.0}, chunks=(1, 2, 20, 30))
    read = read_ome_zarr(path)
    assert read.axes == "CZYX"
    assert zarr.open_group(str(path), mode="r")["0"].chunks == (2, 1, 20, 30)  # the chunks follow their axes
    np.testing.assert_array_equal(read.data.compute(), image.transpose(1, 0, 2, 3))
    assert read.scales["Z"] == 3.0


def test_bad_axes_and_channel_names_are_refused(tmp_path):
    image = noisy((3, 40, 30))
    with pytest.raises(InputError, match="S not in TCZYX"):
        write_ome_zarr(tmp_path / "a.zarr", image, "SYX")
    with pytest.raises(InputError, match="2 letters for an array of 3"):
        write_ome_zarr(tmp_path / "a.zarr", image, "YX")
    with pytest.raises(InputError, match="2 channel names for 3"):
        write_ome_zarr(tmp_path / "a.zarr", image, "CYX", channel_names=["a", "b"])
    assert os.listdir(tmp_path) == []


# -- the pyramid ---------------------------------------------------------------------------------------


def test_pyramid_halves_y_and_x_until_the_smaller_side_is_256_or_less(tmp_path):
    image = noisy((2, 601, 1100))
    path = write_ome_zarr(
        tmp_path / "p.zarr",
        image,
        "ZYX",
        scales={"Z": 2.0, "Y": 0.5, "X": 0.4},
        translation={"Y": 100.0},
        chunks=(1, 128, 128),
    )
    group = zarr.open_group(str(path), mode="r")
    meta = multiscales(path)
    assert [d["path"] for d in meta["datasets"]] == ["0", "1", "2"]
    assert [group[d["path"]].shape for d in meta["datasets"]] == [(2, 601, 1100), (2, 301, 550), (2, 151, 275)]
    assert all(group[d["path"]].dtype == np.uint16 for d in meta["datasets"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]]
    assert scales == [[2.0, 0.5, 0.4], [2.0, 1.0, 0.8], [2.0, 2.0, 1.6]]
    # A mean of 2**k pixels sits at their centre: (2**k - 1) / 2 pixels from the first one.
    shifts = [d["coordinateTransformations"][1]["translation"] for d in meta["datasets"]]
    np.testing.assert_allclose(shifts, [[0.0, 100.0, 0.0], [0.0, 100.25, 0.2], [0.0, 100.75, 0.6]])
    level1 = group["1"][:]
    expected = image[:, :600, :].reshape(2, 300, 2, 550, 2).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(level1[:, :300], np.rint(expected).astype(np.uint16))
    # The odd last row is the mean of itself with itself: its own mean along X only.
    last = image[:, 600].reshape(2, 550, 2).astype(np.float64).mean(axis=2)
    np.testing.assert_array_equal(level1[:, 300], np.rint(last).astype(np.uint16))


def test_a_small_image_has_one_level_and_chunks_are_capped_to_the_shape(tmp_path):
    path = write_ome_zarr(tmp_path / "s.zarr", noisy((40, 60)), "YX")
    group = zarr.open_group(str(path), mode="r")
    assert [d["path"] for d in multiscales(path)["datasets"]] == ["0"]
    assert group["0"].chunks == (40, 60)
    assert read_ome_zarr(path).axes == "YX"


def test_chunks_may_be_given_per_axis_by_name(tmp_path):
    path = write_ome_zarr(tmp_path / "c.zarr", noisy((5, 100, 80)), "ZYX", chunks={"Z": 2, "Y": 32, "X": 48})
    assert zarr.open_group(str(path), mode="r")["0"].chunks == (2, 32, 48)
    assert read_ome_zarr(path).data.chunks == ((2, 2, 1), (32, 32, 32, 4), (48, 32))


# -- reading -------------------------------------------------------------------------------------------


def test_reading_is_lazy(tmp_path):
    path = write_ome_zarr(tmp_path / "lazy.zarr", noisy((2, 64, 64)), "ZYX", chunks=(1, 32, 32))
    # A damaged chunk: reading must not touch it; only computing does.
    (path / "0" / "1" / "1" / "1").write_bytes(b"not a compressed chunk")
    read = read_ome_zarr(path)
    assert isinstance(read.data, da.Array)
    assert read.data.chunks == ((1, 1), (32, 32), (32, 32))
    read.data[0].compute()  # chunks elsewhere are fine
    with pytest.raises(Exception):  # noqa: B017 - the codec's error type is its own
        read.data[1].compute()


def test_reads_ngff_0_5_written_by_ome_zarr(tmp_path):
    from ome_zarr.writer import write_image

    image = noisy((2, 3, 48, 40))
    path = tmp_path / "v05.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    write_image(
        image,
        group,
        axes="czyx",
        scale={"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=[],
        metadata={"omero": {"channels": [{"label": "one"}, {"label": "two"}]}},
    )
    assert (path / "zarr.json").is_file()
    assert is_ome_zarr(path)
    read = read_ome_zarr(path)
    assert read.version == "0.5"
    assert read.axes == "CZYX"
    np.testing.assert_array_equal(read.data.compute(), image)
    assert read.scales == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    assert read.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}


def test_reads_a_whole_multiscale_transformation(tmp_path):
    path = write_ome_zarr(
        tmp_path / "g.zarr", noisy((40, 50)), "YX", scales={"Y": 0.5, "X": 0.5}, translation={"Y": 1.0}
    )
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [2.0, 3.0]},
        {"type": "translation", "translation": [10.0, 20.0]},
    ]
    (path / ".zattrs").write_text(json.dumps(attrs))
    read = read_ome_zarr(path)
    assert read.scales == {"Y": 1.0, "X": 1.5}
    assert read.translation == {"Y": 12.0, "X": 20.0}


def make_plain_zarr(path: Path) -> Path:
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(20, 20), dtype="uint8")
    return path


def damage(path: Path, edit) -> Path:
    attrs = json.loads((path / ".zattrs").read_text())
    edit(attrs)
    (path / ".zattrs").write_text(json.dumps(attrs))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such folder"),
        ("file", "is a file"),
        ("empty folder", "not a Zarr folder"),
        ("plain zarr", "without OME-Zarr multiscales"),
        ("corrupt json", "damaged Zarr metadata"),
        ("no datasets", "damaged OME-Zarr multiscales"),
        ("no axes", "damaged OME-Zarr multiscales"),
        ("missing level", "level 0 ('0') of the image is missing"),
        ("unknown axis", "unknown axis name 'q'"),
        ("bad scale", "damaged OME-Zarr coordinate transformations"),
    ],
)
def test_refusals_name_the_path(tmp_path, case, message):
    path = tmp_path / "image.ome.zarr"
    if case == "file":
        path.write_bytes(b"zarr?")
    elif case == "empty folder":
        path.mkdir()
    elif case == "plain zarr":
        make_plain_zarr(path)
    elif case != "missing":
        write_ome_zarr(path, noisy((30, 40)), "YX")
        if case == "corrupt json":
            (path / ".zattrs").write_text('{"multiscales": [')
        elif case == "no datasets":
            damage(path, lambda a: a["multiscales"][0].update(datasets=[]))
        elif case == "no axes":
            damage(path, lambda a: a["multiscales"][0].pop("axes"))
        elif case == "missing level":
            shutil.rmtree(path / "0")
        elif case == "unknown axis":
            damage(path, lambda a: a["multiscales"][0]["axes"][0].update(name="q", type="space"))
        elif case == "bad scale":
            damage(path, lambda a: a["multiscales"][0]["datasets"][0]["coordinateTransformations"][0].update(scale=[1]))
    with pytest.raises(InputError) as caught:
        read_ome_zarr(path)
    text = str(caught.value)
    assert str(path) in text and message in text
    assert "\n" not in text
    assert not is_ome_zarr(path) or case in ("no datasets", "no axes", "missing level", "unknown axis", "bad scale")


def test_is_ome_zarr_needs_the_suffix_and_the_metadata(tmp_path):
    image = noisy((30, 40))
    assert is_ome_zarr(write_ome_zarr(tmp_path / "a.ome.zarr", image, "YX"))
    assert is_ome_zarr(write_ome_zarr(tmp_path / "b.ZARR", image, "YX"))
    assert not is_ome_zarr(write_ome_zarr(tmp_path / "c.folder", image, "YX"))
    assert not is_ome_zarr(make_plain_zarr(tmp_path / "plain.zarr"))
    assert not is_ome_zarr(tmp_path / "missing.zarr")
    (tmp_path / "file.zarr").write_bytes(b"")
    assert not is_ome_zarr(tmp_path / "file.zarr")


# -- writing: atomic, permissions, overwrite, leftovers ----------------------------------------------


def test_an_existing_target_is_refused_unless_overwrite(tmp_path):
    target = tmp_path / "out.zarr"
    write_ome_zarr(target, noisy((30, 40), seed=1), "YX")
    with pytest.raises(FileExistsError):
        write_ome_zarr(target, noisy((30, 40), seed=2), "YX")
    np.testing.assert_array_equal(read_ome_zarr(target).data.compute(), noisy((30, 40), seed=1))
    write_ome_zarr(target, noisy((3, 50, 60), seed=3), "ZYX", overwrite=True)
    read = read_ome_zarr(target)
    assert read.axes == "ZYX"
    np.testing.assert_array_equal(read.data.compute(), noisy((3, 50, 60), seed=3))
    assert os.listdir(tmp_path) == ["out.zarr"]


def test_overwrite_keeps_the_old_image_when_the_new_one_fails(tmp_path):
    target = tmp_path / "out.zarr"
    write_ome_zarr(target, noisy((30, 40), seed=1), "YX")

    def fail(block):
        raise RuntimeError("the network broke")

    broken = da.map_blocks(fail, da.zeros((30, 40), chunks=(10, 40), dtype=np.float32), dtype=np.float32)
    with pytest.raises(RuntimeError, match="the network broke"):
        write_ome_zarr(target, broken, "YX", overwrite=True)
    np.testing.assert_array_equal(read_ome_zarr(target).data.compute(), noisy((30, 40), seed=1))
    assert os.listdir(tmp_path) == ["out.zarr"]


def test_an_interrupt_leaves_nothing(tmp_path):
    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ome_zarr(tmp_path / "out.zarr", noisy((4, 40, 40)), "ZYX", chunks=(1, 20, 20), progress=interrupt)
    assert os.listdir(tmp_path) == []


def test_the_temporary_folder_is_hidden_beside_the_target_and_names_the_pid(tmp_path):
    seen = []

    def look(done, total):
        seen.extend(name for name in os.listdir(tmp_path) if name.endswith(".part"))

    write_ome_zarr(tmp_path / "out.zarr", noisy((40, 40)), "YX", progress=look)
    assert seen and all(name.startswith(f".out.zarr.{os.getpid()}.") for name in seen)
    assert leftovers(tmp_path) == []


def test_progress_counts_batches_over_every_level(tmp_path):
    calls = []
    write_ome_zarr(
        tmp_path / "out.zarr", noisy((2, 600, 600)), "ZYX", chunks=(1, 64, 64), progress=lambda *a: calls.append(a)
    )
    total = calls[-1][1]
    assert calls == [(done, total) for done in range(1, total + 1)]
    assert total >= 3  # at least one batch per level


def test_a_full_disk_is_reported_as_enospc_and_leaves_nothing(tmp_path):
    def full(block):
        raise OSError(errno.ENOSPC, "No space left on device")

    data = da.map_blocks(full, da.zeros((2, 40, 40), chunks=(1, 40, 40), dtype=np.uint16), dtype=np.uint16)
    with compute_context(), pytest.raises(OSError) as caught:
        write_ome_zarr(tmp_path / "out.zarr", data, "ZYX")
    assert caught.value.errno == errno.ENOSPC
    assert str(tmp_path / "out.zarr") in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_files_and_folders_get_normal_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_ome_zarr(tmp_path / "out.zarr", noisy((2, 40, 40)), "ZYX", chunks=(1, 20, 20))
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(os.stat(path).st_mode)}
    files = set()
    for root, dirs, names in os.walk(path):
        modes.update(stat.S_IMODE(os.stat(Path(root) / d).st_mode) for d in dirs)
        files.update(stat.S_IMODE(os.stat(Path(root) / n).st_mode) for n in names)
    assert modes == {0o750}
    assert files == {0o640}


def make_part_folder(folder: Path, name: str, age_s: float = 2 * STALE_PART_AGE_S) -> Path:
    part = folder / name
    (part / "0" / "0").mkdir(parents=True)
    (part / ".zattrs").write_text("{}")
    (part / "0" / "0" / "0").write_bytes(b"half a chunk")
    then = time.time() - age_s
    os.utime(part, (then, then))
    return part


def test_leftovers_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    dead = dead_pid()
    make_part_folder(tmp_path, f".out.zarr.{dead}.0a1b2c.part")
    make_part_folder(tmp_path, f".out.zarr.{dead}.ffff.part")
    write_ome_zarr(tmp_path / "out.zarr", noisy((30, 40)), "YX")
    assert leftovers(tmp_path) == []


def test_leftovers_that_may_still_be_written_are_kept(tmp_path):
    dead = dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [
            make_part_folder(tmp_path, f".out.zarr.{live.pid}.0a1b2c.part"),  # another live writer
            make_part_folder(tmp_path, f".out.zarr.{os.getpid()}.1234.part"),  # another thread of this process
            make_part_folder(tmp_path, f".out.zarr.{dead}.abcd.part", age_s=1.0),  # just written: maybe another host
            make_part_folder(tmp_path, f".other.zarr.{dead}.abcd.part"),  # another target
            make_part_folder(tmp_path, f".out.zarr.5.{dead}.abcd.part"),  # a part of "out.zarr.5"
        ]
        file_part = tmp_path / f".out.zarr.{dead}.beef.part"  # a file: io.atomic_write's to clean
        file_part.write_bytes(b"")
        os.utime(file_part, (0, 0))
        write_ome_zarr(tmp_path / "out.zarr", noisy((30, 40)), "YX")
    finally:
        live.kill()
        live.wait()
    assert all(part.is_dir() for part in kept)
    assert file_part.exists()


# -- writing: bounded memory ----------------------------------------------------------------------------


def random_chunk(block_info=None):
    location = block_info[None]["chunk-location"]
    return np.random.default_rng(location).random(block_info[None]["chunk-shape"], dtype=np.float32)


def test_a_dask_array_is_written_chunk_by_chunk_in_bounded_memory(tmp_path):
    shape, chunks = (64, 512, 512), (8, 256, 256)  # 64 MB of float32 in 2 MB chunks
    source = da.map_blocks(random_chunk, dtype=np.float32, chunks=da.core.normalize_chunks(chunks, shape))
    with compute_context():
        write_ome_zarr(tmp_path / "warm-up.zarr", np.ones((2, 64, 64), np.float32), "ZYX")  # imports, caches
        tracemalloc.start()
        try:
            path = write_ome_zarr(tmp_path / "big.zarr", source, "ZYX", chunks=chunks)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < source.nbytes / 4, f"peak {peak / 2**20:.1f} MB for a {source.nbytes / 2**20:.0f} MB array"
    read = read_ome_zarr(path).data
    np.testing.assert_array_equal(read[40:48, 256:].compute(), source[40:48, 256:].compute())
    assert zarr.open_group(str(path), mode="r")["1"].shape == (64, 256, 256)
