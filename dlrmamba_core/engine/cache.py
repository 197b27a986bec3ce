"""A disk cache of network-ready samples, so GPU training is not bound by image decoding.

Decoding PNGs, normalizing 16-bit thermal and warping it into the letterboxed RGB frame costs
milliseconds per pair on a CPU core: when several small models train on one GPU, that (not
the GPU) sets the speed. ``dlrmamba train --cache DIR`` runs the shared pre-processing
(``data.preprocess.prepare_inputs``, the same code as the runtime) once per split and input
size and stores the result:

    DIR/<split>_<h>x<w>/
        rgb.npy       (N, 3, h, w) uint8   letterboxed RGB (exact: the network sees x / 255)
        thermal.npy   (N, 1, h, w) float16 normalized, registered thermal in [0, 1]
        labels.json   per sample: image_id, boxes (network pixels), labels, letterbox; with
                      masks (``--task segment``) also "masks": one COCO RLE per box of its
                      letterboxed instance mask at (h, w)
        meta.json     what the cache was built from (format, root, split, size, ids hash,
                      "masks": true when it holds masks)

A cache whose ``meta.json`` does not match the dataset (another root, split, size, or other
image ids) is rebuilt; it is written to a temporary folder and renamed into place, so a
killed build never leaves a half-written cache behind.

Training from the cache applies the same paired augmentation as the data package's
``DetectionDataset`` (``data.augment``: mosaic, flip, scale/translate, per-camera photometric
jitter, thermal misregistration) to the cached network-ready arrays; only the letterboxing and
thermal normalization are done once instead of per sample.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
import hashlib
import json
import logging
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dlrmamba_core.errors import DatasetError

log = logging.getLogger(__name__)

CACHE_FORMAT = "dlrmamba-sample-cache"
CACHE_VERSION = 1

# The dataset a worker process reads from (set before the pool forks, or by its initializer).
_POOL_PAIRS: Any = None
_POOL_HW: tuple[int, int] = (0, 0)
_POOL_MASKS = False


def _ids_hash(pairs: Any) -> str:
    ids = getattr(pairs, "image_ids", None)
    if ids is None:
        ids = [getattr(e, "image_id", str(i)) for i, e in enumerate(
            getattr(pairs, "entries", range(len(pairs))))]
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def cache_meta(data_format: str, root: str | os.PathLike[str], split: str | None,
               input_hw: tuple[int, int], pairs: Any, masks: bool = False) -> dict[str, Any]:
    """What identifies a cache: a cache is reused only when all of this matches.

    ``masks``: the cache holds instance masks too; the key is only present then, so the
    meta of a cache without masks is what it was before masks existed (no rebuild).
    """
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "data_format": data_format,
            "root": str(Path(root).resolve()), "split": split, "input_hw": list(input_hw),
            "num_samples": len(pairs), "ids_sha": _ids_hash(pairs),
            "class_names": list(pairs.class_names)}
    if masks:
        meta["masks"] = True
    return meta


def _prepare(i: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_masks
    from dlrmamba_core.data.masks import rle_encode
    from dlrmamba_core.data.preprocess import prepare_inputs

    load = getattr(_POOL_PAIRS, "load", None)
    s = load(i, masks=_POOL_MASKS) if load is not None else _POOL_PAIRS[i]
    p = prepare_inputs(s.rgb, s.thermal, s.homography, _POOL_HW)
    boxes = letterbox_boxes(np.asarray(s.boxes, np.float32).reshape(-1, 4), p.letterbox)
    rgb = np.rint(p.rgb * 255.0).astype(np.uint8)
    lb = p.letterbox
    rec = {"image_id": s.image_id, "boxes": np.round(boxes, 3).tolist(),
           "labels": np.asarray(s.labels, np.int64).reshape(-1).tolist(),
           "letterbox": {"src_hw": list(lb.src_hw), "dst_hw": list(lb.dst_hw),
                         "scale": float(lb.scale), "pad_x": int(lb.pad_x),
                         "pad_y": int(lb.pad_y), "new_hw": list(lb.new_hw)}}
    if _POOL_MASKS:
        if s.masks is None:
            raise DatasetError(f"pair {s.image_id} has no instance masks in a dataset that "
                               "has them; its reader is inconsistent")
        rec["masks"] = [rle_encode(m) for m in letterbox_masks(s.masks, lb)]
    return rgb, p.thermal.astype(np.float16), rec


def _init_worker(pairs: Any, hw: tuple[int, int], masks: bool = False) -> None:
    global _POOL_PAIRS, _POOL_HW, _POOL_MASKS
    _POOL_PAIRS, _POOL_HW, _POOL_MASKS = pairs, hw, masks
    torch.set_num_threads(1)


def build_cache(pairs: Any, input_hw: tuple[int, int], dest: str | os.PathLike[str],
                meta: dict[str, Any], workers: int = 0) -> Path:
    """Pre-process every sample of ``pairs`` into ``dest`` (atomically).

    Args:
        pairs: a ``PairDataset``.
        input_hw: network input (h, w).
        dest: cache folder (replaced when it exists).
        meta: :func:`cache_meta` of the dataset (written as ``meta.json``); with
            ``"masks"`` the instance masks are stored too.
        workers: processes (0: this process).

    Returns:
        ``dest``.
    """
    global _POOL_PAIRS, _POOL_HW, _POOL_MASKS
    masks = bool(meta.get("masks", False))
    dest = Path(dest)
    n = len(pairs)
    if n == 0:
        raise DatasetError(f"cache {dest}: the dataset has no pairs to cache")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        h, w = input_hw
        rgb_mm = np.lib.format.open_memmap(tmp / "rgb.npy", "w+", np.uint8, (n, 3, h, w))
        th_mm = np.lib.format.open_memmap(tmp / "thermal.npy", "w+", np.float16, (n, 1, h, w))
        records: list[dict[str, Any]] = []
        if workers > 0:
            with ProcessPoolExecutor(workers, initializer=_init_worker,
                                     initargs=(pairs, tuple(input_hw), masks)) as ex:
                results = ex.map(_prepare, range(n), chunksize=16)
                for i, (rgb, th, rec) in enumerate(results):
                    rgb_mm[i], th_mm[i] = rgb, th
                    records.append(rec)
        else:
            _POOL_PAIRS, _POOL_HW, _POOL_MASKS = pairs, tuple(input_hw), masks
            try:
                for i in range(n):
                    rgb, th, rec = _prepare(i)
                    rgb_mm[i], th_mm[i] = rgb, th
                    records.append(rec)
            finally:
                _POOL_PAIRS, _POOL_MASKS = None, False
        rgb_mm.flush()
        th_mm.flush()
        del rgb_mm, th_mm
        (tmp / "labels.json").write_text(json.dumps(records))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cached %d samples at %dx%d in %s", n, input_hw[0], input_hw[1], dest)
    return dest


class CachedDataset(Dataset):
    """Network-ready samples from a cache folder (the item layout of ``DetectionDataset``).

    Args:
        path: a folder written by :func:`build_cache`.
        augment: apply the paired training augmentation of ``data.augment`` (mosaic, flip,
            scale/translate, per-camera photometric jitter, thermal misregistration; global
            numpy RNG, which the trainer seeds per sample), as ``DetectionDataset`` does.
        augment_config: its settings (default ``AugmentConfig()``).
        masks: items carry instance masks (N, h / mask_stride, w / mask_stride) uint8, as
            ``DetectionDataset(masks=True)`` (the cache must hold them).
        mask_stride: the masks' downsampling factor from the network input.
        pairs: the ``PairDataset`` the cache was built from, kept as ``self.pairs`` (the
            ground-truth masks in original pixels for segm evaluation); None: not kept.

    Raises:
        DatasetError: ``masks`` on a cache without masks, or an unreadable cache.
    """

    def __init__(self, path: str | os.PathLike[str], augment: bool = False,
                 augment_config: Any = None, masks: bool = False, mask_stride: int = 4,
                 pairs: Any = None) -> None:
        from dlrmamba_core.data.augment import AugmentConfig

        self.augment_config = augment_config or AugmentConfig()
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
            self.records = json.loads((self.path / "labels.json").read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"sample cache {self.path} is unreadable ({e}); delete the "
                               "folder to rebuild it") from e
        self.augment = augment
        self.class_names = list(self.meta["class_names"])
        self.input_hw = tuple(self.meta["input_hw"])
        self._rgb: np.ndarray | None = None
        self._thermal: np.ndarray | None = None
        if len(self.records) != self.meta["num_samples"]:
            raise DatasetError(f"sample cache {self.path}: labels.json has "
                               f"{len(self.records)} samples, meta.json says "
                               f"{self.meta['num_samples']}; delete the folder to rebuild it")
        self.masks = bool(masks)
        self.mask_stride = int(mask_stride)
        if self.masks and not self.meta.get("masks"):
            raise DatasetError(f"sample cache {self.path} holds no instance masks; build it "
                               "with masks (cached_dataset(..., masks=True))")
        if pairs is not None:
            self.pairs = pairs

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        # Memory-mapped lazily, so each DataLoader worker maps the files itself.
        if self._rgb is None or self._thermal is None:
            self._rgb = np.load(self.path / "rgb.npy", mmap_mode="r")
            self._thermal = np.load(self.path / "thermal.npy", mmap_mode="r")
        return self._rgb, self._thermal

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rgb": None, "_thermal": None}

    def __len__(self) -> int:
        return len(self.records)

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rgb_a, th_a = self._arrays()
        rec = self.records[i]
        return (rgb_a[i].astype(np.float32) * np.float32(1.0 / 255.0),
                th_a[i].astype(np.float32),
                np.asarray(rec["boxes"], np.float32).reshape(-1, 4),
                np.asarray(rec["labels"], np.int64).reshape(-1))

    def _sample_with_masks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, np.ndarray]:
        """:meth:`_sample` and the masks (N, h, w) uint8 {0, 1} at the input size."""
        from dlrmamba_core.data.masks import rle_decode

        h, w = self.input_hw
        rles = self.records[i]["masks"]
        masks = np.stack([rle_decode(r) for r in rles]) if rles else np.zeros((0, h, w),
                                                                              np.uint8)
        return (*self._sample(i), masks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from dlrmamba_core.data.letterbox import Letterbox

        rec = self.records[i]
        masks = None
        if self.masks:
            rgb, thermal, boxes, labels, masks = self._sample_with_masks(i)
        else:
            rgb, thermal, boxes, labels = self._sample(i)
        meta: dict[str, Any] = {"image_id": rec["image_id"]}
        if self.augment:
            from dlrmamba_core.data.augment import train_augment

            if self.masks:
                (rgb, thermal, boxes, labels, masks), parts = train_augment(
                    i, len(self), (rgb, thermal, boxes, labels, masks),
                    self._sample_with_masks, self.augment_config)
            else:
                (rgb, thermal, boxes, labels), parts = train_augment(
                    i, len(self), (rgb, thermal, boxes, labels), self._sample,
                    self.augment_config)
            if parts is not None:
                meta["mosaic"] = parts
        lb = rec["letterbox"]
        meta["letterbox"] = Letterbox(tuple(lb["src_hw"]), tuple(lb["dst_hw"]), lb["scale"],
                                      lb["pad_x"], lb["pad_y"], tuple(lb["new_hw"]))
        item = {"rgb": torch.from_numpy(np.ascontiguousarray(rgb, np.float32)),
                "thermal": torch.from_numpy(np.ascontiguousarray(thermal, np.float32)),
                "boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.asarray(labels, np.int64).reshape(-1)),
                "meta": meta}
        if masks is not None:
            from dlrmamba_core.data.masks import downsample_masks

            item["masks"] = torch.from_numpy(np.ascontiguousarray(
                downsample_masks(masks, self.mask_stride)))
        return item


def cached_dataset(pairs: Any, data_format: str, root: str | os.PathLike[str],
                   split: str | None, input_hw: tuple[int, int],
                   cache_dir: str | os.PathLike[str], augment: bool,
                   workers: int = 0, masks: bool = False,
                   mask_stride: int = 4) -> CachedDataset:
    """The cache of one split at one input size: reused when it matches, else (re)built.

    Args:
        pairs: the split's ``PairDataset``.
        data_format, root, split: where ``pairs`` came from (recorded in the cache).
        input_hw: network input (h, w).
        cache_dir: the cache root (``--cache``).
        augment: training augmentation.
        workers: processes for building.
        masks: store and serve instance masks (``--task segment``; a separate cache folder,
            ``..._masks``, so a detection cache of the same split is left alone).
        mask_stride: the served masks' downsampling factor.
    """
    meta = cache_meta(data_format, root, split, input_hw, pairs, masks=masks)
    dest = Path(cache_dir) / (f"{split or 'all'}_{input_hw[0]}x{input_hw[1]}"
                              + ("_masks" if masks else ""))
    current = None
    if (dest / "meta.json").is_file():
        try:
            current = json.loads((dest / "meta.json").read_text())
        except ValueError:
            current = None
    if current != meta:
        if current is not None:
            log.warning("sample cache %s was built from other data; rebuilding it", dest)
        build_cache(pairs, input_hw, dest, meta, workers)
    return CachedDataset(dest, augment=augment, masks=masks, mask_stride=mask_stride,
                         pairs=pairs if masks else None)
