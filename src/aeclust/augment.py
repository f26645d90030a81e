"""Batched random geometric augmentation of image tensors, on the training device.

One random affine transform per image (rotation, shift, shear, scale, optional flips) applied with
``affine_grid``/``grid_sample``: a whole minibatch costs two tensor ops, with no per-image Python
loop and no trip through PIL (the ICAE authors' code augments image by image with torchvision's
PIL transforms).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=device)
    return low + (high - low) * u


def _pair(value: float | Sequence[float], name: str, symmetric: bool) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        v = float(value)
        if v < 0:
            raise ValueError(f"{name} must be >= 0 (or a (low, high) pair), got {value}")
        return (-v, v) if symmetric else (v, v)
    lo, hi = (float(a) for a in value)
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {tuple(value)}")
    return lo, hi


def random_affine(
    images: torch.Tensor,
    *,
    rotation: float | Sequence[float] = 0.0,
    shift: float = 0.0,
    scale: float | Sequence[float] = 1.0,
    shear: float | Sequence[float] = 0.0,
    hflip: bool = False,
    vflip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply an independent random affine transform (and flips) to every image of a batch.

    Parameters
    ----------
    images : Tensor (N, C, H, W)
        Floating images; pixels that come from outside the image are 0 (black, as torchvision's
        ``fillcolor=0``), so augment data whose background is 0 (e.g. [0, 1] digits) before any
        normalisation.
    rotation : float or (low, high)
        Angle in degrees, uniform in [-rotation, rotation] or [low, high].
    shift : float
        Translation along each axis, uniform in [-shift, shift] times the image size.
    scale : float or (low, high)
        Zoom factor, uniform in [low, high] (a single number: fixed).
    shear : float or (low, high)
        Horizontal shear angle in degrees, uniform in [-shear, shear] or [low, high].
    hflip, vflip : bool
        Mirror each image left-right / up-down with probability 1/2.
    generator : torch.Generator, optional
        On the images' device; makes the draw reproducible.

    Returns
    -------
    Tensor (N, C, H, W)
        Augmented images, same dtype and device.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    rot = _pair(rotation, "rotation", True)
    sc = _pair(scale, "scale", False)
    sh = _pair(shear, "shear", True)
    if sc[0] <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    n, dev = images.shape[0], images.device
    if n == 0:
        return images
    theta_r = torch.deg2rad(_uniform(n, *rot, generator, dev))
    phi = torch.deg2rad(_uniform(n, *sh, generator, dev))
    s = _uniform(n, *sc, generator, dev)
    # Normalised coordinates span [-1, 1], so a shift of f image sizes is 2 f.
    t = 2.0 * _uniform(2 * n, -shift, shift, generator, dev).reshape(n, 2)
    fx = torch.ones(n, device=dev)
    fy = torch.ones(n, device=dev)
    if hflip:
        fx = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -fx, fx)
    if vflip:
        fy = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -fy, fy)
    cos, sin = torch.cos(theta_r), torch.sin(theta_r)
    # Forward map (output <- input): A = s * R(theta) @ Shear_x(phi) @ Flip, then + t.
    # grid_sample needs the inverse: input = A^-1 (output - t).
    a = torch.zeros(n, 2, 2, device=dev)
    tan = torch.tan(phi)
    a[:, 0, 0] = s * cos * fx
    a[:, 0, 1] = s * (cos * tan - sin) * fy
    a[:, 1, 0] = s * sin * fx
    a[:, 1, 1] = s * (sin * tan + cos) * fy
    a_inv = torch.linalg.inv(a)
    theta = torch.cat([a_inv, -(a_inv @ t[..., None])], dim=2)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
