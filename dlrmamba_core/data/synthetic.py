"""Synthetic RGB + thermal benchmark (numpy/OpenCV only, deterministic from a seed).

All images here are SYNTHETIC. Every frame is rendered from one scene description by two
camera models:

- **RGB camera** (default 640x480): lighting, tint, fog transmission, sun glint/over-exposure,
  lens shading, read noise amplified by auto-exposure gain, uint8.
- **Thermal camera** (default 320x256, its own narrower field of view, a small offset and roll
  recorded as the thermal -> RGB homography of the rig): a temperature map (deg C) rendered in
  the RGB frame is warped into the thermal frame through the *actual* homography (calibration +
  per-frame misregistration jitter), blurred by the optics, and converted to 16-bit raw counts
  in centi-kelvin (``(T + 273.15) * 100``, like radiometric LWIR cores) with per-pixel gain
  non-uniformity, column fixed-pattern noise, vignetting and temporal noise.

Scenes: ``maritime`` (sky, horizon, waves, whitecaps, glint, optional shoreline with hot rocks;
small/large boats, people in the water, buoys) and ``aerial`` (nadir view of ground, roads,
trees, buildings, sheds and hot patches as bait; cars, vans, trucks).

Conditions defeat one modality or the other: ``day``, ``dusk``, ``night`` (RGB nearly black and
noisy), ``fog`` (RGB contrast gone with distance, LWIR mostly fine), ``glint`` (saturation),
``crossover`` (most objects at the background temperature). Whether each object can be seen in
each modality is **measured on the rendered pixels** (object vs surrounding ring contrast
against the ring's clutter, and the fraction of the object inside the thermal field of view)
and stored as ``visible[:, 0:2] = [rgb, thermal]``.

Every object also gets its **instance mask** in the RGB frame (``PairSample.masks``): the pixels
its parts cover in the rendered RGB image (the id map the renderer already draws for the
visibility measurement), so masks cost no extra random draws and the images do not change.
``write_frame_dataset`` stores them as COCO RLE in ``annotations.json`` and, on request, as
YOLO-seg polygons in ``labels/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
import functools
import json
import math
import os
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.data.types import PairSample
from dlrmamba_core.engine.fileio import write_text
from dlrmamba_core.errors import ConfigError

__all__ = [
    "CONDITIONS",
    "SCENES",
    "SYNTH_CLASSES",
    "SequenceFrame",
    "SynthConfig",
    "generate_frame",
    "generate_sequence",
    "rig_homography",
    "write_frame_dataset",
]

SYNTH_CLASSES: list[str] = ["small_boat", "large_boat", "person", "buoy", "car", "van", "truck"]
SCENES: tuple[str, ...] = ("maritime", "aerial")
CONDITIONS: tuple[str, ...] = ("day", "dusk", "night", "fog", "glint", "crossover")
_CLS = {n: i for i, n in enumerate(SYNTH_CLASSES)}
_REF_W = 640.0  # object sizes below are in pixels of a 640-wide RGB image
_KELVIN = 273.15


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the synthetic benchmark.

    Attributes:
        rgb_size: RGB (width, height), pixels.
        thermal_size: thermal (width, height), pixels.
        scenes: scene types drawn uniformly.
        condition_weights: relative frequency of each condition (keys from ``CONDITIONS``).
            The default puts two thirds of the frames in conditions that defeat one camera
            (night and fog defeat RGB, crossover defeats thermal), as on the night and fog
            shifts a boat or drone runs: a benchmark that mostly shows both cameras seeing
            everything cannot measure what fusion is for.
        objects_maritime: (min, max) objects per maritime frame.
        objects_aerial: (min, max) objects per aerial frame.
        thermal_fov: thermal horizontal field of view as a fraction of the RGB one.
        rig_seed: seed of the rig: calibration homography and fixed-pattern noise.
        misregistration_px: std of the per-frame registration jitter (RGB pixels at the
            thermal image corners); the recorded homography stays the calibration.
        crossover_hide: probability that an object (not a person) takes the background
            temperature under ``crossover``; people use half of it (body heat).
        min_rgb_contrast: RGB visibility threshold (mean colour distance, [0, 1] units).
        min_thermal_contrast_c: thermal visibility threshold (deg C).
        night_light: (min, max) scene illumination at ``night`` as a fraction of daylight
            (auto-exposure gain is capped at 40x, so below ~0.01 the RGB frame is mostly
            amplified read noise). Generator version 1 used (0.002, 0.006); at that level an
            RGB-only detector still found a third of the night objects, which real night
            (street or harbour light is ~1e-4 of daylight, moonlight ~1e-6) does not allow.
        fog_density: (min, max) fog density of ``fog`` (RGB transmission exp(-0.1 d z) at
            depth z; LWIR sees through it ~10x better).
    """

    rgb_size: tuple[int, int] = (640, 480)
    thermal_size: tuple[int, int] = (320, 256)
    scenes: tuple[str, ...] = SCENES
    condition_weights: tuple[tuple[str, float], ...] = (
        ("day", 0.12), ("dusk", 0.1), ("night", 0.24), ("fog", 0.2), ("glint", 0.1),
        ("crossover", 0.24),
    )
    objects_maritime: tuple[int, int] = (2, 7)
    objects_aerial: tuple[int, int] = (3, 10)
    thermal_fov: float = 0.85
    rig_seed: int = 0
    misregistration_px: float = 1.5
    crossover_hide: float = 0.85
    min_rgb_contrast: float = 0.06
    min_thermal_contrast_c: float = 0.8
    night_light: tuple[float, float] = (0.0005, 0.0015)
    fog_density: tuple[float, float] = (2.5, 4.5)

    def __post_init__(self) -> None:
        for name in ("rgb_size", "thermal_size"):
            w, h = getattr(self, name)
            if not (16 <= w <= 8192 and 16 <= h <= 8192):
                raise ConfigError(f"SynthConfig.{name}={(w, h)}: need 16..8192 pixels per side")
        for s in self.scenes:
            if s not in SCENES:
                raise ConfigError(f"unknown scene {s!r}: use {SCENES}")
        if not self.scenes:
            raise ConfigError("SynthConfig.scenes is empty")
        for c, wgt in self.condition_weights:
            if c not in CONDITIONS or wgt < 0:
                raise ConfigError(f"condition weight {c!r}={wgt}: conditions are {CONDITIONS}")
        if sum(w for _, w in self.condition_weights) <= 0:
            raise ConfigError("condition weights sum to 0")
        for name in ("night_light", "fog_density"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"SynthConfig.{name}=({lo}, {hi}): need 0 < min <= max")
        if not 0.3 <= self.thermal_fov <= 1.5:
            raise ConfigError(f"thermal_fov={self.thermal_fov}: need 0.3..1.5")


# --------------------------------------------------------------------------------------------
# Rig: calibration homography and thermal fixed-pattern noise (fixed per rig_seed and sizes)
# --------------------------------------------------------------------------------------------


def _similarity(cx: float, cy: float, angle: float, s: float, ox: float, oy: float) -> np.ndarray:
    """Translate (-ox, -oy), scale s, rotate angle (rad), translate (cx, cy)."""
    c, si = math.cos(angle), math.sin(angle)
    t1 = np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]], np.float64)
    rs = np.array([[s * c, -s * si, 0], [s * si, s * c, 0], [0, 0, 1]], np.float64)
    t2 = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], np.float64)
    return t2 @ rs @ t1


def rig_homography(cfg: SynthConfig) -> np.ndarray:
    """The calibrated thermal -> RGB homography of the synthetic rig (3, 3) float64."""
    rng = np.random.default_rng([cfg.rig_seed, 7])
    w, h = cfg.rgb_size
    tw, th = cfg.thermal_size
    s = cfg.thermal_fov * w / tw  # RGB pixels per thermal pixel
    cx = w / 2 + rng.uniform(-0.03, 0.03) * w  # lens offset between the two cameras
    cy = h / 2 + rng.uniform(-0.03, 0.03) * h
    hm = _similarity(cx, cy, math.radians(rng.uniform(-1.0, 1.0)), s, tw / 2, th / 2)
    # A little keystone: the cameras' optical axes are not exactly parallel.
    hm[2, 0] = rng.uniform(-2e-5, 2e-5) * _REF_W / w
    hm[2, 1] = rng.uniform(-2e-5, 2e-5) * _REF_W / w
    return hm / hm[2, 2]


@functools.lru_cache(maxsize=8)
def _thermal_fpn(rig_seed: int, tw: int, th: int) -> tuple[np.ndarray, np.ndarray]:
    """(gain (th, tw), offset (th, tw)) of the thermal sensor: FPN + vignetting, counts."""
    rng = np.random.default_rng([rig_seed, 11])
    gain = 1.0 + 0.004 * rng.standard_normal((th, tw)).astype(np.float32)
    col = 12.0 * rng.standard_normal(tw).astype(np.float32)  # column offsets (counts)
    yy, xx = np.mgrid[0:th, 0:tw].astype(np.float32)
    r2 = ((xx - tw / 2) / (tw / 2)) ** 2 + ((yy - th / 2) / (th / 2)) ** 2
    vign = -rng.uniform(120.0, 220.0) * r2 / 2.0  # housing/lens vignetting, counts
    offset = (col[None, :] + vign).astype(np.float32)
    return gain, offset


# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """One filled polygon of an object (or a bait/decoration layer).

    ``temp`` is (mode, a, b): mode "rel": T = T_ref + sun * a + run * b;
    mode "abs": T = a (deg C).
    """

    pts: np.ndarray  # (N, 2) float32, object-local coordinates (pixels, before placement)
    rgb: tuple[float, float, float]
    temp: tuple[str, float, float]
    in_box: bool = True
    shadow: bool = False


@dataclass
class _Obj:
    cls: int
    parts: list[_Part]
    cx: float
    cy: float
    angle: float  # radians
    scale: float
    vx: float = 0.0  # pixels / s (RGB frame)
    vy: float = 0.0
    running: float = 1.0
    hide_thermal: bool = False


@dataclass
class _Scene:
    scene: str
    condition: str
    rgb_base: np.ndarray  # (H, W, 3) float32 reflectance-ish colours, before lighting
    t_base: np.ndarray  # (H, W) float32 deg C
    tau_rgb: np.ndarray  # (H, W, 1) float32 fog transmission, RGB
    tau_th: np.ndarray  # (H, W) float32 fog transmission, LWIR
    fog_rgb: np.ndarray  # (3,) float32 airlight colour
    t_fog: float
    glint: np.ndarray | None  # (H, W) float32 additive radiance of glint
    objects: list[_Obj]
    t_ref: float
    sun: float
    light: float
    tint: np.ndarray
    exposure: float
    thermal_contrast: float
    info: dict[str, Any] = field(default_factory=dict)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 14) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1).astype(np.float32)


def _chamfer_rect(length: float, width: float, c: float) -> np.ndarray:
    x, y = length / 2, width / 2
    return np.array(
        [[-x + c, -y], [x - c, -y], [x, -y + c], [x, y - c], [x - c, y], [-x + c, y],
         [-x, y - c], [-x, -y + c]], np.float32,
    )


_HULL_COLOURS = [(0.92, 0.92, 0.9), (0.75, 0.15, 0.12), (0.15, 0.25, 0.6), (0.9, 0.75, 0.2),
                 (0.55, 0.57, 0.6), (0.2, 0.2, 0.22)]
_CAR_COLOURS = [(0.9, 0.9, 0.9), (0.1, 0.1, 0.12), (0.55, 0.56, 0.58), (0.7, 0.1, 0.1),
                (0.1, 0.2, 0.55), (0.25, 0.4, 0.3), (0.85, 0.8, 0.7), (0.8, 0.45, 0.1)]


def _pick(rng: np.random.Generator, seq: list[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _jit(rng: np.random.Generator, c: tuple[float, ...], s: float = 0.05) -> tuple[float, ...]:
    return tuple(float(np.clip(v + rng.normal(0, s), 0, 1)) for v in c)


def _small_boat(rng: np.random.Generator, size: float) -> list[_Part]:
    length = size * rng.uniform(34, 70)
    hh = 0.2 * length
    hull = np.array([[-0.5 * length, -hh], [0.5 * length, -1.35 * hh], [0.36 * length, 0],
                     [-0.46 * length, 0]], np.float32)
    cab = _rect(-0.25 * length, -hh - 0.75 * hh, 0.08 * length, -hh + 1)
    eng = _rect(-0.5 * length, -hh - 0.4 * hh, -0.4 * length, -0.3 * hh)
    wake = _ellipse(-0.75 * length, -0.05 * hh, 0.3 * length, 0.12 * hh)
    hull_c = _jit(rng, _pick(rng, _HULL_COLOURS))
    return [
        _Part(wake, (0.85, 0.88, 0.9), ("rel", 0.0, -0.4), in_box=False),
        _Part(hull, hull_c, ("rel", 4.0, 1.5)),
        _Part(cab, _jit(rng, (0.85, 0.85, 0.82)), ("rel", 5.0, 4.0)),
        _Part(eng, (0.3, 0.3, 0.3), ("rel", 2.0, rng.uniform(18, 40))),
    ]


def _large_boat(rng: np.random.Generator, size: float) -> list[_Part]:
    length = size * rng.uniform(90, 200)
    hh = 0.13 * length
    hull = np.array([[-0.5 * length, -hh], [0.5 * length, -1.45 * hh], [0.42 * length, 0],
                     [-0.47 * length, 0]], np.float32)
    t1 = _rect(-0.38 * length, -hh - 0.11 * length, -0.02 * length, -hh + 1)
    t2 = _rect(-0.32 * length, -hh - 0.19 * length, -0.12 * length, -hh - 0.1 * length)
    fun = _rect(-0.26 * length, -hh - 0.28 * length, -0.18 * length, -hh - 0.18 * length)
    return [
        _Part(hull, _jit(rng, _pick(rng, _HULL_COLOURS[1:])), ("rel", 5.0, 2.0)),
        _Part(t1, _jit(rng, (0.9, 0.9, 0.88)), ("rel", 6.0, 5.0)),
        _Part(t2, _jit(rng, (0.88, 0.88, 0.86)), ("rel", 6.0, 6.0)),
        _Part(fun, _jit(rng, _pick(rng, [(0.1, 0.1, 0.1), (0.7, 0.2, 0.1), (0.9, 0.8, 0.2)])),
              ("rel", 3.0, rng.uniform(35, 60))),
    ]


def _person(rng: np.random.Generator, size: float) -> list[_Part]:
    h = size * rng.uniform(16, 24)
    w = 0.8 * h
    r = 0.24 * h
    head = _ellipse(0, -h + r, r * 0.9, r)
    shoulders = np.array([[-w / 2, 0], [-0.42 * w, -0.45 * h], [-0.2 * w, -0.58 * h],
                          [0.2 * w, -0.58 * h], [0.42 * w, -0.45 * h], [w / 2, 0]], np.float32)
    vest = _pick(rng, [(0.95, 0.45, 0.05), (0.85, 0.1, 0.1), (0.95, 0.85, 0.1), (0.1, 0.1, 0.12)])
    skin = _pick(rng, [(0.85, 0.65, 0.5), (0.55, 0.38, 0.28), (0.1, 0.1, 0.1)])
    return [
        _Part(shoulders, _jit(rng, vest), ("rel", 2.0, rng.uniform(5, 9))),
        _Part(head, _jit(rng, skin), ("abs", rng.uniform(31, 35), 0.0)),
    ]


def _buoy(rng: np.random.Generator, size: float) -> list[_Part]:
    h = size * rng.uniform(18, 30)
    w = 0.5 * h
    body = np.array([[-w / 2, 0], [w / 2, 0], [0.33 * w, -0.62 * h], [-0.33 * w, -0.62 * h]],
                    np.float32)
    pole = _rect(-0.06 * w - 0.5, -h, 0.06 * w + 0.5, -0.6 * h)
    top = _ellipse(0, -h, 0.22 * w, 0.12 * h, 8)
    col = _pick(rng, [(0.85, 0.1, 0.1), (0.1, 0.6, 0.2), (0.95, 0.8, 0.1)])
    return [
        _Part(body, _jit(rng, col, 0.03), ("rel", 3.0, 0.0)),
        _Part(pole, (0.2, 0.2, 0.2), ("rel", 2.0, 0.0)),
        _Part(top, _jit(rng, col, 0.03), ("rel", 2.5, 0.0)),
    ]


def _car(rng: np.random.Generator, size: float) -> list[_Part]:
    length = size * rng.uniform(26, 36)
    w = 0.45 * length
    body_c = _jit(rng, _pick(rng, _CAR_COLOURS), 0.04)
    return [
        _Part(_chamfer_rect(length, w, 0.18 * w), body_c, ("rel", 6.0, 5.0)),
        _Part(_rect(0.1 * length, -0.4 * w, 0.26 * length, 0.4 * w), (0.08, 0.1, 0.13),
              ("rel", -1.0, -2.0)),
        _Part(_rect(-0.38 * length, -0.38 * w, -0.28 * length, 0.38 * w), (0.08, 0.1, 0.13),
              ("rel", -1.0, -2.0)),
        _Part(_rect(0.28 * length, -0.4 * w, 0.48 * length, 0.4 * w), body_c, ("rel", 6.0, 28.0)),
    ]


def _van(rng: np.random.Generator, size: float) -> list[_Part]:
    length = size * rng.uniform(36, 46)
    w = 0.48 * length
    body_c = _jit(rng, _pick(rng, [(0.92, 0.92, 0.92), (0.7, 0.72, 0.75), (0.9, 0.9, 0.85),
                                   (0.15, 0.2, 0.45)]), 0.03)
    return [
        _Part(_chamfer_rect(length, w, 0.08 * w), body_c, ("rel", 5.0, 4.0)),
        _Part(_rect(0.3 * length, -0.42 * w, 0.4 * length, 0.42 * w), (0.08, 0.1, 0.13),
              ("rel", -1.0, -2.0)),
        _Part(_rect(0.41 * length, -0.44 * w, 0.49 * length, 0.44 * w), body_c,
              ("rel", 5.0, 24.0)),
        _Part(_rect(-0.45 * length, -0.1 * w, 0.25 * length, 0.1 * w), _jit(rng, body_c, 0.06),
              ("rel", 4.0, 3.0)),
    ]


def _truck(rng: np.random.Generator, size: float) -> list[_Part]:
    length = size * rng.uniform(62, 95)
    w = 0.3 * length
    cab_c = _jit(rng, _pick(rng, _CAR_COLOURS), 0.04)
    trailer_c = _jit(rng, _pick(rng, [(0.9, 0.9, 0.9), (0.6, 0.6, 0.62), (0.2, 0.35, 0.6),
                                      (0.7, 0.15, 0.1)]), 0.03)
    reefer = rng.random() < 0.3  # refrigerated trailers are cold
    return [
        _Part(_rect(-0.5 * length, -0.5 * w, 0.27 * length, 0.5 * w), trailer_c,
              ("rel", 3.0, -8.0 if reefer else 3.0)),
        _Part(_chamfer_rect(0.2 * length, 0.92 * w, 0.1 * w) + np.float32([0.39 * length, 0]),
              cab_c, ("rel", 5.0, 22.0)),
        _Part(_rect(0.44 * length, -0.4 * w, 0.47 * length, 0.4 * w), (0.08, 0.1, 0.13),
              ("rel", -1.0, -2.0)),
        _Part(_rect(0.3 * length, 0.3 * w, 0.33 * length, 0.46 * w), (0.15, 0.15, 0.15),
              ("rel", 2.0, 45.0)),
    ]


_BUILDERS = {"small_boat": _small_boat, "large_boat": _large_boat, "person": _person,
             "buoy": _buoy, "car": _car, "van": _van, "truck": _truck}


def _transform(obj: _Obj, pts: np.ndarray, dt: float = 0.0) -> np.ndarray:
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    rot = np.array([[c, s], [-s, c]], np.float32)  # row-vector rotation by obj.angle
    return pts @ rot + np.float32([obj.cx + obj.vx * dt, obj.cy + obj.vy * dt])


def _obj_box(obj: _Obj, dt: float = 0.0) -> np.ndarray:
    pts = np.concatenate([_transform(obj, p.pts, dt) for p in obj.parts if p.in_box])
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                    np.float32)


def _overlaps(box: np.ndarray, boxes: list[np.ndarray], margin: float) -> bool:
    return any(
        box[0] - margin < b[2] and b[0] - margin < box[2] and box[1] - margin < b[3]
        and b[1] - margin < box[3] for b in boxes
    )


def _noise_field(rng: np.random.Generator, hw: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], (H, W) float32 (bicubic upsampled random grid)."""
    h, w = hw
    g = rng.uniform(-1, 1, (max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _cond_params(condition: str, rng: np.random.Generator,
                 cfg: SynthConfig | None = None) -> dict[str, Any]:
    cfg = cfg or SynthConfig()
    p: dict[str, Any] = {"sun": 1.0, "light": 1.0, "tint": (1.0, 1.0, 1.0), "exposure": 1.0,
                         "fog": 0.0, "glint": 0.0, "thermal_contrast": 1.0}
    if condition == "dusk":
        p.update(sun=0.5, light=rng.uniform(0.18, 0.35), tint=(1.15, 0.8, 0.6))
    elif condition == "night":
        # Starlight / harbour glow: ~0.5 % of daylight, bluish; auto-exposure amplifies noise.
        p.update(sun=0.05, light=rng.uniform(*cfg.night_light), tint=(0.7, 0.8, 1.1))
    elif condition == "fog":
        p.update(sun=0.5, light=rng.uniform(0.7, 1.0), fog=rng.uniform(*cfg.fog_density))
    elif condition == "glint":
        p.update(exposure=rng.uniform(1.5, 2.0), glint=1.0)
    elif condition == "crossover":
        p.update(sun=0.3, light=rng.uniform(0.55, 0.85), tint=(1.05, 0.95, 0.85),
                 thermal_contrast=0.4)
    return p


def _maritime(cfg: SynthConfig, rng: np.random.Generator, cond: dict[str, Any],
              sf: float) -> tuple[np.ndarray, ...]:
    w, h = cfg.rgb_size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y0 = h * rng.uniform(0.22, 0.42)
    slope = rng.uniform(-0.03, 0.03)
    hor = y0 + slope * (xx - w / 2)  # horizon row per column
    d = np.clip((yy - hor) / (h - y0), 1e-3, None)  # 0 at the horizon, ~1 at the bottom
    sea = yy > hor
    t_water = rng.uniform(6, 20)
    t_air = t_water + rng.uniform(-4, 6)
    # Sky: gradient, cold in LWIR (the clear sky radiates at a very low temperature).
    up = np.clip((hor - yy) / max(y0, 1.0), 0, 1)
    sky_top = np.float32(_jit(rng, (0.35, 0.55, 0.85)))
    sky_hor = np.float32(_jit(rng, (0.78, 0.84, 0.9)))
    rgb = sky_hor + (sky_top - sky_hor) * up[..., None]
    t = (t_air - 8 - 25 * up).astype(np.float32)
    # Sea: darker near the camera, waves compressed with distance (perspective).
    depth = 1.0 / d
    waves = (np.sin(depth * rng.uniform(3, 6) + xx * 0.05 / np.sqrt(depth) * rng.uniform(0.5, 1.5))
             * 0.5 + 0.5 * _noise_field(rng, (h, w), int(24 * sf)))
    sea_c = np.float32(_jit(rng, (0.08, 0.22, 0.3), 0.03))
    sea_rgb = sea_c + (sky_hor - sea_c) * np.exp(-3 * d)[..., None] * 0.6
    sea_rgb = sea_rgb + 0.05 * waves[..., None]
    rgb = np.where(sea[..., None], sea_rgb, rgb)
    t = np.where(sea, t_water + 0.35 * waves - 1.5 * np.exp(-4 * d), t).astype(np.float32)
    layers: list[tuple[np.ndarray, tuple[float, ...], float]] = []
    # Whitecaps (RGB bait for boats/buoys): white streaks, slightly cooler.
    for _ in range(int(rng.integers(5, 35))):
        y = float(rng.uniform(y0 + 4, h))
        dd = (y - y0) / (h - y0)
        rx, ry = sf * (3 + 18 * dd) * rng.uniform(0.5, 1.5), sf * (1 + 3 * dd)
        layers.append((_ellipse(rng.uniform(0, w), y, rx, ry, 10), (0.9, 0.92, 0.95), -0.6))
    # Floating debris: dark, near water temperature.
    for _ in range(int(rng.integers(0, 6))):
        y = float(rng.uniform(y0 + 10, h))
        dd = (y - y0) / (h - y0)
        r = sf * (2 + 6 * dd)
        layers.append((_ellipse(rng.uniform(0, w), y, r * 1.6, r * 0.6, 9), (0.2, 0.15, 0.1),
                       0.4))
    # Shoreline with rocks warmed by the sun (thermal bait).
    if rng.random() < 0.4:
        band = sf * rng.uniform(6, 20)
        hills = hor - band * (0.6 + 0.4 * _noise_field(rng, (1, w), int(40 * sf))[0])[None, :]
        land = (yy > hills) & (yy <= hor + 1)
        rgb = np.where(land[..., None], np.float32(_jit(rng, (0.25, 0.3, 0.2))), rgb)
        t = np.where(land, t_air + 3 * cond["sun"], t)
        for _ in range(int(rng.integers(1, 6))):
            x = float(rng.uniform(0, w))
            r = sf * rng.uniform(3, 9)
            y = float(y0 + slope * (x - w / 2) - r * 0.3)
            layers.append((_ellipse(x, y, r * 1.4, r, 9), (0.4, 0.37, 0.33),
                           t_air + rng.uniform(8, 20) * max(cond["sun"], 0.3) - t_water))
    for pts, col, dtemp in layers:
        cv2.fillPoly(rgb, [np.round(pts).astype(np.int32)], col)
        cv2.fillPoly(t, [np.round(pts).astype(np.int32)], float(t_water + dtemp))
    # Fog: transmission falls with distance (depth), LWIR ~10x less attenuated.
    # Fog distance ~ 2 + 3 / d: the near sea is a few fog lengths away, the horizon many.
    depth_all = np.where(sea, 2.0 + 3.0 * depth, 60.0).astype(np.float32)
    glint = None
    if cond["glint"] > 0:
        gx = rng.uniform(0.2, 0.8) * w
        spread = rng.uniform(0.12, 0.3) * w
        sparkle = np.clip(_noise_field(rng, (h, w), max(2, int(3 * sf))), 0, 1) ** 3
        glint = (np.exp(-(((xx - gx) / spread) ** 2)) * sea * (0.3 + 2.5 * sparkle)
                 * (0.4 + 0.6 * np.exp(-2 * d))).astype(np.float32)
    return rgb.astype(np.float32), t, depth_all, glint, t_water, float(y0), slope


def _aerial(cfg: SynthConfig, rng: np.random.Generator, cond: dict[str, Any],
            sf: float) -> tuple[np.ndarray, ...]:
    w, h = cfg.rgb_size
    t_air = rng.uniform(0, 30)
    sun = cond["sun"]
    mix = np.clip(0.5 + _noise_field(rng, (h, w), int(80 * sf)), 0, 1)[..., None]
    grass = np.float32(_jit(rng, (0.25, 0.4, 0.18), 0.04))
    soil = np.float32(_jit(rng, (0.48, 0.4, 0.3), 0.04))
    fine = _noise_field(rng, (h, w), max(2, int(4 * sf)))[..., None]
    rgb = grass + (soil - grass) * mix + 0.04 * fine
    t = (t_air + sun * (2 + 6 * mix[..., 0]) + 0.4 * fine[..., 0]).astype(np.float32)
    roads = []
    for _ in range(int(rng.integers(1, 4))):
        ang = rng.uniform(0, np.pi)
        px, py = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        rw = sf * rng.uniform(40, 70)
        roads.append((px, py, ang, rw))
        d = np.array([math.cos(ang), math.sin(ang)], np.float32) * 2 * (w + h)
        p0, p1 = (np.float32([px, py]) - d), (np.float32([px, py]) + d)
        thick = max(1, round(rw))
        ip0, ip1 = tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int))
        cv2.line(rgb, ip0, ip1, _jit(rng, (0.3, 0.3, 0.31), 0.03), thick)
        cv2.line(t, ip0, ip1, float(t_air + 3 + sun * rng.uniform(6, 14)), thick)
        n = np.array([-math.sin(ang), math.cos(ang)])
        for k in np.arange(-2 * (w + h), 2 * (w + h), 24 * sf):  # dashed centre line
            a = np.float32([px, py]) + np.float32([math.cos(ang), math.sin(ang)]) * k
            b = a + np.float32([math.cos(ang), math.sin(ang)]) * 10 * sf
            cv2.line(rgb, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)),
                     (0.85, 0.85, 0.8), max(1, round(1.5 * sf)))
        del n
    layers: list[tuple[np.ndarray, tuple[float, ...], float]] = []
    for _ in range(int(rng.integers(0, 3))):  # buildings: warm roofs, truck-sized bait
        bw, bh = sf * rng.uniform(60, 140), sf * rng.uniform(50, 110)
        pts = _rect(-bw / 2, -bh / 2, bw / 2, bh / 2)
        a = rng.uniform(0, np.pi)
        c, s = math.cos(a), math.sin(a)
        pts = pts @ np.array([[c, s], [-s, c]], np.float32) + np.float32(
            [rng.uniform(0, w), rng.uniform(0, h)])
        layers.append((pts, _jit(rng, _pick(rng, [(0.6, 0.25, 0.2), (0.5, 0.5, 0.52)])),
                       t_air + 4 + sun * rng.uniform(5, 15)))
    for _ in range(int(rng.integers(0, 5))):  # sheds/containers: van-sized, no engine heat
        lw = sf * rng.uniform(24, 44)
        pts = _rect(-lw / 2, -lw * 0.35, lw / 2, lw * 0.35)
        a = rng.uniform(0, np.pi)
        c, s = math.cos(a), math.sin(a)
        pts = pts @ np.array([[c, s], [-s, c]], np.float32) + np.float32(
            [rng.uniform(0, w), rng.uniform(0, h)])
        layers.append((pts, _jit(rng, _pick(rng, _CAR_COLOURS), 0.05), t_air + sun * 3))
    for _ in range(int(rng.integers(1, 7))):  # hot patches/rocks: thermal bait
        r = sf * rng.uniform(5, 14)
        pts = _ellipse(rng.uniform(0, w), rng.uniform(0, h), r * rng.uniform(0.7, 1.6), r, 9)
        pts += rng.normal(0, r * 0.15, pts.shape).astype(np.float32)
        layers.append((pts, _jit(rng, (0.42, 0.38, 0.34), 0.03),
                       t_air + rng.uniform(10, 25) * max(sun, 0.4)))
    for _ in range(int(rng.integers(4, 25))):  # trees: dark, cool
        r = sf * rng.uniform(8, 22)
        pts = _ellipse(rng.uniform(0, w), rng.uniform(0, h), r, r * rng.uniform(0.8, 1.2), 12)
        layers.append((pts, _jit(rng, (0.1, 0.22, 0.08), 0.03), t_air - 1.0))
    for pts, col, temp in layers:
        ip = [np.round(pts).astype(np.int32)]
        cv2.fillPoly(rgb, ip, col)
        cv2.fillPoly(t, ip, float(temp))
    depth = np.full((h, w), 7.0, np.float32)  # nadir view: one distance for the whole frame
    glint = None
    if cond["glint"] > 0:
        # Specular reflections off roofs / wet patches: sparse, saturating blobs.
        sparkle = np.clip(_noise_field(rng, (h, w), max(3, int(12 * sf))) - 0.3, 0, 1) ** 2
        glint = (3.0 * sparkle).astype(np.float32)
    return rgb.astype(np.float32), t, depth, glint, t_air, roads


def _place_maritime(cfg: SynthConfig, rng: np.random.Generator, y0: float, slope: float,
                    sf: float, n: int) -> list[_Obj]:
    w, h = cfg.rgb_size
    objs: list[_Obj] = []
    boxes: list[np.ndarray] = []
    names = ["small_boat", "large_boat", "person", "buoy"]
    probs = np.array([0.32, 0.16, 0.27, 0.25])
    for _ in range(n * 8):
        if len(objs) >= n:
            break
        name = names[int(rng.choice(4, p=probs))]
        x = float(rng.uniform(0.02, 0.98) * w)
        y_h = y0 + slope * (x - w / 2)
        y = float(rng.uniform(y_h + 0.04 * (h - y0), h - 2))
        dd = (y - y_h) / (h - y_h)
        scale = sf * (0.7 + 0.5 * dd)  # perspective: farther (near the horizon) is smaller
        obj = _Obj(_CLS[name], _BUILDERS[name](rng, scale), x, y, 0.0, scale)
        if rng.random() < 0.5:  # bow to the left
            for p in obj.parts:
                p.pts = p.pts * np.float32([-1, 1])
        speed = {"small_boat": 25, "large_boat": 10, "person": 1, "buoy": 0.3}[name] * sf
        obj.vx = float(speed * rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.5 else -1))
        obj.running = 1.0 if name in ("small_boat", "large_boat") and rng.random() < 0.8 else 0.2
        box = _obj_box(obj)
        if box[0] < 0 or box[2] > w or box[3] > h or box[1] < 0:
            continue
        if _overlaps(box, boxes, 2 * sf):
            continue
        objs.append(obj)
        boxes.append(box)
    # Painter's order: far objects first.
    objs.sort(key=lambda o: o.cy)
    return objs


def _place_aerial(cfg: SynthConfig, rng: np.random.Generator, roads: list[tuple[float, ...]],
                  sf: float, n: int) -> list[_Obj]:
    w, h = cfg.rgb_size
    alt = rng.uniform(0.8, 1.2)  # flight altitude changes every object's size together
    objs: list[_Obj] = []
    boxes: list[np.ndarray] = []
    names = ["car", "van", "truck"]
    probs = np.array([0.5, 0.3, 0.2])
    for _ in range(n * 10):
        if len(objs) >= n:
            break
        name = names[int(rng.choice(3, p=probs))]
        scale = sf * alt
        parts = _BUILDERS[name](rng, scale)
        if roads and rng.random() < 0.75:  # on a road, in a lane
            px, py, ang, rw = roads[int(rng.integers(len(roads)))]
            k = rng.uniform(-1, 1) * (w + h) / 2
            lane = 1 if rng.random() < 0.5 else -1
            off = lane * rw * 0.25
            x = px + math.cos(ang) * k - math.sin(ang) * off
            y = py + math.sin(ang) * k + math.cos(ang) * off
            angle = -ang if lane > 0 else -ang + np.pi  # driving direction per lane
            angle += rng.normal(0, 0.03)
            speed = sf * rng.uniform(15, 40)
            moving = True
        else:  # parked anywhere
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            angle = rng.uniform(0, 2 * np.pi)
            speed, moving = 0.0, False
        obj = _Obj(_CLS[name], parts, float(x), float(y), float(angle), scale)
        # Heading in image coordinates of the object's +x axis under _transform.
        obj.vx = float(speed * math.cos(-angle))
        obj.vy = float(speed * math.sin(-angle))
        obj.running = 1.0 if moving else float(rng.uniform(0.0, 0.3))
        box = _obj_box(obj)
        if box[0] < 1 or box[1] < 1 or box[2] > w - 1 or box[3] > h - 1:
            continue
        if _overlaps(box, boxes, 1 * sf):
            continue
        objs.append(obj)
        boxes.append(box)
    return objs


def _build_scene(cfg: SynthConfig, rng: np.random.Generator, scene: str | None = None,
                 condition: str | None = None) -> _Scene:
    if scene is None:
        scene = cfg.scenes[int(rng.integers(len(cfg.scenes)))]
    names = [c for c, _ in cfg.condition_weights]
    wts = np.array([wt for _, wt in cfg.condition_weights], np.float64)
    if condition is None:
        condition = names[int(rng.choice(len(names), p=wts / wts.sum()))]
    if scene not in SCENES or condition not in CONDITIONS:
        raise ConfigError(
            f"scene {scene!r} / condition {condition!r}: use {SCENES} / {CONDITIONS}"
        )
    cond = _cond_params(condition, rng, cfg)
    sf = cfg.rgb_size[0] / _REF_W
    if scene == "maritime":
        rgb, t, depth, glint, t_ref, y0, slope = _maritime(cfg, rng, cond, sf)
        objs = _place_maritime(cfg, rng, y0, slope, sf, int(rng.integers(
            cfg.objects_maritime[0], cfg.objects_maritime[1] + 1)))
    else:
        rgb, t, depth, glint, t_ref, roads = _aerial(cfg, rng, cond, sf)
        objs = _place_aerial(cfg, rng, roads, sf, int(rng.integers(
            cfg.objects_aerial[0], cfg.objects_aerial[1] + 1)))
    if condition == "crossover":
        for o in objs:
            p = cfg.crossover_hide * (0.5 if SYNTH_CLASSES[o.cls] == "person" else 1.0)
            o.hide_thermal = bool(rng.random() < p)
    beta = cond["fog"] / 10.0
    tau_rgb = np.exp(-beta * depth)[..., None].astype(np.float32)
    tau_th = np.exp(-0.08 * beta * depth).astype(np.float32)  # LWIR sees through fog ~10x better
    fog_rgb = np.float32(_jit(rng, (0.78, 0.8, 0.82), 0.03))
    return _Scene(
        scene=scene, condition=condition, rgb_base=rgb, t_base=t, tau_rgb=tau_rgb,
        tau_th=tau_th, fog_rgb=fog_rgb, t_fog=float(t_ref + 1.0), glint=glint, objects=objs,
        t_ref=float(t_ref), sun=cond["sun"], light=cond["light"],
        tint=np.float32(cond["tint"]), exposure=cond["exposure"],
        thermal_contrast=cond["thermal_contrast"],
    )


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _draw_objects(sc: _Scene, dt: float, rgb: np.ndarray | None, t: np.ndarray | None,
                  ids: np.ndarray) -> None:
    """Draw objects at time offset dt (s) into rgb/t (in place) and the id map (1-based)."""
    day_shadow = sc.sun > 0.4 and sc.scene == "aerial"
    for k, o in enumerate(sc.objects):
        if day_shadow and rgb is not None:
            sh = [np.round(_transform(o, p.pts, dt) + 2.5 * o.scale).astype(np.int32)
                  for p in o.parts if p.in_box]
            mask = np.zeros(ids.shape, np.uint8)
            cv2.fillPoly(mask, sh, 1)
            rgb[mask > 0] *= 0.55
        for p in o.parts:
            ip = [np.round(_transform(o, p.pts, dt)).astype(np.int32)]
            if rgb is not None:
                cv2.fillPoly(rgb, ip, p.rgb)
            if t is not None and not o.hide_thermal:
                mode, a, b = p.temp
                temp = a if mode == "abs" else sc.t_ref + sc.sun * a + o.running * b
                cv2.fillPoly(t, ip, float(temp))
            if p.in_box:
                cv2.fillPoly(ids, ip, k + 1)


def _render_rgb(sc: _Scene, cfg: SynthConfig, rng: np.random.Generator,
                dt: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (rgb uint8 (H, W, 3), pre-quantization float image, id map (H, W) int32)."""
    w, h = cfg.rgb_size
    refl = sc.rgb_base.copy()
    ids = np.zeros((h, w), np.int32)
    _draw_objects(sc, dt, refl, None, ids)
    radiance = refl * (sc.light * sc.tint)
    if sc.glint is not None:
        radiance = radiance + sc.glint[..., None] * sc.light
    radiance = radiance * sc.tau_rgb + sc.fog_rgb * sc.light * (1 - sc.tau_rgb)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 1 - 0.25 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / 2
    radiance *= shade[..., None]
    # Auto-exposure: scale the mean to ~0.45, up to 40x gain; read noise is amplified with it.
    gain = min(0.45 / max(float(radiance.mean()), 1e-6), 40.0) * sc.exposure
    read = rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(0.004)
    shot = rng.standard_normal((h, w, 3), dtype=np.float32) * np.sqrt(
        np.maximum(radiance, 0) * np.float32(1e-4))
    img = (radiance + read + shot) * np.float32(gain)
    np.clip(img, 0, 1, out=img)
    return (img * 255 + 0.5).astype(np.uint8), img, ids


def _render_thermal(sc: _Scene, cfg: SynthConfig, rng: np.random.Generator, h_act: np.ndarray,
                    dt: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (thermal uint16 (th, tw), observed deg C in the thermal frame, id map there)."""
    w, h = cfg.rgb_size
    tw, th = cfg.thermal_size
    t = sc.t_base.copy()
    if sc.thermal_contrast != 1.0:  # crossover flattens the whole scene, not only objects
        t = sc.t_ref + (t - sc.t_ref) * np.float32(sc.thermal_contrast)
    ids = np.zeros((h, w), np.int32)
    _draw_objects(sc, dt, None, t, ids)
    t = t * sc.tau_th + sc.t_fog * (1 - sc.tau_th)
    s = math.sqrt(abs(np.linalg.det(h_act[:2, :2])))  # RGB px per thermal px
    t = cv2.GaussianBlur(t, (0, 0), max(0.5, 0.5 * s))  # optics + detector footprint
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # h_act maps thermal px -> RGB px
    t_obs = cv2.warpPerspective(t, h_act, (tw, th), flags=flags, borderMode=cv2.BORDER_REFLECT)
    ids_t = cv2.warpPerspective(ids.astype(np.float32), h_act, (tw, th),
                                flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.int32)
    gain, offset = _thermal_fpn(cfg.rig_seed, tw, th)
    counts = (t_obs + _KELVIN) * 100.0 * gain + offset
    counts += rng.standard_normal((th, tw), dtype=np.float32) * np.float32(5.0)  # NETD ~50 mK
    return np.clip(counts + 0.5, 0, 65535).astype(np.uint16), t_obs, ids_t


def _contrast(img: np.ndarray, ids: np.ndarray, k: int, box: np.ndarray,
              ring: int) -> tuple[float, float, int]:
    """(|mean(object) - mean(ring)|, ring clutter std, object pixels) for object id k."""
    h, w = ids.shape
    x0, y0 = max(0, int(box[0]) - ring), max(0, int(box[1]) - ring)
    x1, y1 = min(w, math.ceil(box[2]) + ring), min(h, math.ceil(box[3]) + ring)
    if x1 <= x0 or y1 <= y0:
        return 0.0, 1.0, 0
    sub = ids[y0:y1, x0:x1]
    pix = img[y0:y1, x0:x1]
    obj = sub == k
    bg = sub == 0
    n = int(obj.sum())
    if n == 0 or bg.sum() < 4:
        return 0.0, 1.0, n
    mo = pix[obj].reshape(n, -1).mean(0)
    bgp = pix[bg].reshape(int(bg.sum()), -1)
    diff = float(np.linalg.norm(mo - bgp.mean(0)))
    std = float(np.linalg.norm(bgp.std(0)))
    return diff, std, n


def _visibility(sc: _Scene, cfg: SynthConfig, rgb_f: np.ndarray, ids_rgb: np.ndarray,
                t_obs: np.ndarray, ids_t: np.ndarray, h_act: np.ndarray, boxes: np.ndarray
                ) -> np.ndarray:
    vis = np.zeros((len(sc.objects), 2), bool)
    s = math.sqrt(abs(np.linalg.det(h_act[:2, :2])))  # RGB px per thermal px
    inv = np.linalg.inv(h_act)
    ring = max(3, round(4 * cfg.rgb_size[0] / _REF_W))
    for k in range(len(sc.objects)):
        d, std, n = _contrast(rgb_f, ids_rgb, k + 1, boxes[k], ring)
        # Visible when the object stands out of both the noise and the surrounding clutter.
        vis[k, 0] = n >= 12 and d >= max(cfg.min_rgb_contrast, 0.8 * std)
        bt = cv2.perspectiveTransform(boxes[k].reshape(2, 1, 2).astype(np.float64),
                                      inv).reshape(-1)
        bt_box = np.array([min(bt[0], bt[2]), min(bt[1], bt[3]),
                           max(bt[0], bt[2]), max(bt[1], bt[3])])
        dt_, std_t, nt = _contrast(t_obs, ids_t, k + 1, bt_box, max(2, round(ring / s)))
        expected = n / (s * s)
        vis[k, 1] = (nt >= 3 and nt >= 0.5 * expected
                     and dt_ >= max(cfg.min_thermal_contrast_c, 0.8 * std_t))
    return vis


def _jitter_h(cfg: SynthConfig, rng: np.random.Generator, h_cal: np.ndarray) -> np.ndarray:
    """Calibration homography perturbed by ~misregistration_px at the thermal corners."""
    if cfg.misregistration_px <= 0:
        return h_cal.copy()
    tw, th = cfg.thermal_size
    src = np.float32([[0, 0], [tw, 0], [tw, th], [0, th]]).reshape(-1, 1, 2)
    dst = cv2.perspectiveTransform(src.astype(np.float64), h_cal).astype(np.float32)
    dst += (rng.standard_normal(dst.shape) * cfg.misregistration_px).astype(np.float32)
    return cv2.getPerspectiveTransform(src.reshape(-1, 2), dst.reshape(-1, 2)).astype(np.float64)


def _boxes(sc: _Scene, cfg: SynthConfig, dt: float) -> tuple[np.ndarray, np.ndarray]:
    w, h = cfg.rgb_size
    if not sc.objects:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    b = np.stack([_obj_box(o, dt) for o in sc.objects])
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b.astype(np.float32), np.array([o.cls for o in sc.objects], np.int64)


def generate_frame(cfg: SynthConfig, seed: int, scene: str | None = None,
                   condition: str | None = None) -> PairSample:
    """Render one SYNTHETIC RGB + thermal pair, deterministic in (cfg, seed, scene, condition).

    Args:
        cfg: benchmark settings.
        seed: frame seed.
        scene: force ``"maritime"`` or ``"aerial"`` (None: drawn from ``cfg.scenes``).
        condition: force one of ``CONDITIONS`` (None: drawn with ``cfg.condition_weights``).

    Returns:
        A :class:`PairSample`: rgb (H, W, 3) uint8, thermal (th, tw) uint16 centi-kelvin,
        boxes in RGB pixels, labels into ``SYNTH_CLASSES``, the rig's calibrated homography,
        ``visible`` (N, 2) measured per modality, ``masks`` (N, H, W) uint8 {0, 1}: the RGB
        pixels each object covers (objects never overlap, so no mask is occluded; its tight
        box is the object's box within about a pixel of rounding), and meta (scene,
        condition, seed, true homography of this frame including the misregistration
        jitter).
    """
    rng = np.random.default_rng([int(seed), 1])
    sc = _build_scene(cfg, rng, scene, condition)
    h_cal = rig_homography(cfg)
    h_act = _jitter_h(cfg, rng, h_cal)
    rgb, rgb_f, ids_rgb = _render_rgb(sc, cfg, rng)
    thermal, t_obs, ids_t = _render_thermal(sc, cfg, rng, h_act)
    boxes, labels = _boxes(sc, cfg, 0.0)
    vis = _visibility(sc, cfg, rgb_f, ids_rgb, t_obs, ids_t, h_act, boxes)
    # Object k is drawn as id k + 1 (its box parts, in painter's order): its visible pixels.
    masks = (ids_rgb[None] == np.arange(1, len(boxes) + 1, dtype=np.int32)[:, None, None])
    return PairSample(
        rgb=rgb, thermal=thermal, boxes=boxes, labels=labels, homography=h_cal,
        image_id=f"{int(seed):08d}", visible=vis,
        meta={"scene": sc.scene, "condition": sc.condition, "seed": int(seed),
              "synthetic": True, "homography_true": h_act.tolist()},
        masks=masks.astype(np.uint8),
    )


# --------------------------------------------------------------------------------------------
# Sequences (for rosbags)
# --------------------------------------------------------------------------------------------


@dataclass
class SequenceFrame:
    """One timestamped frame of a SYNTHETIC sequence.

    Attributes:
        stream: ``"rgb"`` or ``"thermal"``.
        stamp_ns: capture time (ns) of this frame, with the camera's jitter.
        image: rgb (H, W, 3) uint8 or thermal (th, tw) uint16.
        boxes: (N, 4) float32 ground truth in RGB pixels at ``stamp_ns``.
        labels: (N,) int64 indices into ``SYNTH_CLASSES``.
        visible: (N, 2) bool [rgb, thermal] (measured on the RGB frame for RGB frames and on
            the thermal frame for thermal frames; the other column is from the scene).
        homography: (3, 3) calibrated thermal -> RGB.
        track_ids: (N,) int64, stable object ids across the sequence.
        masks: RGB frames: (N, H, W) uint8 {0, 1} instance masks in RGB pixels, row ``i``
            for box ``i`` (as ``PairSample.masks``; objects move, so one passing behind
            another keeps only its visible pixels); None for thermal frames.
    """

    stream: str
    stamp_ns: int
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    visible: np.ndarray
    homography: np.ndarray
    track_ids: np.ndarray
    masks: np.ndarray | None = None


def generate_sequence(
    cfg: SynthConfig,
    seed: int,
    duration_s: float = 5.0,
    rgb_hz: float = 30.0,
    thermal_hz: float = 9.0,
    scene: str | None = None,
    condition: str | None = None,
    start_ns: int = 1_700_000_000_000_000_000,
    jitter_ms: float = 2.0,
    thermal_offset_ms: float = 13.0,
) -> Iterator[SequenceFrame]:
    """Yield the frames of a SYNTHETIC sequence in time order (both streams interleaved).

    Objects move with constant velocity (boats along the horizon, vehicles along their lanes)
    and leave the image; the background is static. Each camera has its own rate, a constant
    phase offset and Gaussian stamp jitter.

    Args:
        cfg: benchmark settings.
        seed: sequence seed.
        duration_s: length (s).
        rgb_hz: RGB frame rate (Hz).
        thermal_hz: thermal frame rate (Hz).
        scene: force a scene (None: drawn).
        condition: force a condition (None: drawn).
        start_ns: time of the first RGB frame (ns).
        jitter_ms: std of each stamp's jitter (ms).
        thermal_offset_ms: phase offset of the thermal camera (ms).
    """
    if duration_s <= 0 or rgb_hz <= 0 or thermal_hz <= 0:
        raise ConfigError(
            f"sequence needs duration_s, rgb_hz, thermal_hz > 0, got {duration_s}, {rgb_hz}, "
            f"{thermal_hz}"
        )
    rng = np.random.default_rng([int(seed), 2])
    sc = _build_scene(cfg, rng, scene, condition)
    h_cal = rig_homography(cfg)
    h_act = _jitter_h(cfg, rng, h_cal)  # one rig misregistration per sequence
    w, h = cfg.rgb_size
    n_rgb = int(duration_s * rgb_hz)
    events: list[tuple[float, str]] = [(k / rgb_hz, "rgb") for k in range(n_rgb)]
    events += [(thermal_offset_ms / 1e3 + k / thermal_hz, "thermal")
               for k in range(int(duration_s * thermal_hz))]
    jit = rng.normal(0, jitter_ms / 1e3, len(events))
    timed = sorted(((max(0.0, t + j), t, s) for (t, s), j in zip(events, jit, strict=True)))
    for stamp, _, stream in timed:
        frame_rng = np.random.default_rng([int(seed), 3, int(stamp * 1e9)])
        boxes, labels = _boxes(sc, cfg, stamp)
        full = np.array([_obj_box(o, stamp) for o in sc.objects]).reshape(-1, 4)
        area = np.maximum(full[:, 2] - full[:, 0], 1) * np.maximum(full[:, 3] - full[:, 1], 1)
        inside = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / area
        if stream == "rgb":
            img, img_f, ids = _render_rgb(sc, cfg, frame_rng, stamp)
            t_obs, ids_t = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int32)
            vis = _visibility(sc, cfg, img_f, ids, t_obs, ids_t, h_act, boxes)
            vis[:, 1] = [not o.hide_thermal for o in sc.objects]
        else:
            img, t_obs, ids_t = _render_thermal(sc, cfg, frame_rng, h_act, stamp)
            ids = np.zeros((h, w), np.int32)
            rgb_f = np.zeros((h, w, 3), np.float32)
            vis = _visibility(sc, cfg, rgb_f, ids, t_obs, ids_t, h_act, boxes)
            vis[:, 0] = sc.condition != "night"
        keep = inside >= 0.5  # an object mostly out of the image is no longer annotated
        masks = None
        if stream == "rgb":
            kept = np.nonzero(keep)[0].astype(np.int32) + 1  # ids are 1-based object indices
            masks = (ids[None] == kept[:, None, None]).astype(np.uint8)
        yield SequenceFrame(
            stream=stream, stamp_ns=int(start_ns + round(stamp * 1e9)), image=img,
            boxes=boxes[keep], labels=labels[keep], visible=vis[keep], homography=h_cal,
            track_ids=np.nonzero(keep)[0].astype(np.int64), masks=masks,
        )


def with_sizes(cfg: SynthConfig, rgb_size: tuple[int, int] | None = None,
               thermal_size: tuple[int, int] | None = None) -> SynthConfig:
    """Copy of ``cfg`` with other image sizes (the CLI's --rgb-size / --thermal-size)."""
    return replace(cfg, rgb_size=rgb_size or cfg.rgb_size,
                   thermal_size=thermal_size or cfg.thermal_size)


def with_options(cfg: SynthConfig, items: list[str] | tuple[str, ...]) -> SynthConfig:
    """Copy of ``cfg`` with ``KEY=VALUE`` overrides of its scalar and tuple fields.

    ``["night_light=0.0005,0.0015", "crossover_hide=0.9"]`` sets those fields; a tuple field
    takes comma-separated numbers (as many as its default has).

    Raises:
        ConfigError: unknown field, wrong count or type of values.
    """
    from dataclasses import fields

    known = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        settable = sorted(k for k, v in known.items() if isinstance(v, (int, float))
                          or (isinstance(v, tuple) and v and all(isinstance(x, (int, float))
                                                                 for x in v)))
        if not sep or key not in settable:
            raise ConfigError(f"synthetic option {item!r}: write KEY=VALUE with KEY one of "
                              f"{settable}")
        default = known[key]
        try:
            if isinstance(default, tuple):
                vals = [type(d)(float(x)) if isinstance(d, int) else float(x)
                        for d, x in zip(default, value.split(","), strict=True)]
                changes[key] = tuple(vals)
            elif isinstance(default, int):
                changes[key] = int(value)
            else:
                changes[key] = float(value)
        except ValueError:
            raise ConfigError(f"synthetic option {item!r}: {key} takes "
                              f"{len(default) if isinstance(default, tuple) else 1} "
                              f"number(s) like {default}") from None
    return replace(cfg, **changes)


# --------------------------------------------------------------------------------------------
# Frame datasets on disk
# --------------------------------------------------------------------------------------------

DATASET_FORMAT = "dlrmamba-synth"
DATASET_VERSION = 1
#: Bumped whenever a default of :class:`SynthConfig` or the rendering changes the frames a seed
#: gives. Results record it, and results of different versions are never merged.
#: 1: first benchmark; 2: darker night (``night_light`` (0.002, 0.006) -> (0.0005, 0.0015)).
GENERATOR_VERSION = 2
DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))


def frame_seed(seed: int, index: int) -> int:
    """Seed of frame ``index`` of a dataset generated with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _split_counts(n: int, splits: tuple[tuple[str, float], ...]) -> list[tuple[str, int]]:
    if n <= 0:
        raise ConfigError(f"number of frames must be positive, got {n}")
    total = sum(f for _, f in splits)
    if total <= 0 or any(f < 0 for _, f in splits) or not splits:
        raise ConfigError(f"split fractions {splits} must be non-negative with a positive sum")
    counts = [int(n * f / total) for _, f in splits]
    counts[0] += n - sum(counts)  # the remainder goes to the first split (train)
    return [(name, c) for (name, _), c in zip(splits, counts, strict=True)]


def _yolo_seg_row(cls: int, mask: np.ndarray, box: np.ndarray, w: int, h: int) -> str:
    """``cls x1 y1 x2 y2 ...``: the mask's outline (its parts joined), normalized."""
    from dlrmamba_core.data.masks import join_polygons, mask_to_polygons

    poly = join_polygons(mask_to_polygons(mask))
    if len(poly) < 3:  # no visible pixel: the box outline keeps the row valid
        poly = np.float32([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]],
                           [box[0], box[3]]])
    xy = np.clip(poly / np.float32([w, h]), 0.0, 1.0).ravel()
    return f"{int(cls)} " + " ".join(f"{v:.6f}" for v in xy)


def _write_one(job: tuple[SynthConfig, str, str, int, int, str, bool]) -> dict[str, Any]:
    """Worker: render one frame and write its RGB, thermal and YOLO label files."""
    from dlrmamba_core.data.masks import rle_encode
    from dlrmamba_core.data.viz import write_image_atomic

    cfg, root, split, index, seed, rgb_ext, yolo_seg = job
    cv2.setNumThreads(1)  # one process per core; OpenCV threads would oversubscribe
    s = generate_frame(cfg, seed)
    stem = f"{index:06d}"
    base = os.path.join(root, split)
    rgb_rel, th_rel = f"rgb/{stem}{rgb_ext}", f"thermal/{stem}.png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if rgb_ext == ".jpg" else []
    write_image_atomic(os.path.join(base, rgb_rel), s.rgb, rgb=True, params=params)
    write_image_atomic(os.path.join(base, th_rel), s.thermal, rgb=False)
    h, w = s.rgb.shape[:2]
    masks = s.masks if s.masks is not None else np.zeros((0, h, w), np.uint8)
    lines = []
    for b, c, m in zip(s.boxes, s.labels, masks, strict=True):
        if yolo_seg:
            lines.append(_yolo_seg_row(int(c), m, b, w, h))
            continue
        cx, cy = (b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h
        lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}")
    write_text(os.path.join(base, "labels", f"{stem}.txt"), "\n".join(lines) + "\n")
    return {
        "index": index, "split": split, "stem": stem, "file_name": rgb_rel,
        "thermal_file": th_rel, "width": w, "height": h,
        "thermal_width": int(s.thermal.shape[1]), "thermal_height": int(s.thermal.shape[0]),
        "scene": s.meta["scene"], "condition": s.meta["condition"], "seed": seed,
        "homography": np.asarray(s.homography).tolist(),
        "homography_true": s.meta["homography_true"],
        "boxes": s.boxes.tolist(), "labels": s.labels.tolist(),
        "visible": np.asarray(s.visible).astype(int).tolist(),
        "segmentation": [rle_encode(m) for m in masks],
        "mask_area": [int(m.sum()) for m in masks],
    }


def _coco(records: list[dict[str, Any]]) -> dict[str, Any]:
    images, anns = [], []
    aid = 1
    for r in records:
        iid = r["index"] + 1
        img = {k: r[k] for k in ("file_name", "thermal_file", "width", "height", "thermal_width",
                                 "thermal_height", "scene", "condition", "seed", "homography",
                                 "homography_true")}
        img["id"] = iid
        images.append(img)
        for b, c, v, seg, area in zip(r["boxes"], r["labels"], r["visible"],
                                      r["segmentation"], r["mask_area"], strict=True):
            bw, bh = b[2] - b[0], b[3] - b[1]
            anns.append({
                "id": aid, "image_id": iid, "category_id": int(c) + 1,
                "bbox": [round(b[0], 2), round(b[1], 2), round(bw, 2), round(bh, 2)],
                # COCO's area is the segmentation's (pixels); it picks the small / medium /
                # large range of both bbox and segm evaluation.
                "segmentation": seg, "area": area, "iscrowd": 0,
                "visible_rgb": int(v[0]), "visible_thermal": int(v[1]),
            })
            aid += 1
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(SYNTH_CLASSES)]
    return {"info": {"description": "dlrmamba SYNTHETIC RGB-thermal benchmark"},
            "images": images, "annotations": anns, "categories": cats}


def write_frame_dataset(
    root: str | os.PathLike[str],
    n: int,
    splits: tuple[tuple[str, float], ...] = DEFAULT_SPLITS,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    workers: int = 1,
    rgb_ext: str = ".jpg",
    overwrite: bool = False,
    progress: bool = False,
    yolo_seg: bool = False,
) -> dict[str, Any]:
    """Generate a SYNTHETIC frame dataset on disk (layout in docs/data.md).

    ``root/dataset.json`` (format, classes, config, seed, split sizes, calibration homography);
    per split ``root/<split>/rgb/<id>.jpg``, ``thermal/<id>.png`` (16-bit),
    ``labels/<id>.txt`` (YOLO: ``cls cx cy w h`` normalized to the RGB image; with
    ``yolo_seg`` YOLO-seg rows ``cls x1 y1 x2 y2 ...``, the mask's outline) and
    ``annotations.json`` (COCO; category_id = class index + 1; images carry ``thermal_file``,
    ``homography``, ``scene``, ``condition``; annotations carry ``visible_rgb`` /
    ``visible_thermal`` and ``segmentation``, the instance mask as compressed COCO RLE, with
    ``area`` its pixel count).

    Masks are stored as RLE rather than polygons because RLE is the rendered pixels exactly
    (polygons would need a rasterization convention and lose a fraction of a pixel along
    every edge, a large share of a 15-pixel person) and pycocotools evaluates segm from it
    as it is. Frame ``i`` depends only on (cfg, seed, i): the same dataset comes out
    for any number of workers.

    Args:
        root: output directory (must be empty or absent, unless ``overwrite``).
        n: total number of frames.
        splits: (name, fraction) pairs.
        seed: dataset seed.
        cfg: generator settings (default :class:`SynthConfig`).
        workers: processes (1: in this process).
        rgb_ext: ``".jpg"`` (quality 95) or ``".png"``.
        overwrite: allow writing into a non-empty directory that holds a synthetic dataset.
        progress: show a tqdm progress bar.
        yolo_seg: write YOLO-seg polygon rows in ``labels/`` instead of box rows (a YOLO-seg
            trainer reads them; the boxes are the polygons' bounds there).

    Returns:
        The ``dataset.json`` content.
    """
    from dlrmamba_core.errors import DatasetError

    cfg = cfg or SynthConfig()
    if rgb_ext not in (".jpg", ".png"):
        raise ConfigError(f"rgb_ext {rgb_ext!r}: use '.jpg' or '.png'")
    rootp = os.fspath(root)
    if os.path.isdir(rootp) and os.listdir(rootp):
        is_synth = os.path.isfile(os.path.join(rootp, "dataset.json"))
        if not (overwrite and is_synth):
            raise DatasetError(
                f"output directory {rootp} is not empty: choose a new directory"
                + (" or pass overwrite=True / --overwrite" if is_synth else "")
            )
    os.makedirs(rootp, exist_ok=True)
    jobs = []
    start = 0
    counts = _split_counts(n, splits)
    for split, count in counts:
        for i in range(start, start + count):
            jobs.append((cfg, rootp, split, i, frame_seed(seed, i), rgb_ext, bool(yolo_seg)))
        start += count
    records: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="pair", desc="data gen")
    if workers <= 1:
        for job in jobs:
            records.append(_write_one(job))
            if bar is not None:
                bar.update()
    else:
        import multiprocessing as mp

        # spawn: no inherited OpenCV thread pools or locks from the parent.
        with mp.get_context("spawn").Pool(workers) as pool:
            for rec in pool.imap_unordered(_write_one, jobs, chunksize=4):
                records.append(rec)
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    records.sort(key=lambda r: r["index"])
    for split, _ in counts:
        recs = [r for r in records if r["split"] == split]
        os.makedirs(os.path.join(rootp, split), exist_ok=True)
        write_text(os.path.join(rootp, split, "annotations.json"),
                           json.dumps(_coco(recs)))
    info = {
        "format": DATASET_FORMAT, "version": DATASET_VERSION, "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "classes": SYNTH_CLASSES, "seed": int(seed),
        "splits": {s: c for s, c in counts},
        "config": json.loads(json.dumps(asdict(cfg))),
        "homography": rig_homography(cfg).tolist(),
        "segmentation": "coco_rle", "yolo_labels": "segment" if yolo_seg else "detect",
        "conditions": {c: sum(r["condition"] == c for r in records) for c in CONDITIONS},
    }
    write_text(os.path.join(rootp, "dataset.json"), json.dumps(info, indent=1))
    return info
