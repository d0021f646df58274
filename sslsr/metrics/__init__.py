"""Image-quality metrics: PSNR/SSIM (BasicSR protocol, NumPy float64), LPIPS and DISTS (JAX)."""

from sslsr.metrics.dists import DISTS, MetricUnavailable, load_dists
from sslsr.metrics.lpips import LPIPS, load_lpips
from sslsr.metrics.psnr_ssim import psnr, rgb_to_y, ssim

__all__ = ["DISTS", "LPIPS", "MetricUnavailable", "load_dists", "load_lpips", "psnr", "rgb_to_y", "ssim"]
