"""Hostile inputs and outputs: atomic writes (permissions, leftovers, full disks), huge or multichannel TIFFs,
and misleading messages for odd shapes and values."""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

from denoise_studio.engine import io
from denoise_studio.engine.config import DataConfig
from denoise_studio.engine.data import Normalization
from denoise_studio.engine.io import (
    InputError,
    LazyStack,
    atomic_write,
    check_image,
    load_image,
    read_image,
    read_image_meta,
    write_tiff,
    write_tiff_stream,
)


def noise(shape, dtype=np.float32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(dtype)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(old)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_bytes(data: bytes):
    def write(tmp):
        tmp.write_bytes(data)

    return write


# --- atomic_write: permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_normal_permissions(mask, expected, umask, tmp_path):
    umask(mask)
    target = atomic_write(tmp_path / "sub" / "model.pt", write_bytes(b"weights"))
    assert target == tmp_path / "sub" / "model.pt"
    assert target.read_bytes() == b"weights"
    assert mode(target) == expected
    assert listing(target.parent) == ["model.pt"]


def test_umask_is_read_without_proc_and_left_unchanged(umask, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_PROC_STATUS", str(tmp_path / "no-proc-status"))
    umask(0o027)
    target = atomic_write(tmp_path / "out.bin", write_bytes(b"x"))
    assert mode(target) == 0o640
    assert os.umask(0o027) == 0o027  # still the value the test set


@pytest.mark.parametrize("writer", ["write_tiff", "write_tiff_stream"])
def test_tiff_writers_give_normal_permissions(writer, umask, tmp_path):
    umask(0o022)
    image = noise((3, 32, 32))
    if writer == "write_tiff":
        target = write_tiff(tmp_path / "out.tif", image)
    else:
        target = write_tiff_stream(tmp_path / "out.tif", iter(image), image.shape, np.float32)
    assert mode(target) == 0o644
    np.testing.assert_array_equal(read_image(target), image)


# --- atomic_write: temporary names and leftovers ---------------------------------------------------------------


def test_temporary_name_embeds_the_pid(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"x")

    atomic_write(tmp_path / "out.tif", write)
    assert re.fullmatch(rf"\.out\.tif\.{os.getpid()}\.[0-9a-f]+\.part", seen[0].name)


def make_part(folder, name: str, age_s: float = 3600.0):
    path = folder / name
    path.write_bytes(b"half a model")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_leftovers_of_dead_processes_are_removed(tmp_path):
    dead = dead_pid()
    make_part(tmp_path, f".out.tif.{dead}.0a1b2c.part")
    make_part(tmp_path, f".out.tif.{dead}.ffff.part")
    atomic_write(tmp_path / "out.tif", write_bytes(b"new"))
    assert listing(tmp_path) == ["out.tif"]


def test_leftovers_of_live_processes_and_other_targets_are_kept(tmp_path):
    dead = dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [
            make_part(tmp_path, f".out.tif.{live.pid}.0a1b2c.part"),  # another live writer
            make_part(tmp_path, f".out.tif.{os.getpid()}.1234.part"),  # another thread of this process
            make_part(tmp_path, f".out.tif.{dead}.abcd.part", age_s=1.0),  # just written: maybe another host
            make_part(tmp_path, f".other.tif.{dead}.abcd.part"),  # another target
            make_part(tmp_path, f".out.tif.5.{dead}.abcd.part"),  # a part of "out.tif.5"
            make_part(tmp_path, ".out.tif.k2j4x_9q.part"),  # an old mkstemp name: owner unknown
        ]
        atomic_write(tmp_path / "out.tif", write_bytes(b"new"))
        assert listing(tmp_path) == sorted([p.name for p in kept] + ["out.tif"])
    finally:
        live.kill()
        live.wait()


# --- atomic_write: failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), ValueError("bad"), MemoryError()])
def test_any_failure_removes_the_temporary_file_and_keeps_the_target(error, tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old result")

    def write(tmp):
        tmp.write_bytes(b"half")
        raise error

    with pytest.raises(type(error)) as raised:
        atomic_write(target, write)
    assert raised.value is error
    assert target.read_bytes() == b"old result"
    assert listing(tmp_path) == ["out.tif"]


def test_a_failing_stream_leaves_nothing(tmp_path):
    def planes():
        yield noise((32, 32))
        raise RuntimeError("stopped by the user")

    with pytest.raises(RuntimeError, match="stopped by the user"):
        write_tiff_stream(tmp_path / "out.tif", planes(), (2, 32, 32), np.float32)
    assert listing(tmp_path) == []


DISK_FULL = [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
                 "file write failed"),
    RuntimeError("No space left on device"),
    RuntimeError("write: ENOSPC"),
    OSError("100000 requested and 0 written"),  # numpy tofile
    ValueError("4096 requested and 512 written"),
]


@pytest.mark.parametrize("error", DISK_FULL, ids=lambda e: f"{type(e).__name__}:{str(e)[-20:]}")
def test_a_full_disk_is_reported_clearly(error, tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old result")

    def write(tmp):
        tmp.write_bytes(b"half")
        raise error

    with pytest.raises(OSError) as raised:
        atomic_write(target, write)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.strerror == "no space left on the device"
    assert raised.value.filename == str(target)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert target.read_bytes() == b"old result"
    assert listing(tmp_path) == ["out.tif"]


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EACCES, "Permission denied"), RuntimeError("CUDA error"), ValueError("bad shape"), OSError("x")],
)
def test_other_write_errors_propagate_unchanged(error, tmp_path):
    def write(tmp):
        raise error

    with pytest.raises(type(error)) as raised:
        atomic_write(tmp_path / "out.tif", write)
    assert raised.value is error
    assert listing(tmp_path) == []


def test_a_full_disk_in_write_tiff_is_reported(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    with pytest.raises(OSError, match="no space left on the device") as raised:
        write_tiff(tmp_path / "out.tif", noise((32, 32)))
    assert raised.value.errno == errno.ENOSPC
    assert listing(tmp_path) == []


# --- read_image: size before pixels ----------------------------------------------------------------------------


def tiff_claiming(path, height: int, width: int) -> None:
    """A tiny classic TIFF whose header claims a ``height x width`` uint8 image (the pixels are not there)."""
    tags = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, width * height),
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0))


def forbid_decoding(monkeypatch):
    def decode(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(tifffile.TiffFile, "asarray", decode)
    monkeypatch.setattr(tifffile, "imread", decode)


def test_a_huge_tiff_header_is_refused_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "huge.tif"
    tiff_claiming(path, 60000, 60000)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (60000, 60000)
    monkeypatch.setattr(io, "available_memory", lambda: 4 * 2**30)
    forbid_decoding(monkeypatch)
    with pytest.raises(InputError, match=r"huge\.tif: too large to load.* needs 3\.6 GB.* 4\.3 GB of memory"):
        load_image(path)


def test_the_memory_limit_is_half_the_available_memory(tmp_path, monkeypatch):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, noise((64, 64)))  # 16384 bytes of pixels
    monkeypatch.setattr(io, "available_memory", lambda: 2 * 16384)
    assert load_image(path).shape == (1, 64, 64)
    monkeypatch.setattr(io, "available_memory", lambda: 2 * 16384 - 2)
    forbid_decoding(monkeypatch)
    with pytest.raises(InputError, match="too large to load"):
        read_image(path)


def test_available_memory_has_a_fallback(tmp_path, monkeypatch):
    assert io.available_memory() > 0
    monkeypatch.setattr(io, "_PROC_MEMINFO", str(tmp_path / "no-meminfo"))
    assert io.available_memory() > 0

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    assert io.available_memory() == io.FALLBACK_AVAILABLE_MEMORY == 8 * 2**30


# --- read_image: channels are not slices -----------------------------------------------------------------------


def multichannel_files(folder) -> dict:
    image = noise((3, 32, 40))
    files = {
        "planar_rgb.tif": (3, "CYX"),
        "ome_cyx.ome.tif": (3, "CYX"),
        "ome_two.ome.tif": (2, "CYX"),
        "imagej_cyx.tif": (3, "CYX"),
        "ome_zcyx.ome.tif": (2, "ZCYX"),
    }
    tifffile.imwrite(folder / "planar_rgb.tif", (image * 255).astype(np.uint8), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(folder / "ome_cyx.ome.tif", image, ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "ome_two.ome.tif", image[:2], ome=True, metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "imagej_cyx.tif", image, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "ome_zcyx.ome.tif", noise((4, 2, 32, 40)), ome=True, metadata={"axes": "ZCYX"})
    return files


def test_multichannel_tiffs_are_read_as_channels_not_slices(tmp_path):
    # A single-channel tool refuses them, naming the channels the file declares.
    for name, (channels, axes) in multichannel_files(tmp_path).items():
        with pytest.raises(InputError, match=rf"{re.escape(name)}: has {channels} channels \(axes {axes}") as raised:
            load_image(tmp_path / name)
        assert "split the channels and open one at a time" in str(raised.value)
        image, meta = read_image_meta(tmp_path / name)
        assert meta.axes == axes and image.shape[meta.axes.index("C")] == channels


def test_lazy_stack_refuses_channels(tmp_path):
    multichannel_files(tmp_path)
    for name in ("ome_cyx.ome.tif", "imagej_cyx.tif", "planar_rgb.tif"):
        with pytest.raises(InputError, match="channels"):
            LazyStack(tmp_path / name)


def test_single_channel_tiffs_still_load(tmp_path):
    stack = noise((5, 32, 40))
    tifffile.imwrite(tmp_path / "ome_zyx.ome.tif", stack, ome=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "ome_tyx.ome.tif", stack, ome=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "ome_czyx.ome.tif", stack[np.newaxis], ome=True, metadata={"axes": "CZYX"})
    tifffile.imwrite(tmp_path / "imagej_zyx.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "minisblack.tif", stack[:3], photometric="minisblack")  # 'QYX'
    tifffile.imwrite(tmp_path / "plain.tif", stack)  # 5 pages: 'QYX'
    tifffile.imwrite(tmp_path / "one.tif", stack[0])
    tifffile.imwrite(tmp_path / "one_sample.tif", stack[0][..., np.newaxis], photometric="minisblack")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:  # plain pages without metadata: 'IYX'
        for plane in stack:
            tif.write(plane, metadata=None, contiguous=False)
    expected = {
        "ome_zyx.ome.tif": stack, "ome_tyx.ome.tif": stack, "ome_czyx.ome.tif": stack, "imagej_zyx.tif": stack,
        "minisblack.tif": stack[:3], "plain.tif": stack, "one.tif": stack[:1], "one_sample.tif": stack[:1],
        "pages.tif": stack,
    }
    for name, wanted in expected.items():
        np.testing.assert_array_equal(load_image(tmp_path / name), wanted, err_msg=name)
    with tifffile.TiffFile(tmp_path / "pages.tif") as tif:
        assert tif.series[0].axes in ("IYX", "QYX")
    lazy = LazyStack(tmp_path / "ome_zyx.ome.tif")
    try:
        assert lazy.shape == (5, 32, 40)
    finally:
        lazy.close()


# --- check_image: messages that say what is wrong -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 32, 1), (1, 40, 32), (1, 40, 32, 1)])
def test_singleton_axes_make_a_2d_image(shape):
    image = noise(shape)
    checked = check_image(image)
    assert checked.shape == (1, 40, 32)
    np.testing.assert_array_equal(checked.ravel(), image.ravel())


@pytest.mark.parametrize("channels", [2, 5])
def test_channels_last_is_named(channels):
    with pytest.raises(InputError, match=rf"looks like a {channels}-channel image \(channels last") as raised:
        check_image(noise((64, 48, channels)), name="sample")
    assert "too small" not in str(raised.value)


@pytest.mark.parametrize(
    "image",
    [
        np.array([[-1e300, 1e300]] * 32 * 16, dtype=np.float64).reshape(32, 32),
        np.array([[-3e38, 3e38]] * 32 * 16, dtype=np.float32).reshape(32, 32),
        np.array([[0, 1e39]] * 32 * 16, dtype=np.float64).reshape(32, 32),
    ],
)
def test_overflowing_values_are_named(image):
    with pytest.raises(InputError, match="values too large") as raised:
        check_image(image, name="sample")
    assert "overflow" in str(raised.value)


def test_float16_with_a_wide_range_is_accepted():
    image = noise((32, 32), dtype=np.float16) * np.float16(60000)
    image[0, 0], image[0, 1] = -60000, 60000  # max - min overflows float16, not the engine's float32
    assert check_image(image).dtype == np.float16


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_normalization_says_overflow_rather_than_no_spread():
    huge = np.array([[-1e300, 1e300]] * 32, dtype=np.float64).reshape(8, 8)[np.newaxis]
    with pytest.raises(InputError, match="too large.*overflow") as raised:
        Normalization.fit([huge], DataConfig())
    assert "no intensity spread" not in str(raised.value)
    with pytest.raises(InputError, match="no intensity spread"):
        Normalization.fit([np.full((1, 8, 8), 3.0)], DataConfig())


def test_a_float_stack_stored_as_planar_rgb_loads_as_slices(tmp_path):
    # Older tifffile wrote any 3-slice array as planar RGB; float data is such a stack, not a colour image.
    stack = np.random.default_rng(0).random((3, 32, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "three.tif", stack, photometric="rgb", planarconfig="separate")
    assert load_image(tmp_path / "three.tif").shape == (3, 32, 40)
