"""The SSL's edge mask, defined in `sslsr.edges` (NumPy only, so the data layer needs no losses)."""

from sslsr.edges import edge_mask, mask_stride_pattern

__all__ = ["edge_mask", "mask_stride_pattern"]
