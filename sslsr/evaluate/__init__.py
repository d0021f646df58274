"""Evaluation: super-resolve benchmark datasets, score them, write reports.

- `protocol.evaluate(model, datasets, ...)`: the protocol loop (see its docstring for the outputs).
- `scoring.build_metrics`: PSNR/SSIM on Y, LPIPS-Alex, DISTS as functions on uint8 images.
- `datasets.dataset_source`: 'demo' or `<data_root>/<name>` in the BasicSR layout.
- `comparisons.comparison_strip`: bicubic | SR | HR crops where SR gains or loses most.
- `reports`: results.md / results.csv / results.json, `results_table`.

Inference (forward, tiling, self-ensemble, dtype) lives in `sslsr.inference`.
"""

from sslsr.evaluate.comparisons import comparison_strip
from sslsr.evaluate.protocol import evaluate
from sslsr.evaluate.reports import results_table
from sslsr.evaluate.scoring import LOWER_IS_BETTER, METRICS, build_metrics

__all__ = ["LOWER_IS_BETTER", "METRICS", "build_metrics", "comparison_strip", "evaluate", "results_table"]
