"""Annotated frames (OpenCV drawing) and their video / PNG-strip writers."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.bag.messages import FrameDetections
from dlrmamba_core.data.viz import draw_masks
from dlrmamba_core.errors import InputError

log = logging.getLogger(__name__)

# Distinct BGR-free RGB colours per class index (cycled).
_PALETTE = np.array([(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0),
                     (200, 64, 255), (0, 220, 220), (255, 128, 0), (160, 160, 160)], np.uint8)
GT_COLOR = (255, 255, 255)


def thermal_preview(thermal: np.ndarray, width: int) -> np.ndarray:
    """A false-colour (H', width, 3) uint8 RGB view of a raw thermal image (1-99 % stretch)."""
    t = thermal.astype(np.float32)
    lo, hi = np.percentile(t, (1, 99))
    gray = np.clip((t - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    height = max(1, round(thermal.shape[0] * width / thermal.shape[1]))
    gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def draw(rgb: np.ndarray, det: FrameDetections | None, gt: FrameDetections | None,
         class_names: list[str], caption: str = "",
         thermal: np.ndarray | None = None, masks: np.ndarray | None = None) -> np.ndarray:
    """Draw ground truth (thin white) and detections (class colour, label + score, and the
    instance mask of a segment model: a translucent fill and outline in the box's colour).

    Args:
        rgb: (H, W, 3) uint8 RGB; not modified.
        det: detections in RGB pixels, or None.
        gt: ground truth in RGB pixels, or None.
        class_names: class map used to pick colours.
        caption: text drawn in the top-left corner (stamp, latency ...).
        thermal: the paired raw thermal image, shown as a false-colour inset in the top-right
            corner (a quarter of the width), or None.
        masks: (N, H, W) {0, 1} instance masks in RGB pixels, row i for detection i of
            ``det`` (``Detections.masks``), or None.

    Returns:
        (H', W', 3) uint8 RGB with even H' and W' (video encoders need even sizes).
    """
    img = np.ascontiguousarray(rgb).copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 900)  # text size follows the image size
    if det is not None and masks is not None and len(masks):
        if len(masks) != len(det) or masks.shape[1:] != (h, w):
            raise InputError(f"masks {masks.shape} do not fit {len(det)} detections on a "
                             f"{w}x{h} image: pass (N, H, W) masks, row i for detection i")
        img = draw_masks(img, masks, np.array([_color_index(n, class_names) for n in
                                               det.class_names], np.int64), palette=_PALETTE)
    if gt is not None:
        for b in gt.boxes:
            x1, y1, x2, y2 = (round(float(v)) for v in b)
            cv2.rectangle(img, (x1, y1), (x2, y2), GT_COLOR, 1, cv2.LINE_AA)
    if det is not None:
        for b, s, n in zip(det.boxes, det.scores, det.class_names, strict=True):
            color = tuple(int(c) for c in _PALETTE[_color_index(n, class_names)
                                                   % len(_PALETTE)])
            x1, y1, x2, y2 = (round(float(v)) for v in b)
            cv2.rectangle(img, (x1, y1), (x2, y2), color, 2, cv2.LINE_AA)
            cv2.putText(img, f"{n} {s:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, color, 1, cv2.LINE_AA)
    if thermal is not None:
        inset = thermal_preview(thermal, max(8, w // 4))
        ih = min(inset.shape[0], h)
        img[:ih, w - inset.shape[1]:] = inset[:ih]
        cv2.rectangle(img, (w - inset.shape[1], 0), (w - 1, ih - 1), (255, 255, 255), 1)
    if caption:
        cv2.putText(img, caption, (4, int(14 * scale / 0.35)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (255, 255, 0), 1, cv2.LINE_AA)
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)))
    return img


def _color_index(name: str, class_names: list[str]) -> int:
    """Palette index of a class name: its class index, the last colour for unknown names."""
    return class_names.index(name) if name in class_names else len(_PALETTE) - 1


class AnnotatedVideo:
    """An MP4 (H.264 through imageio-ffmpeg) or, without an encoder, a PNG strip of frames.

    Args:
        mp4_path: where the video goes.
        strip_path: where the PNG strip goes when no encoder is available.
        fps: frame rate of the video (Hz).
        strip_frames: frames kept for the strip (evenly over the run).
    """

    def __init__(self, mp4_path: Path, strip_path: Path, fps: float,
                 strip_frames: int = 8) -> None:
        self.mp4_path, self.strip_path = mp4_path, strip_path
        self.fps = fps
        self.frames = 0
        self.kind = "mp4"
        self._writer: Any = None
        self._strip: list[np.ndarray] = []
        self._strip_every = 1
        self._strip_frames = strip_frames
        self.first_frame: np.ndarray | None = None
        try:
            import imageio.v2 as iio
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
            self._writer = iio.get_writer(str(mp4_path), format="FFMPEG", fps=fps,
                                          codec="libx264", pixelformat="yuv420p",
                                          macro_block_size=2, ffmpeg_log_level="error")
        except (ImportError, RuntimeError, OSError):
            self.kind = "png"

    def add(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame (all frames of one size)."""
        if self.first_frame is None:
            self.first_frame = frame
        if self._writer is not None:
            try:
                self._writer.append_data(frame)
            except KeyboardInterrupt:
                # Ctrl-C inside the encoder's generator ends it for good (the next frame would
                # raise StopIteration): give the MP4 up, the PNG strip still collects frames.
                self._give_up_mp4("interrupted while encoding")
                raise
            except (OSError, RuntimeError, StopIteration) as exc:
                self._give_up_mp4(f"the encoder failed ({exc!r})")
        # The strip keeps every k-th frame; k doubles when it is full (bounded memory).
        if self.frames % self._strip_every == 0:
            self._strip.append(frame)
            if len(self._strip) >= 2 * self._strip_frames:
                self._strip = self._strip[::2]
                self._strip_every *= 2
        self.frames += 1

    def preview_frame(self) -> np.ndarray | None:
        """A frame from the middle of the run (None before the first frame)."""
        if self._strip:
            return self._strip[len(self._strip) // 2]
        return self.first_frame

    def _give_up_mp4(self, why: str) -> None:
        """Stop the MP4 (its file is removed); :meth:`close` then writes the PNG strip."""
        writer, self._writer = self._writer, None
        self.kind = "png"
        log.warning("annotated video: %s; writing %s instead", why, self.strip_path.name)
        if writer is not None:
            with contextlib.suppress(Exception):  # a dead encoder may fail to close: it's gone
                writer.close()
        self.mp4_path.unlink(missing_ok=True)

    def close_as_strip(self) -> Path | None:
        """Finish quickly without the MP4 (after Ctrl-C while encoding): the PNG strip."""
        if self._writer is not None:
            self._give_up_mp4("stopped before the end of the encoding")
        return self.close()

    def abort(self) -> None:
        """Close the encoder after an error (the file is discarded with its directory)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def close(self) -> Path | None:
        """Finish the file; returns the MP4 or PNG path (None when no frame was added)."""
        if self._writer is not None:
            writer = self._writer
            try:
                writer.close()
            except KeyboardInterrupt:
                self._give_up_mp4("interrupted while finishing the encoding")
                raise
            except (OSError, RuntimeError, StopIteration) as exc:
                self._give_up_mp4(f"the encoder failed at the end ({exc!r})")
                return self.close()
            self._writer = None
            if self.frames == 0:
                self.mp4_path.unlink(missing_ok=True)
                return None
            return self.mp4_path
        if not self._strip:
            return None
        tiles = self._strip[:: max(1, len(self._strip) // self._strip_frames)][
            : self._strip_frames]
        row = np.concatenate(tiles, axis=1)  # (H, W * k, 3)
        cv2.imwrite(str(self.strip_path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        return self.strip_path
