"""Diffusion super-resolution (ResShift): the residual-shifting process (`schedule`), the sampler
behind `sslsr.inference`'s Upscaler protocol (`sampler`), a run's networks from its config
(`networks`) and opening a diffusion training workdir for inference (`workdir`).

Layer 2: imports `sslsr.models`, `sslsr.data`, `sslsr.weights` and `sslsr.inference`; the training
recipe (`sslsr.train.recipes.resshift`) and the CLIs import it.
"""

from sslsr.diffusion.sampler import ResShiftSampler
from sslsr.diffusion.schedule import Schedule
from sslsr.diffusion.workdir import is_diffusion_workdir, open_published, open_sampler

__all__ = ["ResShiftSampler", "Schedule", "is_diffusion_workdir", "open_published", "open_sampler"]
