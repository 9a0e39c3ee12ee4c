"""autoStructN2V: the structured-noise mask, extracted from the residual of a stage-1 (N2V) denoiser.

Implements §1.3 of the algorithms research note (``notes/algorithms.md``), with §1.3b's change to step 8:

1. residual R = X - D per slice; slices whose residual std is an outlier are left out;
2. per-slice unbiased autocorrelation (zero-padded FFT, divided by the overlap counts), rho(0) = 1,
   cropped to lags |dy|, |dx| <= r; in 2.5D also the cross-correlation of neighbouring slices (dz = +-1);
3. average over slices (mean, median from 20 slices on) and a noise floor f from the pixel count;
4.-8. score, ring-wise percentile thresholds, connectivity to the centre, a cap on the pixel count
   and a one-pixel extension of detected lines.

Why the *residual*: N2V partly predicts correlated noise from its neighbours, so the stage-1 output
keeps part of it and the residual holds its interpolation error, which is correlated (mostly
negatively) along the noise axes. The denoised image itself is dominated by the signal's own broad
autocorrelation and gives blobs even for white noise. Negative correlations are as informative as
positive ones, hence the two-sided score.

Pure numpy/scipy: the napari dock and the command line both use it, and neither needs torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .config import MaskExtractorConfig

MODES: tuple[str, ...] = ("2d", "2.5d")
#: From this many fields (slices, or slice pairs for dz = +-1) on the median replaces the mean.
MEDIAN_FROM_FIELDS = 20
#: A slice is left out when its residual std is more than this many scaled MADs above the median.
OUTLIER_MADS = 3.0
#: Scales the MAD to the standard deviation of a normal distribution.
MAD_TO_STD = 1.4826
#: ... but a slice within this fraction of the median is always kept. With 65k-pixel slices the MAD of the
#: stds is tiny and the MAD rule alone drops slices 0.5 % above the median; 5 % more std is about 10 % leaked
#: variance, which shifts that slice's rho by at most ~0.1 (the floor) before averaging over the slices.
MIN_OUTLIER_EXCESS = 0.05
#: Percentile thresholds never go above this, so an outer ring can still hold a candidate.
MAX_PERCENTILE = 99.0
#: Lines at least this long are extended unconditionally (section 1.3b); shorter ones only where
#: |rho| > floor / 2.
UNCONDITIONAL_LINE = 5
NO_STRUCTURE = "no structured noise detected; stage 2 equals N2V"
PLANE_NAMES: tuple[str, ...] = ("Z-1 (above)", "Z (center)", "Z+1 (below)")


# -- result --------------------------------------------------------------------------------------------------
@dataclass
class MaskExtractionResult:
    """An extracted structN2V kernel with the evidence it came from.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean kernel of shape ``(1, K, K)`` (2D) or ``(3, K, K)`` (2.5D, planes Z-1, Z, Z+1); the
        centre of the centre plane is always set.
    correlation : numpy.ndarray
        The averaged residual correlation rho, same shape as ``mask`` (1 at the centre of the centre plane).
    floor : float
        The noise floor f that a correlation had to exceed.
    warnings : list of str
        Advice for the user, e.g. that the correlation reaches beyond the kernel.
    """

    mask: np.ndarray
    correlation: np.ndarray
    floor: float
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Edited masks from the UI may come back as nested lists or as a single 2D plane.
        self.mask = _as_planes(np.asarray(self.mask, dtype=bool))
        self.correlation = _as_planes(np.asarray(self.correlation, dtype=np.float64))
        self.floor = float(self.floor)

    @property
    def kernel_size(self) -> int:
        """Side K of the kernel."""
        return int(self.mask.shape[-1])

    @property
    def active_pixels(self) -> int:
        """Masked pixels, the centre included."""
        return int(np.count_nonzero(self.mask))

    @property
    def coverage_percent(self) -> float:
        """Share of the kernel (all planes) that is masked, in percent."""
        return 100.0 * self.active_pixels / self.mask.size

    @property
    def structured(self) -> bool:
        """False when the mask is the centre pixel alone (stage 2 would equal N2V)."""
        return self.active_pixels > 1

    def margin(self, per_pixel: bool = False) -> float | np.ndarray:
        """How far the correlation stands above the noise floor, ``|rho| / floor``.

        Parameters
        ----------
        per_pixel : bool
            Return the whole map (same shape as ``mask``; NaN at the centre of the centre plane) instead
            of one number.

        Returns
        -------
        float or numpy.ndarray
            By default the largest ``|rho| / floor`` among the masked pixels other than the centre, or,
            for a centre-only mask, among all lags: a value near 1 flags a marginal detection. (Not the
            smallest: the pixels added by the line extension are allowed below the floor.)
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(self.correlation) / self.floor
        ratio[_centre_index(ratio.shape)] = np.nan
        if per_pixel:
            return ratio
        chosen = self.mask.copy()
        chosen[_centre_index(chosen.shape)] = False
        values = ratio[chosen] if chosen.any() else ratio
        return 0.0 if np.isnan(values).all() else float(np.nanmax(values))

    def summary(self) -> str:
        """One line for the user: the shape found, or that there is none."""
        if not self.structured:
            return NO_STRUCTURE
        strongest = self.margin()
        return (
            f"{describe_mask(self.mask)}; strongest |rho| {strongest * self.floor:.3f} "
            f"= {strongest:.1f}x the noise floor {self.floor:.3f}"
        )

    def to_text_grid(self) -> str:
        """The kernel as characters, one block per plane: ``o`` centre, ``#`` masked, ``.`` free."""
        return text_grid(self.mask)


# -- public functions ----------------------------------------------------------------------------------------
def extract_struct_mask(
    noisy: np.ndarray,
    denoised: np.ndarray,
    params: MaskExtractorConfig | None = None,
    mode: str = "2d",
) -> MaskExtractionResult:
    """Extract the structN2V mask from the residual ``noisy - denoised`` of a stage-1 denoiser.

    Parameters
    ----------
    noisy, denoised : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` arrays of the same shape: the normalised noisy data and stage 1's
        prediction of the same pixels. Each slice is one field of the correlation estimate.
    params : MaskExtractorConfig, optional
        Extractor settings; the defaults when omitted.
    mode : {"2d", "2.5d"}
        2.5D also looks at the neighbouring slices and needs at least 3 of them.

    Returns
    -------
    MaskExtractionResult

    Raises
    ------
    ValueError
        Shapes differ, non-finite values, too few slices for 2.5D, images smaller than the kernel, or a zero
        residual.
    """
    params = params or MaskExtractorConfig()
    rho, n_pixels, notes = _residual_correlation(noisy, denoised, params.max_radius, mode)
    mask, floor = threshold_correlation(rho, n_pixels, params)
    return MaskExtractionResult(mask=mask, correlation=rho, floor=floor, warnings=notes + border_warnings(rho, floor))


def residual_autocorrelation(
    noisy: np.ndarray, denoised: np.ndarray, max_radius: int, mode: str = "2d"
) -> tuple[np.ndarray, int]:
    """Averaged, normalised autocorrelation of the residual ``noisy - denoised`` (steps 1-3).

    Parameters
    ----------
    noisy, denoised : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` arrays of the same shape.
    max_radius : int
        Largest lag r kept along y and x (kernel side ``2r + 1``).
    mode : {"2d", "2.5d"}
        In 2.5D, neighbouring slices z and z+1 are paired for the lags dz = +-1.

    Returns
    -------
    rho : numpy.ndarray
        ``(1, K, K)`` in 2D, ``(3, K, K)`` in 2.5D (planes dz = -1, 0, +1); point-symmetric, 1 at the centre.
    n_pixels : int
        Pixels of the slices used, for the white-noise standard error ``1 / sqrt(n_pixels)``.
    """
    rho, n_pixels, _ = _residual_correlation(noisy, denoised, max_radius, mode)
    return rho, n_pixels


def threshold_correlation(rho: np.ndarray, n_pixels: int, params: MaskExtractorConfig) -> tuple[np.ndarray, float]:
    """Turn an averaged correlation into a mask (steps 3-8), so that new parameters need no new FFTs.

    Parameters
    ----------
    rho : numpy.ndarray
        From :func:`residual_autocorrelation`, ``(kz, K, K)`` with kz 1 or 3; a larger K than the kernel of
        ``params.max_radius`` is cropped.
    n_pixels : int
        Pixels the correlation was estimated from.
    params : MaskExtractorConfig
        Extractor settings.

    Returns
    -------
    mask : numpy.ndarray
        Boolean ``(kz, 2r + 1, 2r + 1)`` kernel with the centre set.
    floor : float
        The noise floor ``max(abs_floor, z_sigma / sqrt(n_pixels))``.
    """
    rho = _checked_rho(rho, params.max_radius)
    floor = noise_floor(n_pixels, params)
    scores = _scores(rho, params.two_sided)
    candidates, scores = _fill_axis_gaps(_ring_candidates(scores, floor, params), scores)
    mask = _centre_component(candidates)
    mask = _cap(mask, scores, params.max_pixels)
    if params.dilate:
        mask = _extend_line(mask, rho, floor, params.max_pixels)
    return mask, floor


def noise_floor(n_pixels: int, params: MaskExtractorConfig) -> float:
    """``max(abs_floor, z_sigma * sigma_rho)`` with the white-noise standard error ``1 / sqrt(n_pixels)``."""
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be positive, got {n_pixels}")
    return max(float(params.abs_floor), float(params.z_sigma) / float(np.sqrt(n_pixels)))


def border_warnings(rho: np.ndarray, floor: float) -> list[str]:
    """A warning when ``|rho|`` at the largest lag still exceeds the floor (it reaches further)."""
    rho = _as_planes(np.asarray(rho, dtype=np.float64))
    radius = rho.shape[-1] // 2
    border = _chebyshev(radius) == radius
    strongest = float(np.max(np.abs(rho[:, border])))
    if strongest <= floor:
        return []
    return [
        f"the correlation is still above the noise floor at the crop border (|rho| {strongest:.3f} > "
        f"{floor:.3f} at lag {radius}); suggest a larger radius (max_radius)"
    ]


def describe_mask(mask: np.ndarray) -> str:
    """Name the shape of a kernel, e.g. ``"horizontal line, 7 px"``."""
    mask = _as_planes(np.asarray(mask, dtype=bool))
    centre_plane = mask[mask.shape[0] // 2]
    total = int(np.count_nonzero(mask))
    in_plane = _plane_shape(centre_plane)
    off_plane = total - int(np.count_nonzero(centre_plane))
    if not off_plane:
        return f"{in_plane or 'centre pixel'}, {total} px"
    r = mask.shape[-1] // 2
    if in_plane is None and off_plane == 2 and mask[0, r, r] and mask[2, r, r]:
        return "line along z (centre pixel in Z-1, Z and Z+1), 3 px"
    return f"{in_plane or 'centre pixel'} in Z plus {off_plane} px in Z-1/Z+1, {total} px"


def text_grid(mask: np.ndarray) -> str:
    """Character grid of a kernel, one block per plane (with a title in 2.5D)."""
    mask = _as_planes(np.asarray(mask, dtype=bool))
    centre = _centre_index(mask.shape)
    blocks = []
    for index, plane in enumerate(mask):
        rows = []
        for y, row in enumerate(plane):
            chars = ["o" if (index, y, x) == centre else "#" if value else "." for x, value in enumerate(row)]
            rows.append(" ".join(chars))
        title = [PLANE_NAMES[index]] if mask.shape[0] == 3 else []
        blocks.append("\n".join(title + rows))
    return "\n\n".join(blocks)


# -- steps 1-3: residual correlation -------------------------------------------------------------------------
def _residual_correlation(
    noisy: np.ndarray, denoised: np.ndarray, max_radius: int, mode: str
) -> tuple[np.ndarray, int, list[str]]:
    """``(rho, n_pixels, warnings about left-out slices)``."""
    mode = _checked_mode(mode)
    noisy, denoised = _checked_inputs(noisy, denoised, max_radius, mode)
    keep, notes = _usable_slices(noisy, denoised)
    radius = int(max_radius)
    height, width = noisy.shape[1:]
    counts = _overlap_counts(height, width, radius)
    shape = (sfft.next_fast_len(height + radius, real=True), sfft.next_fast_len(width + radius, real=True))
    same, pairs = [], []
    previous = None  # (slice index, spectrum, variance) of the last usable slice, for the dz = +1 pairs
    for z in np.flatnonzero(keep):
        residual = _residual(noisy, denoised, z)
        spectrum = sfft.rfft2(residual - residual.mean(), s=shape)
        covariance = _lagged_products(spectrum, spectrum, shape, radius) / counts
        variance = covariance[radius, radius]
        same.append(covariance / variance)
        if mode == "2.5d" and previous is not None and previous[0] == z - 1:
            cross = _lagged_products(previous[1], spectrum, shape, radius) / counts
            pairs.append(cross / np.sqrt(previous[2] * variance))
        previous = (z, spectrum, variance)
    planes = [_average(same)]
    if mode == "2.5d":
        if not pairs:
            raise ValueError("2.5D mask extraction needs two neighbouring usable slices; none are left")
        plus = _average(pairs)  # rho(+1, d) = corr(r_z(x), r_{z+1}(x + d))
        planes = [plus[::-1, ::-1], planes[0], plus]  # rho(-1, d) = rho(+1, -d)
    rho = np.stack(planes)
    # rho is point-symmetric in theory; make it exactly so, so that symmetric pixels tie exactly and the mask
    # comes out symmetric whatever the rounding of the FFTs.
    rho = 0.5 * (rho + rho[::-1, ::-1, ::-1])
    rho[_centre_index(rho.shape)] = 1.0
    return rho, int(keep.sum()) * height * width, notes


def _checked_mode(mode: str) -> str:
    value = str(mode).lower()
    if value not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return value


def _checked_inputs(
    noisy: np.ndarray, denoised: np.ndarray, max_radius: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the inputs and return them as ``(Z, Y, X)`` arrays (views, no copies)."""
    noisy, denoised = np.asarray(noisy), np.asarray(denoised)
    if noisy.shape != denoised.shape:
        raise ValueError(f"noisy and denoised must have the same shape, got {noisy.shape} and {denoised.shape}")
    if noisy.ndim not in (2, 3):
        raise ValueError(f"expected a (Y, X) image or a (Z, Y, X) stack, got shape {noisy.shape}")
    if mode == "2.5d" and (noisy.ndim != 3 or noisy.shape[0] < 3):
        raise ValueError(
            f"2.5D mask extraction needs a (Z, Y, X) stack with at least 3 slices (planes Z-1, Z, Z+1), "
            f"got shape {noisy.shape}"
        )
    if not 1 <= int(max_radius) < min(noisy.shape[-2:]):
        raise ValueError(f"max_radius {max_radius} does not fit images of {noisy.shape[-2]}x{noisy.shape[-1]} px")
    for name, array in (("noisy", noisy), ("denoised", denoised)):
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return _as_planes(noisy), _as_planes(denoised)


def _residual(noisy: np.ndarray, denoised: np.ndarray, z: int) -> np.ndarray:
    """Residual of one slice in float64; slice by slice, so that a large stack needs no float64 copy."""
    return noisy[z].astype(np.float64) - denoised[z].astype(np.float64)


def _usable_slices(noisy: np.ndarray, denoised: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Slices to use (step 1): non-zero residual std that is no outlier; and a warning about the others."""
    std = np.array([_residual(noisy, denoised, z).std() for z in range(noisy.shape[0])])
    usable = std > 0
    if not usable.any():
        raise ValueError("the residual noisy - denoised is zero everywhere: the stage-1 output equals the input")
    median = np.median(std[usable])
    # Scaled MAD (an estimate of the std of the stds), the usual convention for "3 MAD" outlier rules
    # (MATLAB's isoutlier, for one); the raw MAD would also drop slices whose noise level merely drifts.
    spread = MAD_TO_STD * np.median(np.abs(std[usable] - median))
    usable &= std <= median + max(OUTLIER_MADS * spread, MIN_OUTLIER_EXCESS * median)
    left_out = np.flatnonzero(~usable)
    if not left_out.size:
        return usable, []
    details = ", ".join(
        f"{z} (zero residual)" if std[z] == 0 else f"{z} (+{100 * (std[z] / median - 1):.1f} %)" for z in left_out
    )
    return usable, [
        f"left out {left_out.size} of {std.size} slices whose residual std is zero or more than "
        f"{OUTLIER_MADS:g} MAD (and {100 * MIN_OUTLIER_EXCESS:g} %) above the median (slice and excess: "
        f"{details}); a much larger residual usually means signal leaks into it"
    ]


def _overlap_counts(height: int, width: int, radius: int) -> np.ndarray:
    """Pixel pairs at each lag (the ``IFFT(|FFT(1)|^2)`` of an all-valid field), for the unbiased estimate."""
    lags = np.arange(-radius, radius + 1)
    return np.outer(height - np.abs(lags), width - np.abs(lags)).astype(np.float64)


def _lagged_products(first: np.ndarray, second: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """``sum_x a(x) b(x + d)`` for ``|dy|, |dx| <= radius`` from the spectra of the zero-padded fields.

    Padding by ``radius`` is enough for these lags to be free of wrap-around (the spec's twice the size pads
    more than needed and gives the same numbers).
    """
    full = sfft.irfft2(np.conj(first) * second, s=shape)
    lags = np.arange(-radius, radius + 1)
    return full[np.ix_(lags % shape[0], lags % shape[1])]


def _average(fields: list[np.ndarray]) -> np.ndarray:
    """Mean over fields, median from ``MEDIAN_FROM_FIELDS`` on (robust to a few odd slices)."""
    # Sorting first makes the result bit-identical whatever the order of the fields.
    stacked = np.sort(np.stack(fields), axis=0)
    return np.median(stacked, axis=0) if len(fields) >= MEDIAN_FROM_FIELDS else stacked.mean(axis=0)


# -- steps 4-8: thresholds and shape -------------------------------------------------------------------------
def _checked_rho(rho: np.ndarray, radius: int) -> np.ndarray:
    rho = _as_planes(np.asarray(rho, dtype=np.float64))
    if rho.ndim != 3 or rho.shape[0] not in (1, 3) or rho.shape[1] != rho.shape[2] or rho.shape[1] % 2 == 0:
        raise ValueError(f"rho must have shape (1, K, K) or (3, K, K) with odd K, got {rho.shape}")
    available = rho.shape[1] // 2
    if available < radius:
        raise ValueError(
            f"rho covers lags up to {available} but max_radius is {radius}; recompute the correlation "
            "with the larger radius"
        )
    if not np.all(np.isfinite(rho)):
        raise ValueError("rho contains NaN or infinite values")
    cut = available - radius
    return rho[:, cut : rho.shape[1] - cut, cut : rho.shape[2] - cut]


def _scores(rho: np.ndarray, two_sided: bool) -> np.ndarray:
    """Step 4: ``|rho|`` (or ``max(rho, 0)``), with the centre always winning."""
    scores = np.abs(rho) if two_sided else np.maximum(rho, 0.0)
    scores[_centre_index(scores.shape)] = np.inf
    return scores


def ring_percentile(ring: int, params: MaskExtractorConfig) -> float:
    """Percentile threshold of Chebyshev ring ``ring`` >= 1 (step 5): ``min(b * decay^(k-1), 99)``."""
    if not params.adaptive:
        return float(params.base_percentile)
    return min(params.base_percentile * params.percentile_decay ** (ring - 1), MAX_PERCENTILE)


def _ring_candidates(scores: np.ndarray, floor: float, params: MaskExtractorConfig) -> np.ndarray:
    """Step 5: a lag is a candidate if its score beats its ring's percentile and the floor."""
    radius = scores.shape[-1] // 2
    rings = _chebyshev(radius)
    candidates = np.zeros(scores.shape, dtype=bool)
    for plane, plane_scores in enumerate(scores):
        # Ring 0: the centre itself (score +inf) or, in the planes dz = +-1, the pixel straight above or
        # below, which has no ring to compare with and is held against the floor alone.
        candidates[plane][rings == 0] = plane_scores[rings == 0] > floor
        for ring in range(1, radius + 1):
            on_ring = rings == ring
            values = plane_scores[on_ring]
            threshold = max(float(np.percentile(values, ring_percentile(ring, params))), floor)
            candidates[plane][on_ring] = values > threshold
    return candidates


def _fill_axis_gaps(candidates: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close one-lag holes on the horizontal and vertical axes of the centre plane (between section 1.3
    steps 5 and 6).

    Along a scan line the residual correlation changes sign as stage 1 learns: positive where N2V still
    reproduces the correlated noise, negative where only its interpolation error is left. Where it
    crosses zero one lag drops below the floor, which leaves a hole in the line (often right beside the
    centre, the most correlated neighbour of all) or cuts the far part of the line off the centre. A
    blind spot with such a hole lets the network see what it must not, so a single missing lag between
    the centre, or a candidate, and a candidate further out on the same axis is filled. The filled lag
    scores as the weaker of its two neighbours, so the cap keeps or drops it with the line it bridges.
    Both directions are treated alike, so a point-symmetric correlation keeps a symmetric mask.
    """
    candidates, scores = candidates.copy(), scores.copy()
    plane, radius = candidates.shape[0] // 2, candidates.shape[-1] // 2
    for axis in (1, 2):  # rows (the vertical axis), columns (the horizontal axis)
        for direction in (-1, 1):
            for lag in range(1, radius):
                index = [plane, radius, radius]
                index[axis] = radius + direction * lag
                inner, outer = list(index), list(index)
                inner[axis] -= direction
                outer[axis] += direction
                here, before, after = tuple(index), tuple(inner), tuple(outer)
                if not candidates[here] and candidates[before] and candidates[after]:
                    candidates[here] = True
                    scores[here] = min(scores[before], scores[after])
    return candidates, scores


def _centre_component(candidates: np.ndarray) -> np.ndarray:
    """Step 6: the candidates 8-connected (26-connected across planes) to the centre."""
    labels, _ = ndimage.label(candidates, structure=np.ones((3, 3, 3), dtype=bool))
    centre = _centre_index(candidates.shape)
    component = labels == labels[centre]
    component[centre] = True
    return component


def _cap(mask: np.ndarray, scores: np.ndarray, max_pixels: int) -> np.ndarray:
    """Step 7: at most ``max_pixels``, the centre and the highest-scoring candidates connected to it.

    The mask is regrown from the centre, each time adding the best-scoring candidates that touch it.
    Taking the ``N - 1`` best scores first and only then the centre's component (the literal reading of
    the spec) can cut a line in two: with per-row offsets the residual correlation peaks at lag 2, not 1,
    and nothing would stay connected. Tied scores are added together or not at all, so that
    point-symmetric twins stay together (the mask stays symmetric) and the cap is never exceeded.
    """
    if np.count_nonzero(mask) <= max_pixels:
        return mask
    kept = np.zeros_like(mask)
    kept[_centre_index(mask.shape)] = True
    neighbours = np.ones((3, 3, 3), dtype=bool)
    while True:
        frontier = ndimage.binary_dilation(kept, structure=neighbours) & mask & ~kept
        if not frontier.any():
            return kept
        group = frontier & (scores == scores[frontier].max())
        if np.count_nonzero(kept) + np.count_nonzero(group) > max_pixels:
            return kept
        kept |= group


def _line_axis(mask: np.ndarray) -> int | None:
    """Step 8: 1 if the mask is a horizontal line through the centre, 0 if vertical, else None."""
    centre = mask.shape[0] // 2
    if np.count_nonzero(mask) != np.count_nonzero(mask[centre]) or np.count_nonzero(mask) < 2:
        return None
    rows, cols = np.nonzero(mask[centre])
    radius = mask.shape[-1] // 2
    if np.all(rows == radius):
        return 1
    if np.all(cols == radius):
        return 0
    return None


def _extend_line(mask: np.ndarray, rho: np.ndarray, floor: float, max_pixels: int) -> np.ndarray:
    """Step 8 with section 1.3b: lengthen a line by one pixel at each end.

    The residual under-estimates how far a strong correlation reaches, so lines of 5 px or more grow
    unconditionally; a 3-px line grows only where ``|rho| > floor / 2``. The cap still holds: an
    extension that would exceed ``max_pixels`` is skipped as a whole (both ends), which keeps the mask
    symmetric.
    """
    axis = _line_axis(mask)
    if axis is None:
        return mask
    plane, radius = mask.shape[0] // 2, mask.shape[-1] // 2
    line = mask[plane, radius, :] if axis == 1 else mask[plane, :, radius]
    values = rho[plane, radius, :] if axis == 1 else rho[plane, :, radius]
    on = np.flatnonzero(line)
    unconditional = on.size >= UNCONDITIONAL_LINE
    ends = [i for i in (on[0] - 1, on[-1] + 1) if 0 <= i < line.size]
    ends = [i for i in ends if unconditional or abs(values[i]) > floor / 2]
    if not ends or np.count_nonzero(mask) + len(ends) > max_pixels:
        return mask
    grown = mask.copy()
    for i in ends:
        if axis == 1:
            grown[plane, radius, i] = True
        else:
            grown[plane, i, radius] = True
    return grown


# -- helpers -------------------------------------------------------------------------------------------------
def _as_planes(array: np.ndarray) -> np.ndarray:
    """A single ``(K, K)`` plane becomes ``(1, K, K)``."""
    return array[np.newaxis] if array.ndim == 2 else array


def _centre_index(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[0] // 2, shape[1] // 2, shape[2] // 2)


def _chebyshev(radius: int) -> np.ndarray:
    """Chebyshev distance ``max(|dy|, |dx|)`` of each lag of a ``(2r+1, 2r+1)`` kernel."""
    lags = np.abs(np.arange(-radius, radius + 1))
    return np.maximum(lags[:, np.newaxis], lags[np.newaxis, :])


def _plane_shape(plane: np.ndarray) -> str | None:
    """Name of the in-plane shape of the centre plane, None for the centre pixel alone."""
    if np.count_nonzero(plane) < 2:
        return None
    radius = plane.shape[-1] // 2
    dy, dx = (axis - radius for axis in np.nonzero(plane))
    if np.all(dy == 0):
        return "horizontal line"
    if np.all(dx == 0):
        return "vertical line"
    if np.all(dy == dx) or np.all(dy == -dx):
        return "diagonal line"
    if np.all((dy == 0) | (dx == 0)):
        return "cross"
    height, width = np.ptp(dy) + 1, np.ptp(dx) + 1
    if dy.size == height * width:
        return f"{height}x{width} block"
    return "pattern"
