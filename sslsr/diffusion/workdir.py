"""Opening a diffusion training workdir for inference: `open_sampler(path)` -> a `ResShiftSampler`.

A ResShift workdir (`config.recipe` in `DIFFUSION_RECIPES`) is self-contained: its checkpoints
hold the denoiser ('g', and 'ema' when the run keeps one) and the frozen autoencoder
('autoencoder'); `<workdir>/best` (`sslsr.train.validation.BestCheckpoint`) holds both under 'g'
as {'unet', 'autoencoder'}. `path` may be the workdir, its `best` folder or one checkpoint step
directory (`<workdir>/checkpoints/<step>`).
"""

from __future__ import annotations

import os

from flax import nnx

from sslsr.diffusion import networks
from sslsr.diffusion.sampler import ResShiftSampler
from sslsr.diffusion.schedule import Schedule
from sslsr.errors import UserError
from sslsr.weights import checkpoints

DIFFUSION_RECIPES = ("resshift",)


def is_diffusion_workdir(path: str | os.PathLike) -> bool:
    """Whether `path` is a workdir (or step directory) of a diffusion recipe."""
    try:
        root, _ = checkpoints.resolve(path)
    except FileNotFoundError:
        return False
    return checkpoints.load_config(str(root)).get("recipe") in DIFFUSION_RECIPES


def open_sampler(path: str | os.PathLike, *, sample_steps: int | None = None, seed: int | None = None,
                 dtype: str = "float32", prefer_ema: bool = True) -> ResShiftSampler:
    """The sampler of a diffusion workdir: its EMA denoiser (else the trained one) and autoencoder
    from the latest checkpoint (or the step given), the run's schedule respaced to `sample_steps`
    (default the run's `diffusion.sample_steps`), seeded with `seed` (default `diffusion.sample_seed`).

    Raises:
      UserError: one line naming the path: not a diffusion workdir, no checkpoint, or a checkpoint
        that does not restore into the networks its config describes; `sample_steps` out of range.
    """
    try:
        root, step = checkpoints.resolve(path)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    config = checkpoints.load_config(str(root))
    if config.get("recipe") not in DIFFUSION_RECIPES:
        raise UserError(f"{path}: a {config.get('recipe')!r} run, not a diffusion workdir")
    if sample_steps is not None and not 1 <= sample_steps <= int(config.diffusion.steps):
        raise UserError(f"--sample_steps: must be in [1, {config.diffusion.steps}] (the run's diffusion.steps), "
                        f"got {sample_steps}")
    unet, autoencoder = networks.build_unet(config), networks.build_autoencoder(config)
    nets = {"unet": nnx.state(unet)}
    if autoencoder is not None:
        nets["autoencoder"] = nnx.state(autoencoder)
    ckpt = checkpoints.Checkpointer(str(root), keep=1 << 30)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise UserError(f"{root / checkpoints.CKPT_DIR}: no checkpoint saved yet")
        saved = root / checkpoints.CKPT_DIR / str(step)
        if not saved.is_dir():
            raise UserError(f"{saved}: no such checkpoint step")
        if (saved / "opt_g").exists():  # a training checkpoint (<workdir>/best keeps no optimizer)
            item = "ema" if prefer_ema and (saved / "ema").exists() else "g"
            template = {item: nets["unet"], **({"autoencoder": nets["autoencoder"]} if autoencoder else {})}
            restored = ckpt.restore(step, template)
            state = {"unet": restored[item], **({"autoencoder": restored["autoencoder"]} if autoencoder else {})}
        else:  # <workdir>/best: the sampler's networks under 'g'
            state = ckpt.restore(step, {"g": nets})["g"]
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types for a checkpoint that does not fit
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"{root / checkpoints.CKPT_DIR}: checkpoint does not restore into the run's networks "
                        f"({type(e).__name__}: {first})") from None
    finally:
        ckpt.close()
    nnx.update(unet, state["unet"])
    if autoencoder is not None:
        nnx.update(autoencoder, state["autoencoder"])
    return networks.make_sampler(config, unet, autoencoder, sample_steps=sample_steps, seed=seed, dtype=dtype)


def open_published(denoiser: str, autoencoder: str, *, sample_steps: int | None = None, seed: int | None = None,
                   dtype: str = "float32") -> ResShiftSampler:
    """ResShift's published realsr x4 model from its two files (`resshift_realsrx4_s15_v1.pth`,
    `autoencoder_vq_f4.pth`): the constructors' defaults are that config's networks, and its process
    (T = 15, kappa 2, sqrt(eta) 0.02 -> 0.99), sf 4, ResShift's chopping; `sample_steps` respaces;
    `seed` defaults to ResShift's 12345.

    Raises UserError in one line naming the flag (--checkpoint / --autoencoder) and the file.
    """
    unet = networks.load_weights(denoiser, "ResShiftUNet", {}, "--checkpoint", "denoiser")
    ae = networks.load_weights(autoencoder, "VQAutoencoder", {}, "--autoencoder", "autoencoder")
    s = Schedule.resshift()
    if sample_steps is not None:
        if not 1 <= sample_steps <= s.num_steps:
            raise UserError(f"--sample_steps: must be in [1, {s.num_steps}], got {sample_steps}")
        s = s.respace(sample_steps)
    return ResShiftSampler(unet, ae, s, scale=4, seed=12345 if seed is None else seed, dtype=dtype)
