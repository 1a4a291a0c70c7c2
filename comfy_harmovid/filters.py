"""Shared image filters on torch tensors: box sums and means, resizing, and the guided filter, whose
closed-form local linear fit (:func:`local_linear_fit`) the deflicker's colour map uses too, on numpy.

All filters work on the last two dimensions (height, width) of a tensor shaped ``[..., H, W]``, so
they take masks ``[T, H, W]`` and channels-first images ``[T, C, H, W]`` alike.
Box filters use running sums (cost independent of the radius) and windows clipped at the image
border, so a mean near the border is the mean of the pixels that exist.

On CPU, box sums and upsampling go through OpenCV one plane at a time: several times faster than
torch's cumsum and interpolate, and they do not slow down when other processes busy the cores
(torch's intra-op threads do). Other devices use the torch versions.
"""

import contextlib
import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def float_array(x) -> np.ndarray:
    """``x`` (a tensor on any device, or an array) as a C-contiguous float32 numpy array, as OpenCV wants it
    (no copy when it already is one)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


@contextlib.contextmanager
def one_torch_thread():
    """Run the torch operations inside the block on one thread (the setting is restored after).

    For per-frame work made of many small operations, torch's intra-op threads cost more in
    synchronisation than they save: on a machine whose cores are busy with other processes the
    pseudo-alpha ran several times slower with two threads than with one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _box_sum_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum over a window of ``2 * radius + 1`` samples along ``dim``, clipped at both ends."""
    n = x.shape[dim]
    radius = min(radius, n - 1)  # a wider window covers the same samples
    pad = [0, 0] * (-dim - 1) + [radius + 1, radius]
    # With r + 1 zeros in front, window i is padded[i + 1 : i + 2r + 2] = running[i + 2r + 1] - running[i].
    running = torch.cumsum(F.pad(x, pad), dim)
    return running.narrow(dim, 2 * radius + 1, n) - running.narrow(dim, 0, n)


def _on_cpu_as_float(x: torch.Tensor) -> bool:
    """Whether OpenCV can filter ``x`` in place of torch: a CPU float32/float64 tensor."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _per_plane(x: torch.Tensor, height: int, width: int, function) -> torch.Tensor:
    """Apply ``function(plane [h, w] array, out [H, W] array)`` to every plane of ``[..., h, w]``."""
    planes = x.detach().reshape(-1, *x.shape[-2:]).contiguous().numpy()
    out = np.empty((planes.shape[0], height, width), dtype=planes.dtype)
    for plane, target in zip(planes, out):
        function(plane, target)
    return torch.from_numpy(out).reshape(*x.shape[:-2], height, width)


def box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum of each ``(2r+1) x (2r+1)`` window over the last two dimensions (window clipped at the border).

    Sums of whole numbers are exact (OpenCV accumulates float input in float64).
    """
    if radius <= 0:
        return x.clone()
    if _on_cpu_as_float(x):
        size = (2 * radius + 1, 2 * radius + 1)

        def window_sum(plane, out):  # zeros outside the image = a window clipped at the border
            cv2.boxFilter(plane, -1, size, dst=out, normalize=False, borderType=cv2.BORDER_CONSTANT)

        return _per_plane(x, *x.shape[-2:], window_sum)
    return _box_sum_1d(_box_sum_1d(x, radius, -1), radius, -2)


def window_count(height: int, width: int, radius: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """How many pixels each clipped window covers: ``[H, W]`` (cached per size)."""
    return _window_count_cached(int(height), int(width), int(radius), torch.device(device or "cpu"), dtype)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of each ``(2r+1) x (2r+1)`` window, over the pixels inside the image."""
    if radius <= 0:
        return x.clone()
    return box_sum(x, radius) / window_count(x.shape[-2], x.shape[-1], radius, x.device, x.dtype)


@functools.lru_cache(maxsize=16)
def _window_count_cached(height, width, radius, device, dtype):
    return box_sum(torch.ones(height, width, device=device, dtype=dtype), radius)


def _exact_dtype(height: int, width: int, inner: int, outer: int) -> torch.dtype:
    """A float type whose running sums of a 0/1 image stay whole numbers below its exact range."""
    largest = (2 * inner + 1) ** 2 * (2 * outer + 1) * (max(height, width) + 2 * outer + 2)
    return torch.float32 if largest < 2**24 else torch.float64


def tent_sum(binary: torch.Tensor, inner: int, outer: int) -> torch.Tensor:
    """Box sum of radius ``inner`` followed by one of radius ``outer`` of a 0/1 image: a tent-weighted count.

    The sums are whole numbers computed exactly (in float32, or float64 for very large images and
    radii), so callers can test for exactly 0 or exactly :func:`tent_count` without rounding error.
    """
    dtype = _exact_dtype(*binary.shape[-2:], inner, outer)
    return box_sum(box_sum(binary.to(dtype), inner), outer)


@functools.lru_cache(maxsize=16)
def tent_count(height: int, width: int, inner: int, outer: int, device) -> torch.Tensor:
    """:func:`tent_sum` of an all-ones ``[H, W]`` image: the divisor that makes it a mean."""
    dtype = _exact_dtype(height, width, inner, outer)
    return tent_sum(torch.ones(height, width, dtype=dtype, device=device), inner, outer)


def bounding_slices(mask: torch.Tensor, margin: int, grid: int = 1):
    """Rows and columns ``(slice, slice)`` around every nonzero pixel of ``[..., H, W]``, widened by
    ``margin`` on each side (clipped to the image), the start snapped down to a multiple of ``grid``.

    Empty slices when the mask is all zero.
    """
    height, width = mask.shape[-2:]
    flat = mask.reshape(-1, height, width) != 0
    rows = torch.nonzero(flat.any(dim=(0, 2))).flatten()
    cols = torch.nonzero(flat.any(dim=(0, 1))).flatten()
    if rows.numel() == 0:
        return slice(0, 0), slice(0, 0)
    top = max(0, int(rows[0]) - margin) // grid * grid
    left = max(0, int(cols[0]) - margin) // grid * grid
    bottom = min(height, int(rows[-1]) + 1 + margin)
    right = min(width, int(cols[-1]) + 1 + margin)
    return slice(top, bottom), slice(left, right)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a 0/1 mask with a square of side ``2r+1`` (1 where any pixel in the window is 1)."""
    return (box_sum((mask > 0.5).to(torch.float32), radius) > 0.5).to(mask.dtype)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of a 0/1 mask with a square of side ``2r+1`` (1 where the whole window is 1)."""
    return 1 - dilate(1 - (mask > 0.5).to(mask.dtype), radius)


def resize(x: torch.Tensor, size, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[..., H, W]`` to ``size = (h, w)``; area-averaging when shrinking, bilinear otherwise."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if mode == "bilinear":
        shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    else:
        out = F.interpolate(flat, size=size, mode=mode)
    return out.reshape(*lead, *size)


# The distinct entries of a symmetric 3x3 matrix, as (row, column).
SYMMETRIC_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _inverse_symmetric(a, b, c, d, e, f):
    """Inverses of the symmetric 3x3 matrices ``[[a, b, c], [b, d, e], [c, e, f]]`` given as planes of
    entries, as nested lists of planes: in closed form, many times faster than a batched solver."""
    co_a, co_b, co_c = d * f - e * e, c * e - b * f, b * e - c * d
    co_d, co_e, co_f = a * f - c * c, b * c - a * e, a * d - b * b
    inverse_det = 1.0 / (a * co_a + b * co_b + c * co_c)
    return [[entry * inverse_det for entry in row] for row in ([co_a, co_b, co_c], [co_b, co_d, co_e], [co_c, co_e, co_f])]


def local_linear_fit(mean_guide, mean_target, mean_guide_products, mean_cross, regularization: float, *,
                     toward_identity: bool = False, max_change=None):
    """Closed-form ridge regression per pixel (window) of ``target_k ~ sum_j A[k][j] guide_j + b_k``:
    the local linear model of the colour guided filter (He et al. 2013) and of colour maps.

    Takes the (window or weighted) means of the 3 guide planes, of the K target planes, of the 6 guide
    products ``guide_i * guide_j`` in :data:`SYMMETRIC_PAIRS` order and of the cross products
    ``mean_cross[j][k] = mean(guide_j * target_k)``. The arguments are lists of planes, all numpy arrays
    or all torch tensors of one shape (elementwise arithmetic only, so either library runs it at its own
    speed). ``regularization`` (a variance) pulls ``A`` toward zero, or toward the identity with
    ``toward_identity`` (K = 3): flat windows then get a plain offset. Returns ``(change, offset)``:
    ``change[k][j]`` is ``A`` minus that prior, each entry clipped to ``+-max_change`` if given, and
    ``offset[k]`` is ``b``, fitted for the clipped ``A``.
    """
    count = len(mean_target)
    cov_gg = [mean_guide_products[n] - mean_guide[i] * mean_guide[j] for n, (i, j) in enumerate(SYMMETRIC_PAIRS)]
    cov_gt = [[mean_cross[j][k] - mean_guide[j] * mean_target[k] for k in range(count)] for j in range(3)]
    # (cov_gg + eps I) A^T = cov_gt + eps * prior
    for n, (i, j) in enumerate(SYMMETRIC_PAIRS):
        if i == j:
            cov_gg[n] = cov_gg[n] + regularization
            if toward_identity:
                cov_gt[i][i] = cov_gt[i][i] + regularization
    inverse = _inverse_symmetric(*cov_gg)
    change = [[inverse[j][0] * cov_gt[0][k] + inverse[j][1] * cov_gt[1][k] + inverse[j][2] * cov_gt[2][k]
               for j in range(3)] for k in range(count)]  # A, row k
    for k in range(count):
        if toward_identity:
            change[k][k] = change[k][k] - 1.0
        if max_change is not None:
            change[k] = [entry.clip(-max_change, max_change) for entry in change[k]]
    offset = []
    for k in range(count):
        base = mean_target[k] - mean_guide[k] if toward_identity else mean_target[k]
        offset.append(base - change[k][0] * mean_guide[0] - change[k][1] * mean_guide[1] - change[k][2] * mean_guide[2])
    return change, offset


def guided_filter_coefficients(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float):
    """Local linear model ``source ~ a . guide + b`` of the colour guided filter (He et al. 2013).

    guide: ``[B, 3, H, W]``, source: ``[B, H, W]``. Returns the window-averaged coefficients
    ``(a [B, 3, H, W], b [B, H, W])``; the filtered output is ``(a * guide).sum(1) + b``.
    """
    # All local means in one pass: guide (3), source (1), guide * source (3), guide products (6).
    products = [guide[:, i] * guide[:, j] for i, j in SYMMETRIC_PAIRS]
    stacked = torch.cat([guide, source[:, None], guide * source[:, None], torch.stack(products, 1)], dim=1)
    means = box_mean(stacked, radius).unbind(1)
    (a,), (b,) = local_linear_fit(means[:3], means[3:4], means[7:], [[m] for m in means[4:7]], eps)
    coefficients = box_mean(torch.stack([*a, b], dim=1), radius)
    return coefficients[:, :3], coefficients[:, 3]


def _as_batch_of_images(x: torch.Tensor) -> torch.Tensor:
    """View ``[..., H, W]`` as the 4-D ``[N, C, H, W]`` that pooling and interpolation take.

    4-D input is passed as it is, so a channels-last view (an IMAGE permuted to channels-first) is
    not copied.
    """
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x.unsqueeze(1)
    return x.reshape(-1, 1, *x.shape[-2:])


def _block_means(array: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor x factor`` blocks of an ``[H, W, C <= 4]`` array (OpenCV; rows may be strided). The partial blocks of the last row and column average what they hold."""
    height, width = array.shape[:2]
    whole_h, whole_w = height // factor, width // factor
    out = np.empty((-(-height // factor), -(-width // factor), *array.shape[2:]), array.dtype)
    if whole_h and whole_w:
        core = array[: whole_h * factor, : whole_w * factor]
        # (OpenCV drops a single channel's axis: put it back)
        out[:whole_h, :whole_w] = cv2.resize(core, (whole_w, whole_h), interpolation=cv2.INTER_AREA).reshape(
            whole_h, whole_w, *array.shape[2:]
        )

    def block_means_of_line(line, length):  # means of consecutive runs of `factor` samples of a line
        starts = np.arange(0, length, factor)
        sizes = np.diff(np.append(starts, length)).reshape(-1, *[1] * (line.ndim - 1))
        return np.add.reduceat(line, starts, axis=0) / sizes

    if whole_w < out.shape[1]:  # narrower last column of blocks
        out[:, -1] = block_means_of_line(array[:, whole_w * factor :].mean(axis=1), height)
    if whole_h < out.shape[0]:  # shorter last row of blocks (including the corner)
        out[-1] = block_means_of_line(array[whole_h * factor :].mean(axis=0), width)
    return out


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average ``factor x factor`` blocks of ``[..., H, W]`` (partial blocks at the edges average what they hold)."""
    if factor <= 1:
        return x
    images = _as_batch_of_images(x)  # [N, C, H, W]
    if x.ndim == 3 and x.shape[0] <= 4 and x.stride(0) == 1:
        images = x.unsqueeze(0)  # a channels-first view of one channels-last image: read it as it lies
    if _on_cpu_as_float(x) and images.shape[1] <= 4:
        # OpenCV takes channels-last images whose rows may be strided, so a channels-first view of an
        # IMAGE (or of a crop of one) is read where it lies, not copied.
        channels_last = images.detach().permute(0, 2, 3, 1)
        if channels_last.stride(2) != images.shape[1] or channels_last.stride(3) != 1:
            channels_last = channels_last.contiguous()
        small = np.stack([_block_means(image.numpy(), factor) for image in channels_last])
        out = torch.from_numpy(small).permute(0, 3, 1, 2)
    else:
        out = F.avg_pool2d(images, factor, ceil_mode=True)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def upsample(x: torch.Tensor, factor: int, size) -> torch.Tensor:
    """Inverse of :func:`downsample`: bilinear back to ``size = (H, W)``, block centres aligned."""
    if factor <= 1:
        return x
    if _on_cpu_as_float(x):
        def enlarge(plane, out):
            out[...] = enlarge_array(plane, factor, size)

        return _per_plane(x, int(size[0]), int(size[1]), enlarge)
    out = F.interpolate(_as_batch_of_images(x), scale_factor=factor, mode="bilinear", align_corners=False)
    out = out[..., : size[0], : size[1]]
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def enlarge_array(array: np.ndarray, factor: int, size) -> np.ndarray:
    """:func:`upsample` of one ``[h, w]`` or channels-last ``[h, w, C]`` float array (OpenCV)."""
    # The same sampling as torch's bilinear scale_factor=factor (half-pixel centres, edge clamped).
    scaled = (array.shape[1] * factor, array.shape[0] * factor)
    return cv2.resize(array, scaled, interpolation=cv2.INTER_LINEAR)[: size[0], : size[1]]


def upsample_at(x: torch.Tensor, factor: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`upsample` of ``x`` ``[C, h, w]``, evaluated only at the pixels ``(ys, xs)``: ``[C, N]``.

    For a few scattered pixels (a thin band) this is much less work than the whole upsampled image.
    """
    def corners(index, size):
        source = ((index.to(x.dtype) + 0.5) / factor - 0.5).clamp(min=0)  # half-pixel centres
        low = source.floor()
        return low.long(), (low.long() + 1).clamp(max=size - 1), source - low

    width = x.shape[-1]
    y0, y1, wy = corners(ys, x.shape[-2])
    x0, x1, wx = corners(xs, width)
    planes = x.reshape(x.shape[0], -1)
    row0, row1 = y0 * width, y1 * width

    def at(row, column):  # one gather along the flattened planes: much faster than 2-D fancy indexing
        return planes.index_select(1, row + column)

    top = torch.lerp(at(row0, x0), at(row0, x1), wx)
    bottom = torch.lerp(at(row1, x0), at(row1, x1), wx)
    return torch.lerp(top, bottom, wy)


def _small_coefficients(guide, source, radius, eps, subsample):
    """Guided filter coefficients ``[B, 4, h, w]`` (a then b) computed at ``1 / subsample`` resolution."""
    small_radius = max(1, round(radius / subsample))
    a, b = guided_filter_coefficients(downsample(guide, subsample), downsample(source, subsample), small_radius, eps)
    return torch.cat([a, b[:, None]], dim=1)


def fast_guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float, subsample: int = 1):
    """Colour guided filter of ``source [B, H, W]`` steered by ``guide [B, 3, H, W]`` (values 0..1).

    The coefficients are computed at ``1 / subsample`` resolution and applied at full resolution
    (He & Sun 2015, "Fast Guided Filter"); ``radius`` is in full-resolution pixels.
    """
    subsample = max(1, int(subsample))
    coefficients = upsample(_small_coefficients(guide, source, radius, eps, subsample), subsample, guide.shape[-2:])
    return (coefficients[:, :3] * guide).sum(1) + coefficients[:, 3]


def fast_guided_filter_at(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float, subsample: int,
                          ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`fast_guided_filter` of one image (``guide [3, H, W]``, ``source [H, W]``), evaluated only
    at the pixels ``(ys, xs)``: ``[N]``."""
    subsample = max(1, int(subsample))
    coefficients = _small_coefficients(guide[None], source[None], radius, eps, subsample)[0]
    coefficients = upsample_at(coefficients, subsample, ys, xs)
    return (coefficients[:3] * guide[:, ys, xs]).sum(0) + coefficients[3]
