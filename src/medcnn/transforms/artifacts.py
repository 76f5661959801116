"""Medical-specific augmentations of whole batches ``(B, C, *spatial)``, 2D and 3D, as tensors.

Each takes a strength and a probability and draws its parameters per sample:

| plan field | what it simulates |
|---|---|
| ``augment.elastic`` | smooth random deformation (displacement in fractions of the image, from a coarse grid); joint with masks |
| ``augment.blur`` | Gaussian blur, sigma up to this many pixels (a softer reconstruction kernel, partial volume) |
| ``augment.noise`` | additive Gaussian noise, std up to this (normalised units) |
| ``augment.gamma`` | intensity gamma in [1 - g, 1 + g] on the min-max rescaled image |
| ``augment.bias_field`` | MR receive-coil bias: a smooth multiplicative field exp(polynomial of order 3) with coefficients up to this |
| ``augment.ghosting`` | MR ghosting: every n-th k-space line along one axis attenuated by up to this fraction |
| ``augment.motion`` | MR rigid motion: the later k-space lines see the object shifted by up to this fraction of the image |
| ``augment.window_jitter`` | CT window level / width changed by up to this fraction of the window |

Images only, except ``elastic_grid`` (a sampling grid, applied to image and mask by the caller).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

ARTIFACTS = ("blur", "noise", "gamma", "bias_field", "ghosting", "motion", "window_jitter")


def _chosen(b: int, p: float, device) -> torch.Tensor:
    return torch.rand(b, device=device) < p


def _view(x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def _coords(shape, device) -> list[torch.Tensor]:
    """Normalised coordinates in [-1, 1] per spatial axis, broadcastable to ``shape``."""
    axes = [torch.linspace(-1, 1, n, device=device) for n in shape]
    return list(torch.meshgrid(*axes, indexing="ij"))


def elastic_grid(n: int, shape, magnitude: float, control: int = 5, device=None) -> torch.Tensor:
    """(n, *shape, dims) ``grid_sample`` grid: identity plus a smooth random displacement (cubic
    upsampling of a ``control``-point grid of uniform offsets up to ``magnitude`` of the half-width)."""
    dims = len(shape)
    coarse = (torch.rand(n, dims, *([control] * dims), device=device) * 2 - 1) * magnitude * 2
    mode = "bicubic" if dims == 2 else "trilinear"
    disp = F.interpolate(coarse, size=tuple(shape), mode=mode, align_corners=True)
    ident = torch.stack(_coords(shape, device)[::-1], dim=-1)  # grid_sample wants (x, y[, z]) = reversed axes
    return ident.unsqueeze(0) + disp.movedim(1, -1).flip(-1)


def gaussian_blur(x: torch.Tensor, max_sigma: float, p: float) -> torch.Tensor:
    """Separable Gaussian blur, sigma drawn per sample in [0.25, max_sigma] pixels."""
    if max_sigma <= 0 or p <= 0:
        return x
    out = x.clone()
    dims = x.ndim - 2
    for i in torch.nonzero(_chosen(x.shape[0], p, x.device)).flatten().tolist():
        sigma = 0.25 + float(torch.rand(())) * max(max_sigma - 0.25, 0.0)
        r = max(1, int(round(3 * sigma)))
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        y = out[i:i + 1]
        c = y.shape[1]
        for axis in range(dims):
            shape = [1] * dims
            shape[axis] = k.numel()
            w = k.view(1, 1, *shape).repeat(c, 1, *([1] * dims))
            pad = [0, 0] * dims
            pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = r
            y = F.pad(y, pad, mode="replicate")
            y = (F.conv2d if dims == 2 else F.conv3d)(y, w, groups=c)
        out[i:i + 1] = y
    return out


def gaussian_noise(x: torch.Tensor, max_std: float, p: float) -> torch.Tensor:
    if max_std <= 0 or p <= 0:
        return x
    std = _chosen(x.shape[0], p, x.device).to(x.dtype).view(_view(x)) * torch.rand(_view(x), device=x.device) * max_std
    return x + std * torch.randn_like(x)


def random_gamma(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    if strength <= 0 or p <= 0:
        return x
    v = _view(x)
    g = 1 + _chosen(x.shape[0], p, x.device).to(x.dtype).view(v) * (torch.rand(v, device=x.device) * 2 - 1) * strength
    red = tuple(range(1, x.ndim))
    lo = x.amin(dim=red, keepdim=True)
    rng = (x.amax(dim=red, keepdim=True) - lo).clamp_min(1e-6)
    return ((x - lo) / rng).clamp_min(0) ** g * rng + lo


def bias_field(x: torch.Tensor, coeff: float, p: float, order: int = 3) -> torch.Tensor:
    """Multiply by exp(sum_k c_k * monomial_k(coords)), total degree <= ``order``, c_k ~ U(-coeff, coeff)."""
    if coeff <= 0 or p <= 0:
        return x
    b, dims = x.shape[0], x.ndim - 2
    coords = _coords(x.shape[2:], x.device)
    powers = [e for e in itertools.product(range(order + 1), repeat=dims) if 0 < sum(e) <= order]
    mono = torch.stack([torch.prod(torch.stack([c ** k for c, k in zip(coords, e)]), 0) for e in powers])  # (M, *S)
    c = (torch.rand(b, len(powers), device=x.device) * 2 - 1) * coeff
    c = c * _chosen(b, p, x.device).to(c.dtype)[:, None]
    log_field = torch.einsum("bm,m...->b...", c, mono.to(c.dtype))
    return x * torch.exp(log_field).unsqueeze(1).to(x.dtype)


def _kspace_apply(x: torch.Tensor, idx: list[int], fn) -> torch.Tensor:
    """Apply ``fn(kspace, i) -> kspace`` to the chosen samples' centred k-space (all spatial axes)."""
    out = x.clone()
    dims = tuple(range(2, x.ndim))
    for i in idx:
        k = torch.fft.fftshift(torch.fft.fftn(x[i:i + 1].float(), dim=dims), dim=dims)
        k = fn(k)
        img = torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims)
        out[i:i + 1] = img.real.to(x.dtype)
    return out


def ghosting(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    """Every n-th k-space line (n in 2..6) along one random axis, centre excluded, scaled by 1 - s."""
    if strength <= 0 or p <= 0:
        return x
    idx = torch.nonzero(_chosen(x.shape[0], p, x.device)).flatten().tolist()

    def fn(k):
        axis = 2 + int(torch.randint(0, x.ndim - 2, ()))
        n = int(torch.randint(2, 7, ()))
        s = float(torch.rand(())) * strength
        size = k.shape[axis]
        lines = torch.arange(size, device=k.device)
        keep = torch.ones(size, device=k.device)
        keep[(lines % n == 0) & ((lines - size // 2).abs() > 2)] = 1 - s
        shape = [1] * k.ndim
        shape[axis] = size
        return k * keep.view(shape)

    return _kspace_apply(x, idx, fn)


def motion(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    """Rigid translation during the acquisition: k-space lines (along one random axis) acquired after
    a random time see the object shifted by up to ``strength`` of the image size (a phase ramp)."""
    if strength <= 0 or p <= 0:
        return x
    idx = torch.nonzero(_chosen(x.shape[0], p, x.device)).flatten().tolist()
    dims = x.ndim - 2

    def fn(k):
        axis = 2 + int(torch.randint(0, dims, ()))
        size = k.shape[axis]
        start = int(size * (0.55 + 0.35 * float(torch.rand(()))))  # the outer lines after the centre
        shift = (torch.rand(dims) * 2 - 1) * strength  # fraction of each axis
        phase = torch.zeros(k.shape[2:], device=k.device)
        for d, c in enumerate(_coords(k.shape[2:], k.device)):
            freq = c * (k.shape[2 + d] / 2)  # cycles across the image
            phase = phase + 2 * torch.pi * freq * float(shift[d])
        late = torch.zeros(size, dtype=torch.bool, device=k.device)
        late[start:] = True
        shape = [1] * dims
        shape[axis - 2] = size
        ramp = torch.where(late.view(shape), torch.exp(-1j * phase), torch.ones_like(phase, dtype=torch.complex64))
        return k * ramp

    return _kspace_apply(x, idx, fn)


def window_jitter(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    """Window level shifted by up to ``strength`` of the window and width scaled by 1 +- strength
    (normalised CT images: the window is [0, 1] or the image's own range)."""
    if strength <= 0 or p <= 0:
        return x
    v = _view(x)
    on = _chosen(x.shape[0], p, x.device).to(x.dtype).view(v)
    level = on * (torch.rand(v, device=x.device) * 2 - 1) * strength
    width = 1 + on * (torch.rand(v, device=x.device) * 2 - 1) * strength
    mid = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return (x - mid) / width + mid + level


def apply_artifacts(x: torch.Tensor, cfg) -> torch.Tensor:
    """Every artifact the AugmentConfig switches on (strength > 0), each with probability ``cfg.p``."""
    if cfg.p <= 0:
        return x
    x = bias_field(x, cfg.bias_field, cfg.p)
    x = ghosting(x, cfg.ghosting, cfg.p)
    x = motion(x, cfg.motion, cfg.p)
    x = gaussian_blur(x, cfg.blur, cfg.p)
    x = random_gamma(x, cfg.gamma, cfg.p)
    x = window_jitter(x, cfg.window_jitter, cfg.p)
    return gaussian_noise(x, cfg.noise, cfg.p)
