"""autoStructN2V mask extraction (§1.3/§1.4 of the algorithms note) on noise of known structure.

Stage 1 is stood in for by a least-squares linear blind-spot predictor fitted on the data itself: like a
trained N2V it predicts each pixel from its neighbours but never from the pixel, so correlated noise is
partly predicted and its interpolation error is left in the residual. That keeps the tests deterministic
and CPU-fast while exercising the same residual statistics as a real stage 1.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from denoise_studio.engine.config import MaskExtractorConfig
from denoise_studio.engine.mask_extraction import (
    NO_STRUCTURE,
    MaskExtractionResult,
    extract_struct_mask,
    residual_autocorrelation,
    threshold_correlation,
)

SHAPE = (8, 256, 256)  # 8 fields of 256 x 256, as in spec §1.4
SIGMA = 0.8  # noise standard deviation on a signal of unit standard deviation
RADIUS = 5  # the default max_radius: kernels are 11 x 11 with the centre at [5, 5]
MA_KERNEL = np.array([0.5, 1.0, 1.0, 1.0, 0.5])
FIT_STEP = 2  # the stand-in is fitted on every 2nd pixel in y and x
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STEM = "em/stem_haadf_SrTiO3_TecnaiOsiris.tif"
SEM = "em/sem_REBCO_FEI_StrataDB_with_databar.tif"


# -- stage-1 stand-in ----------------------------------------------------------------------------------------
def _window_offsets(radius: int, z_radius: int) -> list[tuple[int, int, int]]:
    """All (dz, dy, dx) of the window except the centre: the blind spot."""
    span, zspan = range(-radius, radius + 1), range(-z_radius, z_radius + 1)
    return [(dz, dy, dx) for dz in zspan for dy in span for dx in span if (dz, dy, dx) != (0, 0, 0)]


def _fit_pixels(padded: np.ndarray, z: int, offset, pads: tuple[int, int], height: int, width: int) -> np.ndarray:
    """Values at ``offset`` from the fitting pixels of slice ``z`` of the padded stack."""
    (dz, dy, dx), (zpad, pad) = offset, pads
    return padded[
        z + zpad + dz, pad + dy : pad + dy + height : FIT_STEP, pad + dx : pad + dx + width : FIT_STEP
    ].ravel()


def blind_spot_predict(noisy: np.ndarray, radius: int = 3, z_radius: int = 0) -> np.ndarray:
    """Least-squares linear blind-spot prediction of a (Z, Y, X) stack, fitted on the stack itself.

    ``radius`` 3 gives the 7 x 7 window of the 2D prototype; ``radius`` 2 with ``z_radius`` 1 the 3D
    window over z +- 1 and 5 x 5 of the 2.5D one. NumPy's "reflect" padding (scipy's "mirror") repeats no
    edge pixel, so a border pixel never appears in its own window (no identity leak).
    """
    stack = np.asarray(noisy, dtype=np.float64)
    centred = stack - stack.mean()
    padded = np.pad(centred, ((z_radius, z_radius), (radius, radius), (radius, radius)), mode="reflect")
    offsets = _window_offsets(radius, z_radius)
    height, width = stack.shape[1:]
    gram, rhs = np.zeros((len(offsets), len(offsets))), np.zeros(len(offsets))
    for z in range(stack.shape[0]):
        # The fit sees every FIT_STEP-th pixel in y and x: plenty for at most 74 weights.
        features = np.stack([_fit_pixels(padded, z, offset, (z_radius, radius), height, width) for offset in offsets])
        gram += features @ features.T
        rhs += features @ centred[z, ::FIT_STEP, ::FIT_STEP].ravel()
    kernel = np.zeros((2 * z_radius + 1, 2 * radius + 1, 2 * radius + 1))
    for weight, (dz, dy, dx) in zip(np.linalg.solve(gram, rhs), offsets, strict=True):
        kernel[z_radius + dz, radius + dy, radius + dx] = weight
    return ndimage.correlate(centred, kernel, mode="mirror") + stack.mean()


# -- synthetic data ------------------------------------------------------------------------------------------
@functools.cache
def blobs(seed: int = 0) -> np.ndarray:
    """Gaussian blobs of random brightness, scaled to unit standard deviation."""
    rng = np.random.default_rng(seed)
    impulses = (rng.random(SHAPE) < 0.002) * rng.uniform(0.5, 2.0, SHAPE)
    clean = ndimage.gaussian_filter(impulses, sigma=(0, 4, 4))
    return clean / clean.std()


def moving_average(noise: np.ndarray, axis: int) -> np.ndarray:
    """Noise correlated along ``axis`` by the [0.5, 1, 1, 1, 0.5] kernel, variance kept."""
    kernel = MA_KERNEL / np.sqrt(np.sum(MA_KERNEL**2))
    return ndimage.convolve1d(noise, kernel, axis=axis, mode="wrap")


def noise(kind: str, seed: int) -> np.ndarray:
    """Noise of standard deviation SIGMA (plus row offsets for "rows") of the given structure."""
    white = np.random.default_rng(seed).standard_normal(SHAPE)
    if kind == "horizontal":
        return SIGMA * moving_average(white, axis=2)
    if kind == "vertical":
        return SIGMA * moving_average(white, axis=1)
    if kind == "rows":  # scan-line noise: one random offset per row
        offsets = np.random.default_rng(seed + 100).standard_normal(SHAPE[:2] + (1,))
        return SIGMA * (white + offsets)
    if kind == "z_correlated":  # n_z + 0.8 n_{z-1}, variance kept
        correlated = white.copy()
        correlated[1:] += 0.8 * white[:-1]
        return SIGMA * correlated / np.sqrt(1.64)
    return SIGMA * white


@functools.cache
def stage1(kind: str, mode: str = "2d") -> tuple[np.ndarray, np.ndarray]:
    """(noisy, stage-1 prediction) for a noise kind; cached, as several tests share a case."""
    noisy = blobs() + noise(kind, seed=len(kind))
    predicted = blind_spot_predict(noisy, radius=2, z_radius=1) if mode == "2.5d" else blind_spot_predict(noisy)
    return noisy, predicted


@functools.cache
def extraction(kind: str, mode: str = "2d") -> MaskExtractionResult:
    return extract_struct_mask(*stage1(kind, mode), mode=mode)


# -- assertions ----------------------------------------------------------------------------------------------
def lags(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the active pixels of the centre plane."""
    plane = mask[mask.shape[0] // 2]
    rows, cols = np.nonzero(plane)
    return rows - plane.shape[0] // 2, cols - plane.shape[1] // 2


def assert_line(result: MaskExtractionResult, axis: str, min_pixels: int) -> None:
    """A line through the centre along x ("horizontal") or y ("vertical") with at least ``min_pixels``."""
    dy, dx = lags(result.mask)
    across = dy if axis == "horizontal" else dx
    grid = result.to_text_grid()
    assert np.all(across == 0), f"not a {axis} line:\n{grid}"
    assert result.active_pixels == dy.size >= min_pixels, f"line too short:\n{grid}"
    assert result.summary().startswith(f"{axis} line, {result.active_pixels} px")


def assert_connected_with_centre(mask: np.ndarray) -> None:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    centre = tuple(n // 2 for n in mask.shape)
    assert count == 1 and labels[centre] == 1


# -- synthetic cases of spec §1.4 ----------------------------------------------------------------------------
def test_white_noise_gives_the_centre_pixel_only():
    result = extraction("white")
    assert result.mask.shape == (1, 11, 11)
    assert result.active_pixels == 1 and result.mask[0, RADIUS, RADIUS], result.to_text_grid()
    assert not result.structured and result.summary() == NO_STRUCTURE
    assert result.floor == pytest.approx(0.10)  # 5 / sqrt(524288) = 0.007 is below abs_floor
    assert result.margin() < 1.0  # every off-centre |rho| stays under the floor
    assert result.correlation[0, RADIUS, RADIUS] == 1.0


def test_horizontal_noise_gives_a_symmetric_horizontal_line():
    result = extraction("horizontal")
    assert_line(result, "horizontal", min_pixels=5)
    np.testing.assert_array_equal(result.mask[..., ::-1], result.mask)
    # The residual is the interpolation error: strongly *negative* at lag 1 along the line.
    assert result.correlation[0, RADIUS, RADIUS + 1] < -0.3
    assert result.margin() > 3.0


def test_vertical_noise_gives_the_transposed_line():
    result = extraction("vertical")
    assert_line(result, "vertical", min_pixels=5)
    np.testing.assert_array_equal(result.mask[0], extraction("horizontal").mask[0].T)


def test_row_offsets_give_a_horizontal_line():
    assert_line(extraction("rows"), "horizontal", min_pixels=5)


def test_max_pixels_caps_a_long_line_to_a_connected_centred_line():
    assert extraction("horizontal").active_pixels > 5  # the cap has something to cut
    result = extract_struct_mask(*stage1("horizontal"), MaskExtractorConfig(max_pixels=5))
    assert result.active_pixels == 5
    assert_connected_with_centre(result.mask)
    assert_line(result, "horizontal", min_pixels=5)


def test_2p5d_independent_slices_leave_the_neighbour_planes_empty():
    result = extraction("white", "2.5d")
    assert result.mask.shape == (3, 11, 11) and result.mask[1, RADIUS, RADIUS]
    assert not result.mask[0].any() and not result.mask[2].any(), result.to_text_grid()


def test_2p5d_noise_correlated_in_z_sets_the_centre_above_and_below():
    result = extraction("z_correlated", "2.5d")
    assert result.mask[0, RADIUS, RADIUS] and result.mask[2, RADIUS, RADIUS], result.to_text_grid()
    np.testing.assert_array_equal(result.mask, result.mask[::-1, ::-1, ::-1])  # point symmetry across planes


@pytest.mark.parametrize(("kind", "mode"), [("rows", "2d"), ("z_correlated", "2.5d")])
def test_correlation_is_exactly_point_symmetric_with_a_unit_centre(kind, mode):
    rho = extraction(kind, mode).correlation
    np.testing.assert_array_equal(rho, rho[::-1, ::-1, ::-1])  # exact, so symmetric lags tie exactly
    assert rho[rho.shape[0] // 2, RADIUS, RADIUS] == 1.0


def test_correlation_is_unbiased_at_every_lag():
    columns = np.tile((-1.0) ** np.arange(32), (32, 1))  # +1, -1, +1, ... along x, the same in every row
    rho, _ = residual_autocorrelation(columns, np.zeros_like(columns), RADIUS)
    # Dividing by the overlap count makes it exact at every lag (a biased estimate would shrink it outwards).
    expected = np.tile((-1.0) ** np.arange(-RADIUS, RADIUS + 1), (2 * RADIUS + 1, 1))
    np.testing.assert_allclose(rho[0], expected, atol=1e-12)


@pytest.mark.parametrize(("fields", "structured"), [(12, True), (24, False)])
def test_median_from_20_fields_ignores_a_few_odd_ones(fields, structured):
    stack = np.random.default_rng(5).standard_normal((fields, 64, 64))
    stack[:5] = moving_average(stack[:5], axis=2)  # 5 slices of line noise
    stack /= stack.std(axis=(1, 2), keepdims=True)  # the same residual std everywhere: no outlier slice
    # The mean over 12 fields shows the line; the median over 24 does not see 5 odd ones.
    assert extract_struct_mask(stack, np.zeros_like(stack)).structured == structured


def test_plane_z_plus_1_holds_the_lags_into_the_next_slice():
    white = np.random.default_rng(7).standard_normal((64, 64))
    # Slice z+1 is slice z moved 2 px along x, so rho(dz=+1) peaks at dx=+2 and rho(dz=-1) at dx=-2.
    drifting = np.stack([np.roll(white, 2 * z, axis=1) for z in range(4)])
    rho, n_pixels = residual_autocorrelation(drifting, np.zeros_like(drifting), RADIUS, mode="2.5d")
    assert rho.shape == (3, 11, 11) and n_pixels == 4 * 64 * 64
    assert rho[2, RADIUS, RADIUS + 2] > 0.9 and rho[0, RADIUS, RADIUS - 2] > 0.9


@pytest.mark.parametrize(("scale", "offset"), [(3.0, -7.0), (0.02, 5.0), (-1.0, 0.0)])
def test_affine_change_of_intensities_keeps_the_mask(scale, offset):
    noisy, predicted = stage1("horizontal")
    result = extract_struct_mask(scale * noisy + offset, scale * predicted + offset)
    np.testing.assert_array_equal(result.mask, extraction("horizontal").mask)
    np.testing.assert_allclose(result.correlation, extraction("horizontal").correlation, atol=1e-9)


@pytest.mark.parametrize("kind", ["horizontal", "rows"])
def test_field_order_does_not_matter(kind):
    noisy, predicted = stage1(kind)
    order = np.random.default_rng(3).permutation(SHAPE[0])
    result = extract_struct_mask(noisy[order], predicted[order])
    np.testing.assert_array_equal(result.mask, extraction(kind).mask)
    # Sorting before averaging makes it bit-identical, not merely close.
    np.testing.assert_array_equal(result.correlation, extraction(kind).correlation)


def test_regenerating_with_stricter_parameters_gives_a_subset():
    rho, n_pixels = residual_autocorrelation(*stage1("horizontal"), max_radius=RADIUS)
    default, floor = threshold_correlation(rho, n_pixels, MaskExtractorConfig())
    np.testing.assert_array_equal(default, extraction("horizontal").mask)
    assert floor == extraction("horizontal").floor
    strict, strict_floor = threshold_correlation(rho, n_pixels, MaskExtractorConfig(abs_floor=0.5))
    assert strict_floor == 0.5
    assert np.all(default[strict]) and strict.sum() < default.sum()
    assert strict[0, RADIUS, RADIUS]


# -- thresholding rules on hand-made correlations ------------------------------------------------------------
def line_rho(*values: float, planes: int = 1) -> np.ndarray:
    """rho that is 0 everywhere except ``values`` at lags (0, +-1), (0, +-2), ... of the centre plane."""
    rho = np.zeros((planes, 2 * RADIUS + 1, 2 * RADIUS + 1))
    centre = planes // 2
    rho[centre, RADIUS, RADIUS] = 1.0
    for lag, value in enumerate(values, start=1):
        rho[centre, RADIUS, RADIUS + lag] = rho[centre, RADIUS, RADIUS - lag] = value
    return rho


def row_lags(mask: np.ndarray) -> list[int]:
    return sorted(int(dx) for dx in lags(mask)[1])


@pytest.mark.parametrize(
    ("values", "dilate", "expected"),
    [
        ((-0.5, -0.3), True, [-3, -2, -1, 0, 1, 2, 3]),  # 5-px line: extended unconditionally (rho 0 there)
        ((-0.5, -0.3), False, [-2, -1, 0, 1, 2]),
        ((-0.5, 0.06), True, [-2, -1, 0, 1, 2]),  # 3-px line: extended where |rho| > floor / 2 = 0.05
        ((-0.5, 0.04), True, [-1, 0, 1]),  # ... and not where it is below
        ((-0.5, -0.3, -0.2, -0.2, -0.2), True, [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5]),  # never beyond r
    ],
)
def test_line_extension_rule(values, dilate, expected):
    mask, _ = threshold_correlation(line_rho(*values), 10**6, MaskExtractorConfig(dilate=dilate))
    assert row_lags(mask) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # rho crossing zero right beside the centre: the most correlated neighbour must not stay visible.
        ((0.02, -0.4, -0.3), [-3, -2, -1, 0, 1, 2, 3]),
        # ... or further out, where it would cut the rest of the line off the centre.
        ((-0.5, 0.01, -0.3, -0.2), [-4, -3, -2, -1, 0, 1, 2, 3, 4]),
        # Two missing lags in a row are a real end of the line, not a sign change.
        ((-0.5, 0.0, 0.0, -0.3), [-1, 0, 1]),
    ],
)
def test_one_lag_holes_in_a_line_are_closed(values, expected):
    mask, _ = threshold_correlation(line_rho(*values), 10**6, MaskExtractorConfig(dilate=False))
    assert row_lags(mask) == expected


@pytest.mark.parametrize(("adaptive", "pixels"), [(True, 5), (False, 13)])
def test_percentile_decay_makes_outer_rings_stricter(adaptive, pixels):
    rho = line_rho(0.5)
    rho[0, RADIUS + 1, RADIUS] = rho[0, RADIUS - 1, RADIUS] = 0.5  # ring 1: a cross of four
    for dy, dx in [(0, 2), (2, 0), (1, 2), (-1, 2)]:  # ring 2: half of it at 0.2, touching the cross
        rho[0, RADIUS + dy, RADIUS + dx] = rho[0, RADIUS - dy, RADIUS - dx] = 0.2
    # Ring 2 is tested at the 57.5th percentile (0.2, not exceeded) with decay, at the 50th (0.1) without.
    mask, _ = threshold_correlation(rho, 10**6, MaskExtractorConfig(adaptive=adaptive))
    assert mask.sum() == pixels


def test_line_extension_respects_max_pixels():
    mask, _ = threshold_correlation(line_rho(-0.5, -0.3), 10**6, MaskExtractorConfig(max_pixels=6))
    assert row_lags(mask) == [-2, -1, 0, 1, 2]


def test_cap_regrows_from_the_centre_when_the_strongest_lags_are_not_adjacent():
    # Scan-line residuals peak at lag 2: the best N - 1 scores alone would not touch the centre.
    mask, _ = threshold_correlation(line_rho(-0.15, -0.4, -0.3), 10**6, MaskExtractorConfig(max_pixels=5))
    assert row_lags(mask) == [-2, -1, 0, 1, 2]


def test_floor_follows_the_pixel_count_when_few_pixels_are_used():
    rho = line_rho(-0.15)
    assert threshold_correlation(rho, 10**6, MaskExtractorConfig())[1] == pytest.approx(0.10)
    mask, floor = threshold_correlation(rho, 900, MaskExtractorConfig())  # 5 / sqrt(900) = 0.167
    assert floor == pytest.approx(5 / 30) and mask.sum() == 1


def test_one_sided_scoring_ignores_negative_correlation():
    rho = line_rho(-0.5, -0.3)
    assert threshold_correlation(rho, 10**6, MaskExtractorConfig(two_sided=False))[0].sum() == 1


def test_neighbour_planes_test_the_pixel_above_against_the_floor_alone():
    rho = line_rho(planes=3)
    rho[0, RADIUS, RADIUS] = rho[2, RADIUS, RADIUS] = 0.12
    mask, _ = threshold_correlation(rho, 10**6, MaskExtractorConfig())
    assert mask[0, RADIUS, RADIUS] and mask[2, RADIUS, RADIUS] and mask.sum() == 3


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("noisy_shape", "denoised_shape", "mode", "message"),
    [
        ((2, 32, 32), (2, 32, 31), "2d", "same shape"),
        ((2, 32, 32), (2, 32, 32), "2.5d", "at least 3 slices"),
        ((32, 32), (32, 32), "2.5d", "at least 3 slices"),
        ((32, 32), (32, 32), "3d", "mode must be one of"),
        ((2, 2, 32, 32), (2, 2, 32, 32), "2d", r"\(Y, X\) image or a \(Z, Y, X\) stack"),
        ((4, 4), (4, 4), "2d", "does not fit"),
    ],
)
def test_bad_shapes_and_modes_are_rejected(noisy_shape, denoised_shape, mode, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        extract_struct_mask(rng.standard_normal(noisy_shape), rng.standard_normal(denoised_shape), mode=mode)


@pytest.mark.parametrize("which", ["noisy", "denoised"])
def test_non_finite_values_are_rejected(which):
    arrays = {"noisy": np.zeros((2, 32, 32)), "denoised": np.ones((2, 32, 32))}
    arrays[which][1, 5, 7] = np.nan
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        extract_struct_mask(arrays["noisy"], arrays["denoised"])


def test_zero_residual_is_rejected():
    image = np.random.default_rng(0).standard_normal((32, 32))
    with pytest.raises(ValueError, match="residual .* is zero"):
        extract_struct_mask(image, image)


def test_correlation_of_a_smaller_radius_cannot_be_thresholded_with_a_larger_one():
    with pytest.raises(ValueError, match="recompute"):
        threshold_correlation(line_rho(-0.5)[:, 1:-1, 1:-1], 10**6, MaskExtractorConfig(max_radius=5))


# -- text for the terminal and the UI ------------------------------------------------------------------------
def small_result(mask_rows: list[str]) -> MaskExtractionResult:
    """A result from a picture of the mask ('#' or 'o' active), with rho -0.2 on the active pixels."""
    mask = np.array([[char in "#o" for char in row] for row in mask_rows])
    correlation = np.where(mask, -0.2, 0.01)
    correlation[mask.shape[0] // 2, mask.shape[1] // 2] = 1.0
    return MaskExtractionResult(mask=mask, correlation=correlation, floor=0.1)


def test_text_grid_and_summary_of_a_line():
    result = small_result([".....", ".....", "##o##", ".....", "....."])
    assert result.to_text_grid() == ". . . . .\n. . . . .\n# # o # #\n. . . . .\n. . . . ."
    assert result.mask.shape == (1, 5, 5) and result.kernel_size == 5
    assert result.active_pixels == 5 and result.coverage_percent == pytest.approx(20.0)
    assert result.summary() == "horizontal line, 5 px; strongest |rho| 0.200 = 2.0x the noise floor 0.100"
    assert result.margin() == pytest.approx(2.0)
    margins = result.margin(per_pixel=True)
    assert margins.shape == (1, 5, 5) and np.isnan(margins[0, 2, 2])
    assert margins[0, 0, 0] == pytest.approx(0.1)


def test_text_grid_of_three_planes_names_them():
    mask = np.zeros((3, 3, 3), bool)
    mask[:, 1, 1] = True
    result = MaskExtractionResult(mask=mask, correlation=np.where(mask, -0.3, 0.0), floor=0.1, warnings=[])
    planes = [
        "Z-1 (above)\n. . .\n. # .\n. . .",
        "Z (center)\n. . .\n. o .\n. . .",
        "Z+1 (below)\n. . .\n. # .\n. . .",
    ]
    assert result.to_text_grid() == "\n\n".join(planes)
    assert result.summary().startswith("line along z")


def test_border_warning_and_centre_only_summary():
    assert small_result(["...", ".o.", "..."]).summary() == NO_STRUCTURE
    noisy, predicted = stage1("horizontal")
    # The moving-average residual still correlates at lag 5: the kernel is too small for it.
    assert any("suggest a larger radius" in w for w in extraction("horizontal").warnings)
    assert not extraction("white").warnings
    assert extract_struct_mask(noisy, predicted, MaskExtractorConfig(max_radius=7)).kernel_size == 15


def test_an_outlier_slice_is_left_out_with_a_warning():
    noisy, predicted = stage1("white")
    leaky = noisy.copy()
    leaky[3] += blobs(seed=1)[3]  # signal that stage 1 did not predict
    result = extract_struct_mask(leaky, predicted)
    assert any("left out 1 of 8 slices" in w and "3 (+" in w for w in result.warnings), result.warnings
    assert result.active_pixels == 1


# -- real microscopy -----------------------------------------------------------------------------------------
def real_image(name: str, rows: int | None = None) -> np.ndarray:
    tifffile = pytest.importorskip("tifffile")
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data not available: {path} does not exist")
    image = tifffile.imread(path).astype(np.float64)[:rows]
    return ((image - image.mean()) / image.std())[np.newaxis]


@pytest.mark.realdata
def test_real_em_images_stem_scan_lines_and_clean_sem():
    """STEM (scan lines): a horizontal line; SEM (rows above the data bar): at most a few pixels."""
    stem = real_image(STEM)
    stem_result = extract_struct_mask(stem, blind_spot_predict(stem))
    assert_line(stem_result, "horizontal", min_pixels=5)
    sem = real_image(SEM, rows=884)
    sem_result = extract_struct_mask(sem, blind_spot_predict(sem))
    assert sem_result.active_pixels <= 3, sem_result.to_text_grid()
