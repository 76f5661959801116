"""Parallel-beam CT physics on torch batches: forward projection (Radon transform), filtered
back-projection, and the low-dose / sparse-view degradations built from them.

scikit-image's ``radon``/``iradon`` compute the same transforms one image at a time (about 1 s for
a 256x256 slice with 360 views on one core); training an enhancement model degrades every batch,
so the projector here works on whole batches with ``grid_sample`` (images ride as channels of one
sampling grid per view). ``tests/transforms/test_ct.py`` checks it against scikit-image.

Geometry (scikit-image's): square images of N pixels rotating about pixel N // 2, a detector of
D = ceil(N * sqrt(2)) bins of one pixel centred on bin D // 2 (the whole image is inside the field
of view, as ``circle=False``), views evenly spread over 180 degrees.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

MU_WATER_PER_MM = 0.0192  # linear attenuation of water at about 70 keV (1/mm)
VIEW_CHUNK = 32  # views sampled per grid_sample call (bounds the memory of one call)


def angles(n_views: int) -> torch.Tensor:
    """View angles in radians, evenly spread over [0, pi)."""
    return torch.arange(n_views, dtype=torch.float64) * (math.pi / n_views)


def detector_size(n: int) -> int:
    return int(math.ceil(n * math.sqrt(2)))


@lru_cache(maxsize=8)
def _projection_grids(n: int, n_views: int) -> torch.Tensor:
    """(V, D, D, 2) sampling grids: for view v, output row = position along the ray, column = detector bin."""
    d = detector_size(n)
    th = angles(n_views)
    u = torch.arange(d, dtype=torch.float64) - d // 2  # detector coordinate t and ray coordinate s (pixels)
    s, t = torch.meshgrid(u, u, indexing="ij")
    c, si = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
    x = t * c + s * si  # image column, pixels from the centre pixel n // 2 (scikit-image's convention)
    y = s * c - t * si  # image row
    to_grid = lambda v: (v + n // 2 + 0.5) * (2.0 / n) - 1  # grid_sample's coordinates, align_corners=False
    return torch.stack([to_grid(x), to_grid(y)], dim=-1).float()


@lru_cache(maxsize=8)
def _backprojection_grid(n: int, n_views: int) -> torch.Tensor:
    """(1, V, N*N, 2) grid sampling the (V, D) sinogram at each pixel's detector coordinate."""
    d = detector_size(n)
    th = angles(n_views)
    u = torch.arange(n, dtype=torch.float64) - n // 2
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    t = xx.reshape(1, -1) * torch.cos(th)[:, None] - yy.reshape(1, -1) * torch.sin(th)[:, None]  # (V, N*N)
    gx = (t + d // 2 + 0.5) * (2.0 / d) - 1  # detector bin -> grid_sample's coordinates
    gy = (torch.arange(n_views, dtype=torch.float64)[:, None] + 0.5) * (2.0 / n_views) - 1
    return torch.stack([gx, gy.expand_as(gx)], dim=-1)[None].float()


def _check(x: torch.Tensor) -> tuple[int, int]:
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"CT projection needs (B, 1, N, N) images, got {tuple(x.shape)}")
    return x.shape[0], x.shape[-1]


def radon(x: torch.Tensor, n_views: int) -> torch.Tensor:
    """(B, 1, N, N) images -> (B, n_views, D) line integrals, in pixel units (multiply by the pixel
    size for physical units)."""
    b, n = _check(x)
    grids = _projection_grids(n, n_views).to(x.device)
    img = x.float().reshape(1, b, n, n)  # images as channels: one grid serves the whole batch
    out = []
    for v0 in range(0, n_views, VIEW_CHUNK):
        g = grids[v0:v0 + VIEW_CHUNK]
        s = F.grid_sample(img.expand(g.shape[0], b, n, n), g, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # (v, B, D(ray), D(det))
        out.append(s.sum(dim=2))  # integrate along the ray
    return torch.cat(out, dim=0).permute(1, 0, 2).contiguous()


def _ramp(d: int, window: str = "ramlak") -> tuple[torch.Tensor, int]:
    """Frequency response of the ramp filter (from its band-limited spatial kernel, as
    scikit-image does), zero-padded length."""
    size = max(64, 1 << int(math.ceil(math.log2(2 * d))))
    k = torch.arange(1, size // 2 + 1, 2, dtype=torch.float64)
    h = torch.zeros(size, dtype=torch.float64)
    h[0] = 0.25
    h[1::2] = -1 / (math.pi * torch.cat([k, k.flip(0)])) ** 2
    f = 2 * torch.fft.fft(h).real
    if window == "hann":
        w = torch.fft.fftfreq(size, dtype=torch.float64)
        f = f * (0.5 + 0.5 * torch.cos(2 * math.pi * w))
    elif window != "ramlak":
        raise ValueError(f"unknown FBP filter {window!r} (ramlak | hann)")
    return f.float(), size


def fbp(sino: torch.Tensor, n: int, window: str = "ramlak") -> torch.Tensor:
    """(B, V, D) sinogram -> (B, 1, N, N) filtered back-projection (the inverse of :func:`radon`)."""
    b, v, d = sino.shape
    f, size = _ramp(d, window)
    q = torch.fft.ifft(torch.fft.fft(F.pad(sino.float(), (0, size - d)), dim=-1) * f.to(sino.device), dim=-1).real[..., :d]
    grid = _backprojection_grid(n, v).to(sino.device)
    bp = F.grid_sample(q.reshape(1, b, v, d), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (bp.sum(dim=2) * (math.pi / (2 * v))).reshape(b, 1, n, n)


def hu_to_mu(hu: torch.Tensor) -> torch.Tensor:
    return MU_WATER_PER_MM * (1 + hu / 1000.0)


def mu_to_hu(mu: torch.Tensor) -> torch.Tensor:
    return (mu / MU_WATER_PER_MM - 1) * 1000.0


def lowdose(hu: torch.Tensor, photons: float | torch.Tensor, pixel_mm: float, n_views: int = 360,
            generator: torch.Generator | None = None, window: str = "ramlak") -> torch.Tensor:
    """A low-dose scan of ``hu`` (B, 1, N, N): line integrals of the attenuation, Poisson photon
    counts with ``photons`` incident per detector bin (a float or one value per image; lower is
    noisier), log, filtered back-projection, back to HU."""
    b, n = _check(hu)
    p = radon(hu_to_mu(hu.float()).clamp_min(0), n_views) * pixel_mm  # line integrals (unitless)
    i0 = torch.as_tensor(photons, dtype=torch.float32, device=hu.device).reshape(-1, 1, 1).expand(b, 1, 1)
    counts = torch.poisson(i0 * torch.exp(-p), generator=generator)
    p_noisy = -torch.log(counts.clamp_min(1.0) / i0)
    return mu_to_hu(fbp(p_noisy, n, window) / pixel_mm)


def lowdose_basis(hu: torch.Tensor, pixel_mm: float, n_views: int = 360, k: int = 4,
                  generator: torch.Generator | None = None, window: str = "ramlak") -> tuple[torch.Tensor, torch.Tensor]:
    """What many low-dose scans of the same slices are made of, for drawing them cheaply in training.

    A count with mean I0 exp(-p) gives, after the log, p plus noise of variance exp(p) / I0
    (Gaussian for all but photon-starved rays), and FBP is linear, so a low-dose scan is
    ``clean + noise_w / sqrt(I0)`` with ``clean`` = FBP(p) and ``noise_w`` = FBP(sqrt(exp p) z). Returns
    ``clean`` (B, 1, N, N) in HU and ``k`` unit-dose noise images (B, k, N, N) in HU x sqrt(photons);
    :func:`lowdose_from_basis` mixes them with random unit-norm weights (again a Gaussian field with
    the same covariance) for each new draw. :func:`lowdose` stays the exact (Poisson) simulation."""
    b, n = _check(hu)
    p = radon(hu_to_mu(hu.float()).clamp_min(0), n_views) * pixel_mm
    clean = mu_to_hu(fbp(p, n, window) / pixel_mm)
    z = torch.randn((b, k, *p.shape[1:]), generator=generator)
    sino = (torch.exp(p / 2)[:, None] * z).reshape(b * k, *p.shape[1:])
    noise = fbp(sino, n, window).reshape(b, k, n, n) * (1000.0 / (MU_WATER_PER_MM * pixel_mm))
    return clean, noise


def lowdose_from_basis(clean: torch.Tensor, noise: torch.Tensor, photons: float | torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One low-dose draw per image from :func:`lowdose_basis`'s parts, at ``photons`` per detector bin."""
    b, k = noise.shape[:2]
    w = torch.randn((b, k), generator=generator)
    w = w / w.norm(dim=1, keepdim=True)
    i0 = torch.as_tensor(photons, dtype=torch.float32).reshape(-1, 1, 1, 1)
    return clean.float() + (w[..., None, None] * noise.float()).sum(1, keepdim=True) / torch.sqrt(i0)


def sparse_view(hu: torch.Tensor, n_views: int, window: str = "ramlak") -> torch.Tensor:
    """FBP of ``hu`` (B, 1, N, N) from ``n_views`` projections (streak artifacts when few)."""
    _, n = _check(hu)
    return fbp(radon(hu.float(), n_views), n, window)
