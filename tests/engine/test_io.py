"""Reading, checking and writing images: every bad input gets a clear InputError."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from denoise_studio.engine.io import InputError, LazyStack, check_image, load_image, read_image, write_tiff


def noise(shape, dtype=np.float32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(dtype)


def with_value(value) -> np.ndarray:
    image = noise((32, 32))
    image[5, 7] = value
    return image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (noise((64, 64, 3)), "looks like an RGB"),
        (noise((64, 64, 4)), "looks like an RGB"),
        (noise((2, 3, 32, 32)), "expected a 2D image .* got 4 dimensions"),
        (noise((64,)), "got 1 dimensions"),
        (with_value(np.nan), "contains 1 NaN or Inf"),
        (with_value(np.inf), "contains 1 NaN or Inf"),
        (with_value(-np.inf), "contains 1 NaN or Inf"),
        (np.full((32, 32), 7, dtype=np.uint16), "constant"),
        (np.zeros((0, 32)), "empty"),
        (noise((8, 64)), "too small .* need at least 16x16"),
        (noise((3, 15, 40)), "too small"),
        (noise((32, 32)) > 0.5, "boolean"),
        (noise((32, 32)) + 1j, "complex"),
        (np.array([["a"] * 32] * 32), "unsupported data type"),
    ],
)
def test_bad_arrays_are_refused_clearly(image, message):
    with pytest.raises(InputError, match=message):
        check_image(image, name="sample")


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((32, 40), (1, 32, 40)), ((5, 32, 40), (5, 32, 40)), ((1, 1, 32, 40), (1, 32, 40)), ((3, 1, 32, 40), (3, 32, 40))],
)
def test_good_arrays_become_zyx(shape, expected):
    image = noise(shape)
    checked = check_image(image)
    assert checked.shape == expected
    np.testing.assert_array_equal(checked.ravel(), image.ravel())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
def test_integer_and_float_types_are_accepted(dtype):
    image = (noise((20, 24)) * 100).astype(dtype)
    assert check_image(image).dtype == dtype


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "absent.tif")


def test_folder_instead_of_a_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "image.jpg"
    path.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(InputError, match=r"unsupported file type '\.jpg'"):
        load_image(path)


@pytest.mark.parametrize("name", ["corrupt.tif", "corrupt.TIFF", "corrupt.png"])
def test_corrupt_files(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputError, match="cannot be read as an image"):
        load_image(path)


def test_truncated_tiff(tmp_path):
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, noise((64, 64)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match="truncated.tif"):
        load_image(path)


def test_rgb_file_is_refused(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, (noise((64, 64, 3)) * 255).astype(np.uint8))
    with pytest.raises(InputError, match=r"has 3 channels \(axes YXC"):
        load_image(path)


def test_png_round_trip(tmp_path):
    image = (noise((40, 30)) * 60000).astype(np.uint16)
    iio.imwrite(tmp_path / "image.png", image)
    np.testing.assert_array_equal(load_image(tmp_path / "image.png")[0], image)


@pytest.mark.parametrize("shape", [(40, 30), (3, 40, 30), (4, 40, 30), (7, 40, 30)])
def test_write_tiff_round_trip_as_grey_planes(shape, tmp_path):
    image = noise(shape)
    target = write_tiff(tmp_path / "sub" / "out.tif", image)
    assert target == tmp_path / "sub" / "out.tif"
    np.testing.assert_array_equal(read_image(target), image)
    with tifffile.TiffFile(target) as tif:
        # A 3- or 4-slice stack must stay a grey stack, never become one RGB(A) image.
        assert len(tif.pages) == (shape[0] if len(shape) == 3 else 1)
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.tif"]


def test_lazy_stack_reads_planes(tmp_path):
    stack = noise((6, 32, 20))
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    lazy = LazyStack(tmp_path / "stack.tif")
    try:
        assert len(lazy) == 6 and lazy.shape == (6, 32, 20) and lazy.dtype == np.float32
        assert lazy._array is None  # planes come from the file one at a time
        np.testing.assert_array_equal(lazy[4], stack[4])
        np.testing.assert_array_equal(np.stack(list(lazy)), stack)
    finally:
        lazy.close()


def test_lazy_stack_checks_planes(tmp_path):
    stack = noise((6, 32, 20))
    stack[3, 1, 1] = np.nan
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    lazy = LazyStack(tmp_path / "stack.tif")
    try:
        lazy[2]
        with pytest.raises(InputError, match="plane 3 contains NaN"):
            lazy[3]
    finally:
        lazy.close()
    tifffile.imwrite(tmp_path / "small.tif", noise((6, 8, 20)))
    with pytest.raises(InputError, match="too small"):
        LazyStack(tmp_path / "small.tif")
