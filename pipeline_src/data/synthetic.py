"""Embedded synthetic stand-ins for ISIC 2018 (skin, 4 classes) and RSNA pneumonia (chest, 3 classes).

Why synthetic: the pipeline must run offline on a laptop CPU in minutes, yet the experiment (clean
accuracy, adversarial transfer from a surrogate, denoising defences) only means something if the
classes are *learnable but not trivially separable*, and if the cues are spatial/colour structures
rather than one pixel statistic, so that adversarial perturbations crafted on one model transfer to
another, as they do for real images.

Design, shared by both datasets:

* Every image is a *scene* described by a handful of per-sample parameters (geometry, colours,
  texture strengths, positions of dots/opacities) plus low-resolution noise grids. All of them are
  drawn before rendering and are independent of the image size, so the same seed gives the same
  scene at 32, 64 or 224 px; only the per-pixel sensor noise depends on the size.
* Label-independent nuisances (skin tone, hair, vignetting, dermatoscope ring; body habitus, rib
  cage, exposure, rotation) are drawn from the same distribution for every class.
* Class cues are drawn from class-conditional distributions whose *shift away from a generic,
  class-neutral lesion/chest* is multiplied by a per-sample cue strength ``s``. Samples with small
  ``s`` are nearly ambiguous; the spread of ``s`` (``_SKIN_CUE``/``_CHEST_CUE``) is the main
  difficulty knob. Labels are never flipped at random.
* Rendering is vectorised over a chunk of images (torch, float32, element-wise ops only, so the
  result does not depend on the number of threads); loops run only over a few shapes per image
  (dots, hairs, ribs, opacities), each iteration operating on the whole chunk.
* Sizes, widths and positions are fractions of the image (coordinates in [-1, 1]); thin structures
  are widened to at least about a pixel and dimmed in proportion ("ink conservation"), so they stay
  visible but not aliased at 32 px.

Randomness comes only from ``numpy.random.Generator`` objects seeded by (dataset name, seed, class),
never from torch's global RNG. Each class has its own stream, so changing the count of one class does
not change the images of another; the final order is a deterministic shuffle.
"""
from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from pipeline_src.data.catalog import SYNTHETIC_CHANNELS, SYNTHETIC_CLASSES  # re-exported: the names live there

log = logging.getLogger(__name__)

MIN_IMAGE_SIZE = 16
# Pixels rendered at once; bounds memory at 224 px (a chunk holds a few [chunk, shapes, H, W] maps).
_CHUNK_PIXELS = 1 << 20

Params = dict[str, np.ndarray]


# --------------------------------------------------------------------------- helpers

def _u(rng: np.random.Generator, lo: float, hi: float, shape: int | tuple[int, ...]) -> np.ndarray:
    return rng.uniform(lo, hi, shape)


def _col(a: np.ndarray) -> torch.Tensor:
    """Per-sample scalar -> [n, 1, 1] tensor that broadcasts against [n, H, W] maps."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).view(-1, 1, 1)


def _rgb(a: np.ndarray) -> torch.Tensor:
    """Per-sample colour [n, 3] -> [n, 3, 1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).view(-1, 3, 1, 1)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], x to the right and y downwards, each [1, H, W]."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x.unsqueeze(0), y.unsqueeze(0)


def _smooth(grid: np.ndarray, size: int) -> torch.Tensor:
    """Upsample a low-resolution noise grid [n, c, g, g] to a smooth field [n, c, H, W].

    The grid is drawn once per scene, so the field is the same at every output size."""
    t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
    return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=True)


def _ink(dist: torch.Tensor, half_width: torch.Tensor | float, px: float) -> torch.Tensor:
    """Soft profile of a line/dot of ``half_width`` at distance ``dist`` (coordinate units).

    Widened to at least ~1 pixel (``px`` = half a pixel in coordinate units) and dimmed by the same
    factor, so sub-pixel structures keep their total "ink" instead of aliasing or vanishing."""
    w_eff = torch.sqrt(torch.as_tensor(half_width) ** 2 + px * px)
    return (torch.as_tensor(half_width) / w_eff) * torch.exp(-(dist / w_eff) ** 2)


def _lerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * w


def _chunks(n: int, size: int) -> list[slice]:
    step = max(1, _CHUNK_PIXELS // (size * size))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _take(p: Params, sl: slice) -> Params:
    return {k: v[sl] for k, v in p.items()}


# --------------------------------------------------------------------------- skin4

# Cue strength s ~ U(lo, hi): the class-specific shift of every cue is multiplied by s. s = 1 is the
# class prototype of the tables below; s > 1 exaggerates it (clipped at plausible limits), s near 0 is
# a class-neutral lesion. Tuned with bench/tune_synthetic.py so that a from-scratch ResNet18 trained
# for the default 6 epochs reaches roughly 75-88% clean accuracy. With every sample at s = 1 it only
# reaches ~85-90% (6 epochs on ~700 images is very little training), hence the exaggerated upper end;
# the low end supplies nearly ambiguous samples, which also make transferred attacks bite.
_SKIN_CUE = (0.25, 1.6)

# Per-class tables, order MEL, NV, BCC, BKL. Each cue is  generic + s * (class value - generic).
_SKIN_GENERIC_COLOUR = np.array([0.46, 0.31, 0.22])
_SKIN_CLASS_COLOUR = np.array([
    [0.22, 0.13, 0.11],   # MEL: dark brown / black
    [0.50, 0.32, 0.20],   # NV: medium brown, uniform
    [0.86, 0.45, 0.50],   # BCC: pink-red, translucent
    [0.70, 0.56, 0.40],   # BKL: tan / light brown, waxy
])
_SKIN_GENERIC_VARCOL = np.array([0.34, 0.21, 0.15])   # second colour inside the lesion
_SKIN_CLASS_VARCOL = np.array([
    [0.12, 0.08, 0.08],   # MEL: black (alternative below: blue-grey veil)
    [0.36, 0.22, 0.14],   # NV: slightly darker brown
    [0.40, 0.44, 0.54],   # BCC: blue-grey ovoid nests
    [0.80, 0.68, 0.50],   # BKL: yellowish / milky
])
_SKIN_BLUEGREY = np.array([0.42, 0.46, 0.56])
_SKIN_SIZE_SHIFT = np.array([0.12, -0.02, -0.10, 0.03])
_SKIN_IRREG = (0.035, np.array([0.16, 0.02, 0.08, 0.07]))      # border harmonics amplitude
_SKIN_EDGE = (0.04, np.array([0.03, 0.05, 0.04, 0.015]))       # border softness (BKL: sharp, stuck-on)
_SKIN_VAR = (0.25, np.array([1.0, 0.25, 0.6, 0.5]))         # colour variegation strength
_SKIN_ASYM = (0.15, np.array([0.9, 0.05, 0.3, 0.2]))           # off-centre colour distribution
_SKIN_NET = (0.15, np.array([0.35, 0.45, 0.0, 0.05]))          # pigment network strength
_SKIN_NET_IRREG = np.array([1.0, 0.1, 0.0, 0.0])               # atypical (distorted) network
_SKIN_DOTS = (1.0, np.array([5.0, 4.0, 3.0, 5.0]))             # expected number of dots/globules
_SKIN_DOT_RHO = np.array([[0.55, 1.05], [0.0, 0.7], [0.1, 0.8], [0.0, 0.85]])  # radial position
_SKIN_DOT_SIZE = np.array([[0.03, 0.07], [0.04, 0.06], [0.07, 0.12], [0.03, 0.055]])
_SKIN_DOT_GENERIC_COL = np.array([0.30, 0.20, 0.14])
_SKIN_STREAK = np.array([0.6, 0.05, 0.0, 0.0])                 # radial streaks at the periphery
_SKIN_VESSEL = np.array([0.1, 0.0, 1.0, 0.0])                  # arborising red vessels
_SKIN_FISSURE = np.array([0.0, 0.0, 0.0, 0.7])                 # cerebriform fissures / ridges
_SKIN_ULCER = np.array([0.0, 0.0, 0.8, 0.0])                   # central crust
_SKIN_TRANSLUCENT = np.array([0.0, 0.0, 0.1, 0.05])
_SKIN_HAIRS, _SKIN_MAX_DOTS, _SKIN_VESSELS, _SKIN_HARMONICS = 4, 8, 3, 6


def _shift(rng_vals: np.ndarray, base: tuple[float, np.ndarray], c: int, s: np.ndarray) -> np.ndarray:
    generic, per_class = base
    return (generic + s * (per_class[c] - generic)) * rng_vals


def _skin_params(rng: np.random.Generator, n: int, c: int) -> Params:
    p: Params = {}
    s = _u(rng, *_SKIN_CUE, n)
    p["s"] = s
    # --- background skin (label independent)
    tone = rng.uniform(0, 1, n)
    light, dark = np.array([0.94, 0.79, 0.71]), np.array([0.56, 0.38, 0.28])
    skin = light + (dark - light) * tone[:, None] + rng.normal(0, 0.025, (n, 3))
    red = rng.uniform(0, 0.07, n)
    skin[:, 0] += red
    skin[:, 1:] -= 0.5 * red[:, None]
    p["skin"] = skin
    p["bg_grid"] = rng.standard_normal((n, 1, 6, 6))
    p["bg_amp"] = _u(rng, 0.015, 0.05, n)
    p["grad_ang"] = _u(rng, 0, 2 * math.pi, n)
    p["grad_amp"] = _u(rng, 0, 0.12, n)
    p["vig"] = _u(rng, 0, 0.4, n)
    p["ring"] = (rng.random(n) < 0.3).astype(np.float64)
    p["ring_r"] = _u(rng, 0.92, 1.25, n)
    p["hair_on"] = (rng.random((n, _SKIN_HAIRS)) < np.array([0.45, 0.3, 0.2, 0.1])).astype(np.float64)
    p["hair_p"] = _u(rng, -0.8, 0.8, (n, _SKIN_HAIRS, 2))
    p["hair_ang"] = _u(rng, 0, math.pi, (n, _SKIN_HAIRS))
    p["hair_curv"] = _u(rng, -0.8, 0.8, (n, _SKIN_HAIRS))
    p["hair_w"] = _u(rng, 0.008, 0.02, (n, _SKIN_HAIRS))
    p["hair_dark"] = _u(rng, 0.5, 0.85, (n, _SKIN_HAIRS))
    p["exposure"] = _u(rng, 0.85, 1.12, n)
    p["wb"] = rng.normal(0, 0.03, (n, 3))
    p["noise"] = _u(rng, 0.008, 0.025, n)
    # --- lesion geometry
    p["centre"] = np.clip(rng.normal(0, 0.1, (n, 2)), -0.25, 0.25)
    p["r0"] = np.clip(rng.normal(0.46, 0.08, n) + s * _SKIN_SIZE_SHIFT[c], 0.18, 0.72)
    p["aspect"] = _u(rng, 1.0, 1.35, n)
    p["rot"] = _u(rng, 0, math.pi, n)
    irr = np.minimum(_shift(rng.lognormal(0, 0.3, n), _SKIN_IRREG, c, s), 0.22)
    k = np.arange(2, 2 + _SKIN_HARMONICS)
    # amplitude falls with the harmonic order: lobulated/notched borders rather than star shapes
    p["harm_amp"] = irr[:, None] * rng.standard_normal((n, _SKIN_HARMONICS)) / (k - 1) ** 0.8
    p["harm_ph"] = _u(rng, 0, 2 * math.pi, (n, _SKIN_HARMONICS))
    p["edge"] = np.maximum(_shift(rng.lognormal(0, 0.25, n), _SKIN_EDGE, c, s), 0.008)
    # --- lesion colour
    base = _SKIN_GENERIC_COLOUR + s[:, None] * (_SKIN_CLASS_COLOUR[c] - _SKIN_GENERIC_COLOUR)
    p["base"] = np.clip((base + rng.normal(0, 0.045, (n, 3))) * _u(rng, 0.85, 1.15, n)[:, None], 0.03, 1.0)
    p["alpha"] = _u(rng, 0.7, 0.95, n) - s * _SKIN_TRANSLUCENT[c]
    varcol = np.repeat(_SKIN_CLASS_VARCOL[c][None], n, 0)
    if c == 0:  # melanoma: black blotch or blue-grey veil
        veil = rng.random(n) < 0.5
        varcol[veil] = _SKIN_BLUEGREY
    p["varcol"] = np.clip(_SKIN_GENERIC_VARCOL + s[:, None] * (varcol - _SKIN_GENERIC_VARCOL), 0.03, 1.0)
    p["var_grid"] = rng.standard_normal((n, 1, 5, 5))
    p["var"] = _shift(_u(rng, 0.6, 1.2, n), _SKIN_VAR, c, s)
    p["asym"] = _shift(_u(rng, 0.3, 1.3, n), _SKIN_ASYM, c, s)
    p["asym_ang"] = _u(rng, 0, 2 * math.pi, n)
    # --- textures
    p["net"] = _shift(_u(rng, 0.5, 1.3, n), _SKIN_NET, c, s)
    p["net_irreg"] = s * _SKIN_NET_IRREG[c]
    p["net_freq"] = _u(rng, 4.0, 6.5, n)
    p["net_rot"] = _u(rng, 0, math.pi, n)
    p["net_grid"] = rng.standard_normal((n, 1, 6, 6))
    n_dots = rng.poisson(_SKIN_DOTS[0] + s * (_SKIN_DOTS[1][c] - _SKIN_DOTS[0]))
    p["dot_on"] = (np.arange(_SKIN_MAX_DOTS)[None] < n_dots[:, None]).astype(np.float64)
    lo, hi = _SKIN_DOT_RHO[c]
    w = np.minimum(s, 1.0)[:, None]   # a mixture weight: no extrapolation of positions
    rho = (1 - w) * _u(rng, 0.0, 0.9, (n, _SKIN_MAX_DOTS)) + w * _u(rng, lo, hi, (n, _SKIN_MAX_DOTS))
    p["dot_rho"] = rho
    p["dot_phi"] = _u(rng, 0, 2 * math.pi, (n, _SKIN_MAX_DOTS))
    p["dot_size"] = _u(rng, *_SKIN_DOT_SIZE[c], (n, _SKIN_MAX_DOTS))
    dotcol = np.empty((n, _SKIN_MAX_DOTS, 3))
    if c == 0:
        dotcol[:] = [0.12, 0.08, 0.07]
    elif c == 1:
        dotcol[:] = [0.30, 0.18, 0.12]
    elif c == 2:
        dotcol[:] = [0.36, 0.40, 0.50]
    else:  # milia-like cysts (white) and comedo-like openings (dark)
        milia = rng.random((n, _SKIN_MAX_DOTS)) < 0.5
        dotcol[:] = [0.22, 0.15, 0.10]
        dotcol[milia] = [0.92, 0.88, 0.80]
    p["dot_col"] = np.clip(_SKIN_DOT_GENERIC_COL + s[:, None, None] * (dotcol - _SKIN_DOT_GENERIC_COL), 0.03, 1.0)
    p["streak"] = s * _SKIN_STREAK[c] + _u(rng, 0, 0.05, n)
    p["streak_m"] = rng.integers(9, 17, n).astype(np.float64)
    p["streak_ph"] = _u(rng, 0, 2 * math.pi, n)
    p["vessel"] = s * _SKIN_VESSEL[c] + _u(rng, 0, 0.05, n)
    p["vessel_p"] = rng.normal(0, 0.35, (n, _SKIN_VESSELS, 2))
    p["vessel_ang"] = _u(rng, 0, math.pi, (n, _SKIN_VESSELS))
    p["vessel_curv"] = _u(rng, -3.0, 3.0, (n, _SKIN_VESSELS))
    p["fissure"] = np.minimum(s * _SKIN_FISSURE[c] + _u(rng, 0, 0.05, n), 1.0)
    p["fissure_freq"] = _u(rng, 2.5, 4.0, n)
    p["fissure_grid"] = rng.standard_normal((n, 1, 4, 4))
    p["ulcer"] = np.minimum(s * _SKIN_ULCER[c], 1.0) * (rng.random(n) < 0.4)
    return p


def _skin_render(p: Params, size: int, rng: np.random.Generator) -> torch.Tensor:
    n = len(p["s"])
    x, y = _grid(size)
    px = 1.0 / size
    # ---- background: skin tone, mottling, later illumination
    img = _rgb(p["skin"]) * (1 + _col(p["bg_amp"]).unsqueeze(1) * _smooth(p["bg_grid"], size))
    # ---- lesion coordinates: rotated ellipse around the centre, polar angle for the border harmonics
    cx, cy = _col(p["centre"][:, 0]), _col(p["centre"][:, 1])
    rot = _col(p["rot"])
    dx, dy = x - cx, y - cy
    u = dx * torch.cos(rot) + dy * torch.sin(rot)
    v = (-dx * torch.sin(rot) + dy * torch.cos(rot)) * _col(p["aspect"])
    rho = torch.sqrt(u * u + v * v) + 1e-6
    phi = torch.atan2(v, u)
    r0 = _col(p["r0"])
    border = torch.ones_like(rho)
    for i in range(_SKIN_HARMONICS):
        border = border + _col(p["harm_amp"][:, i]) * torch.cos((i + 2) * phi + _col(p["harm_ph"][:, i]))
    border = r0 * border.clamp_min(0.3)
    edge = torch.sqrt(_col(p["edge"]) ** 2 + px * px)
    mask = torch.sigmoid((border - rho) / edge)          # [n, H, W]
    rr = rho / border                                     # 1 on the border
    # ---- lesion colour field: base colour, variegation (off-centre for asymmetric lesions)
    col = _rgb(p["base"]).expand(n, 3, size, size)
    ang = _col(p["asym_ang"])
    proj = (dx * torch.cos(ang) + dy * torch.sin(ang)) / r0
    vf = _smooth(p["var_grid"], size)[:, 0] + 1.5 * _col(p["asym"]) * proj
    vf = torch.sigmoid((vf - 0.3) / 0.35) * _col(p["var"]).clamp(0, 1)
    col = _lerp(col, _rgb(p["varcol"]), vf.unsqueeze(1))
    # pigment network: dark grid lines, phase-distorted for atypical networks
    nrot = _col(p["net_rot"])
    f = _col(p["net_freq"]) * math.pi / r0
    distort = _col(p["net_irreg"]) * 1.5 * _smooth(p["net_grid"], size)[:, 0]
    a = f * (u * torch.cos(nrot) + v * torch.sin(nrot)) + distort
    b = f * (-u * torch.sin(nrot) + v * torch.cos(nrot)) - distort
    lines = torch.maximum(torch.exp(-torch.sin(a) ** 2 / 0.12), torch.exp(-torch.sin(b) ** 2 / 0.12))
    col = col * (1 - 0.5 * (_col(p["net"]).clamp(0, 1) * lines * (1 - rr.clamp(0, 1) ** 4)).unsqueeze(1))
    # cerebriform fissures (BKL)
    fz = torch.sin(_col(p["fissure_freq"]) * math.pi * (u / r0 + 0.35 * _smooth(p["fissure_grid"], size)[:, 0]))
    fiss = _col(p["fissure"]) * torch.exp(-fz ** 2 / 0.08)
    col = _lerp(col, col * 0.55, fiss.unsqueeze(1))
    img = _lerp(img, col, (mask * _col(p["alpha"]).clamp(0.3, 1)).unsqueeze(1))
    # ---- dots / globules / cysts / nests
    for d in range(_SKIN_MAX_DOTS):
        r_d = _col(p["dot_rho"][:, d]) * r0
        ph = _col(p["dot_phi"][:, d])
        du, dv = u - r_d * torch.cos(ph), v - r_d * torch.sin(ph)
        blob = _col(p["dot_on"][:, d]) * _ink(torch.sqrt(du * du + dv * dv), _col(p["dot_size"][:, d]), px)
        img = _lerp(img, _rgb(p["dot_col"][:, d]), blob.clamp(0, 1).unsqueeze(1))
    # ---- radial streaks at the periphery (they reach beyond the border)
    ann = torch.exp(-((rr - 1.0) / 0.14) ** 2)
    spokes = (0.5 + 0.5 * torch.cos(_col(p["streak_m"]) * phi + _col(p["streak_ph"]))) ** 6
    img = _lerp(img, img * 0.45, (_col(p["streak"]).clamp(0, 1) * ann * spokes).unsqueeze(1))
    # ---- arborising vessels (BCC): curved thin red lines inside the lesion
    red = torch.tensor([0.72, 0.16, 0.20]).view(1, 3, 1, 1)
    for i in range(_SKIN_VESSELS):
        ang_v = _col(p["vessel_ang"][:, i])
        qx = u - _col(p["vessel_p"][:, i, 0]) * r0
        qy = v - _col(p["vessel_p"][:, i, 1]) * r0
        t = qx * torch.cos(ang_v) + qy * torch.sin(ang_v)
        nrm = -qx * torch.sin(ang_v) + qy * torch.cos(ang_v) - _col(p["vessel_curv"][:, i]) * t * t
        line = _ink(nrm, 0.02, px) * mask
        img = _lerp(img, red, (_col(p["vessel"]).clamp(0, 1) * line).unsqueeze(1))
    # ---- central crust / ulceration (BCC)
    crust = torch.tensor([0.36, 0.12, 0.09]).view(1, 3, 1, 1)
    img = _lerp(img, crust, (_col(p["ulcer"]) * torch.sigmoid((0.3 - rr) / 0.06)).unsqueeze(1))
    # ---- hairs on top: slightly curved dark lines anywhere in the image
    hair_col = torch.tensor([0.12, 0.08, 0.06]).view(1, 3, 1, 1)
    for i in range(_SKIN_HAIRS):
        ang_h = _col(p["hair_ang"][:, i])
        qx, qy = x - _col(p["hair_p"][:, i, 0]), y - _col(p["hair_p"][:, i, 1])
        t = qx * torch.cos(ang_h) + qy * torch.sin(ang_h)
        nrm = -qx * torch.sin(ang_h) + qy * torch.cos(ang_h) - _col(p["hair_curv"][:, i]) * t * t
        line = _col(p["hair_on"][:, i]) * _col(p["hair_dark"][:, i]) * _ink(nrm, _col(p["hair_w"][:, i]), px)
        img = _lerp(img, hair_col, line.unsqueeze(1))
    # ---- acquisition: illumination gradient, vignetting, dermatoscope ring, exposure, white balance
    ga = _col(p["grad_ang"])
    r2 = x * x + y * y
    light = (1 + _col(p["grad_amp"]) * (x * torch.cos(ga) + y * torch.sin(ga))) * (1 - _col(p["vig"]) * r2 / 2)
    ring = 1 - _col(p["ring"]) * torch.sigmoid((torch.sqrt(r2) - _col(p["ring_r"])) / 0.03) * 0.92
    img = img * (light * ring * _col(p["exposure"])).unsqueeze(1) + _rgb(p["wb"])
    img = img + _col(p["noise"]).unsqueeze(1) * torch.from_numpy(
        rng.standard_normal((n, 3, size, size), dtype=np.float32))
    return img


# --------------------------------------------------------------------------- chest3

# Same meaning as _SKIN_CUE (s = 1: the prototype abnormality; clipped at plausible limits).
_CHEST_CUE = (0.4, 2.0)
_CHEST_MAX_OPACITIES, _CHEST_RIBS = 3, 9


def _chest_params(rng: np.random.Generator, n: int, c: int) -> Params:
    p: Params = {}
    s = _u(rng, *_CHEST_CUE, n)
    p["s"] = s
    # --- pose and habitus (label independent)
    p["scale"] = _u(rng, 0.9, 1.08, n)
    p["shift"] = rng.normal(0, 0.04, (n, 2))
    p["tilt"] = _u(rng, -0.08, 0.08, n)
    p["body_w"] = _u(rng, 0.82, 0.98, n)
    p["body_level"] = _u(rng, 0.40, 0.52, n)
    p["lung_x"] = _u(rng, 0.33, 0.41, n)
    p["lung_w"] = _u(rng, 0.21, 0.27, n)
    p["lung_top"] = _u(rng, -0.72, -0.6, n)
    p["lung_bot"] = _u(rng, 0.38, 0.55, (n, 2))      # right hemidiaphragm (image left) a bit higher
    p["lung_bot"][:, 0] -= 0.04
    p["lung_dark"] = _u(rng, 0.22, 0.3, n)
    p["spine"] = _u(rng, 0.08, 0.16, n)
    p["rib_gap"] = _u(rng, 0.12, 0.15, n)
    p["rib_amp"] = _u(rng, 0.03, 0.06, n)
    p["rib_w"] = _u(rng, 0.018, 0.03, n)
    p["clav"] = _u(rng, 0.06, 0.12, n)
    p["vasc_grid"] = rng.standard_normal((n, 1, 7, 7))
    p["vasc"] = _u(rng, 0.015, 0.04, n)
    p["marker"] = (rng.random(n) < 0.5).astype(np.float64)
    p["marker_pos"] = np.stack([rng.choice([-0.8, 0.8], n), _u(rng, -0.85, -0.6, n)], 1)
    p["gamma"] = np.exp(rng.normal(0, 0.12, n))
    p["contrast"] = _u(rng, 0.85, 1.15, n)
    p["bright"] = rng.normal(0, 0.05, n)
    p["noise"] = _u(rng, 0.01, 0.03, n)
    # --- heart: cardiothoracic ratio, normal range overlapping the enlarged one
    ctr = rng.normal(0.46, 0.04, n)
    # --- pathology
    opac = np.zeros((n, _CHEST_MAX_OPACITIES))
    ret = _u(rng, 0.0, 0.02, n)          # every chest has a little interstitial texture
    eff = np.zeros((n, 2))
    if c == 1:  # Lung Opacity: 1-3 fluffy consolidations
        k = rng.choice([1, 2, 3], n, p=[0.3, 0.4, 0.3])
        opac = (np.arange(_CHEST_MAX_OPACITIES)[None] < k[:, None]) * (s[:, None] * _u(rng, 0.35, 0.6, (n, _CHEST_MAX_OPACITIES)))
    elif c == 2:  # other abnormality: one or more of cardiomegaly, reticular texture, effusion
        kind = rng.random((n, 3)) < np.array([0.5, 0.4, 0.4])
        none = ~kind.any(1)
        kind[none, rng.integers(0, 3, none.sum())] = True
        ctr = ctr + kind[:, 0] * s * _u(rng, 0.2, 0.35, n)
        ret = ret + kind[:, 1] * s * _u(rng, 0.12, 0.2, n)
        side = rng.random((n, 2)) < np.array([0.6, 0.6])
        side[~side.any(1), 0] = True
        eff = (kind[:, 2] * s)[:, None] * side * _u(rng, 0.3, 0.6, (n, 2))
    p["ctr"] = np.minimum(ctr, 0.72)     # a heart wider than ~3/4 of the thorax is implausible
    p["ret"] = np.minimum(ret, 0.3)
    p["ret_grid"] = rng.standard_normal((n, 1, 10, 10))
    p["eff"] = np.minimum(eff, 0.55)     # fluid up to about half the lung height
    p["opac"] = np.minimum(opac, 0.6)
    p["op_side"] = rng.choice([-1.0, 1.0], (n, _CHEST_MAX_OPACITIES))
    p["op_u"] = _u(rng, -0.45, 0.45, (n, _CHEST_MAX_OPACITIES))        # across the lung (fraction of width)
    p["op_v"] = rng.beta(2.0, 1.6, (n, _CHEST_MAX_OPACITIES)) * 0.75 + 0.1   # down the lung, lower zones favoured
    p["op_r"] = _u(rng, 0.2, 0.35, (n, _CHEST_MAX_OPACITIES))
    p["op_grid"] = rng.standard_normal((n, 1, 8, 8))
    return p


def _chest_render(p: Params, size: int, rng: np.random.Generator) -> torch.Tensor:
    n = len(p["s"])
    x0, y0 = _grid(size)
    px = 1.0 / size
    # ---- pose: scale, shift, small rotation of the whole patient
    t = _col(p["tilt"])
    sc = _col(p["scale"])
    xs, ys = (x0 - _col(p["shift"][:, 0])) / sc, (y0 - _col(p["shift"][:, 1])) / sc
    x = xs * torch.cos(t) + ys * torch.sin(t)
    y = -xs * torch.sin(t) + ys * torch.cos(t)
    # ---- body silhouette (soft tissue) on a dark background, shoulders widening upwards
    bw = _col(p["body_w"]) * (1 + 0.08 * (y < -0.5) * (-0.5 - y))
    body = torch.sigmoid((bw - x.abs()) / 0.04) * torch.sigmoid((y + 0.95) / 0.05)
    img = 0.06 + body * _col(p["body_level"])
    # ---- spine / mediastinum: brighter vertical band
    img = img + body * _col(p["spine"]) * torch.sigmoid((0.09 - x.abs()) / 0.03)
    # ---- lungs: two rounded fields, tapering to the apex, domed diaphragm at the base
    lx, lw, top = _col(p["lung_x"]), _col(p["lung_w"]), _col(p["lung_top"])
    lungs = []
    for side, sign in ((0, -1.0), (1, 1.0)):
        bot = _col(p["lung_bot"][:, side])
        cyl, hh = (top + bot) / 2, (bot - top) / 2
        vv = (y - cyl) / hh                                  # -1 apex .. 1 base
        width = lw * (0.55 + 0.45 * torch.sqrt(((vv + 1) / 2).clamp(0, 1)))
        uu = (x - sign * lx) / width
        dome = 0.12 * (1 - uu.clamp(-1, 1) ** 2)             # diaphragm higher medially
        base = bot - dome + 0.05
        lung = torch.sigmoid((1 - uu.abs() ** 2.5 - ((y - cyl) / hh).clamp(max=0).abs() ** 2.5) / 0.12)
        lung = lung * torch.sigmoid((base - y) / 0.03)
        # effusion: fluid fills the costophrenic angle, meniscus rising laterally
        eff = _col(p["eff"][:, side])
        lateral = (sign * uu).clamp(0, 1.5)
        fluid = torch.sigmoid((y - (base - eff * (1 + 0.8 * lateral))) / 0.03) * (eff > 0)
        lung = lung * (1 - fluid)
        lungs.append(lung)
    lung = torch.maximum(lungs[0], lungs[1])
    # ---- heart: soft-tissue ellipse over the lower medial lungs, shifted to the patient's left
    thorax = lx + lw
    hw = _col(p["ctr"]) * thorax
    hcx = 0.25 * hw
    hcy = _col(p["lung_bot"].mean(1)) - 0.22
    heart = torch.sigmoid((1 - torch.sqrt(((x - hcx) / hw) ** 2 + ((y - hcy) / 0.3) ** 2)) / 0.08)
    lung = lung * (1 - 0.9 * heart)
    img = img + 0.06 * heart * body
    # ---- lung texture: vascular markings everywhere, reticulation for the abnormal class
    vasc = _col(p["vasc"]) * _smooth(p["vasc_grid"], size)[:, 0]
    # reticulation: a net of thin lines along the zero crossings of a smooth noise field
    reticular = _col(p["ret"]) * torch.exp(-(_smooth(p["ret_grid"], size)[:, 0] / 0.35) ** 2) * 1.5
    img = img - lung * _col(p["lung_dark"]) + lung * (vasc + reticular)
    # ---- opacities: fluffy, noise-modulated blobs inside the lung fields
    fluff = 0.7 + 0.3 * torch.tanh(_smooth(p["op_grid"], size)[:, 0])
    for i in range(_CHEST_MAX_OPACITIES):
        ox = _col(p["op_side"][:, i]) * lx + _col(p["op_u"][:, i]) * lw
        oy = top + (_col(p["lung_bot"].mean(1)) - top) * _col(p["op_v"][:, i])
        d2 = ((x - ox) ** 2 + (y - oy) ** 2) / _col(p["op_r"][:, i]) ** 2
        img = img + lung * _col(p["opac"][:, i]) * torch.exp(-d2) * fluff
    # ---- ribs: posterior ribs sloping down laterally, visible over lungs and body; clavicles
    ribs = torch.zeros_like(img)
    for i in range(_CHEST_RIBS):
        yc = top - 0.05 + i * _col(p["rib_gap"]) + 0.22 * (x.abs() - 0.1).clamp(min=0) - 0.25 * (x.abs() - 0.45) ** 2
        ribs = torch.maximum(ribs, _ink(y - yc, _col(p["rib_w"]), px))
    img = img + body * (x.abs() > 0.08) * _col(p["rib_amp"]) * ribs
    clav_y = top - 0.02 + 0.12 * (x.abs() - 0.1)
    img = img + body * _col(p["clav"]) * _ink(y - clav_y, 0.03, px) * (x.abs() < 0.65)
    # ---- acquisition: side marker, exposure (gamma, contrast, brightness), noise
    mx, my = _col(p["marker_pos"][:, 0]), _col(p["marker_pos"][:, 1])
    marker = torch.sigmoid((0.04 - torch.maximum((x0 - mx).abs(), (y0 - my).abs())) / 0.01)
    img = torch.maximum(img, 0.95 * _col(p["marker"]) * marker)
    img = img.clamp(0, 1) ** _col(p["gamma"])
    img = (img - 0.4) * _col(p["contrast"]) + 0.4 + _col(p["bright"])
    img = img + _col(p["noise"]) * torch.from_numpy(rng.standard_normal((n, size, size), dtype=np.float32))
    return img.unsqueeze(1)


# --------------------------------------------------------------------------- public API

_BUILDERS: dict[str, tuple[Callable[[np.random.Generator, int, int], Params],
                           Callable[[Params, int, np.random.Generator], torch.Tensor]]] = {
    "synthetic-skin4": (_skin_params, _skin_render),
    "synthetic-chest3": (_chest_params, _chest_render),
}


def _validate(name: str, counts: Mapping[str, int], image_size: int) -> tuple[str, ...]:
    if name not in SYNTHETIC_CLASSES:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {', '.join(SYNTHETIC_CLASSES)}")
    classes = SYNTHETIC_CLASSES[name]
    for cls, count in counts.items():
        if cls not in classes:
            raise ValueError(f"unknown class {cls!r} in counts for {name}; classes: {', '.join(classes)}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise ValueError(f"count for class {cls!r} must be an integer, got {count!r}")
        if count < 0:
            raise ValueError(f"negative count {count} for class {cls!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    return classes


def generate(name: str, counts: dict[str, int], image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Returns (images uint8 [N, C, H, W], labels int64 [N], class_names).

    ``class_names`` is the full class tuple of ``name`` (labels index into it); classes missing from
    ``counts`` get no images. Deterministic for (name, counts, image_size, seed), independent of
    torch's global RNG and of the thread count. Samples are shuffled deterministically.
    Raises ValueError for an unknown name, an unknown class in ``counts``, a negative count or
    ``image_size`` < 16."""
    classes = _validate(name, counts, image_size)
    size = int(image_size)
    params_fn, render_fn = _BUILDERS[name]
    channels = SYNTHETIC_CHANNELS[name]
    tag = zlib.crc32(name.encode())
    seed_key = int(seed) % (1 << 64)   # SeedSequence wants non-negative entropy
    start = time.perf_counter()
    images: list[torch.Tensor] = []
    labels: list[np.ndarray] = []
    for c, cls in enumerate(classes):
        n = int(counts.get(cls, 0))
        if n == 0:
            continue
        # one stream per class: scene parameters and pixel noise drawn separately, so scenes do
        # not depend on the image size and one class's count does not change another's images
        ss_params, ss_pixels = np.random.SeedSequence([tag, seed_key, c]).spawn(2)
        params = params_fn(np.random.default_rng(ss_params), n, c)
        rng_px = np.random.default_rng(ss_pixels)
        for sl in _chunks(n, size):
            img = render_fn(_take(params, sl), size, rng_px)
            images.append(img.clamp_(0, 1).mul_(255).round_().to(torch.uint8))
        labels.append(np.full(n, c, dtype=np.int64))
    if not images:
        return (torch.zeros((0, channels, size, size), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64),
                list(classes))
    all_images = torch.cat(images)
    all_labels = np.concatenate(labels)
    order = np.random.default_rng(np.random.SeedSequence([tag, seed_key, 1 << 16])).permutation(len(all_labels))
    order_t = torch.from_numpy(order)
    log.debug("generated %s: %d images at %d px in %.2f s", name, len(order), size, time.perf_counter() - start)
    return all_images[order_t].contiguous(), torch.from_numpy(all_labels[order]), list(classes)
