"""Selective-scan operators: a readable reference and a chunked pure-PyTorch fast path."""

from dlrmamba_core.ops.selective_scan import (
    CHUNK,
    LEVELS,
    selective_scan_chunked,
    selective_scan_ref,
)

__all__ = ["CHUNK", "LEVELS", "selective_scan_chunked", "selective_scan_ref"]
