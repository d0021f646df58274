"""Plain inference: super-resolve image files with a trained generator.

  python -m sslsr.upscale photo.jpg photo_x4.png --checkpoint workdirs/esrgan_ssl
  python -m sslsr.upscale in_dir/ out_dir/ --checkpoint RealESRGAN_x4plus.pth --arch RRDBNet \
      --arch_kwargs num_block=23 --outscale 3.5 --suffix _out --ext auto

Images keep their layout (docs/inference.md): grey stays grey, alpha is kept (--alpha), 16-bit
PNGs are read and written with 16-bit samples. A folder input writes `<out>/<stem><suffix>.<ext>`
for every image in it and never writes into the input folder; an image that cannot be read is
reported at the end (exit status 2) after all the others were written. Images are tiled to one
fixed shape by default (--tile), so a folder of many sizes compiles once, and compilations are
kept in a persistent cache across runs.

The flags naming the model and how it runs (--checkpoint, --arch, --arch_kwargs, --scale, --tile,
--tile_overlap, --self_ensemble, --dtype; for diffusion models --sample_steps, --sample_seed,
--autoencoder: docs/diffusion.md) are defined here once; `eval.py` uses them too.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import sys

from absl import flags

from sslsr.cli import UserError, parse_kwargs, run

CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "srvgg-x4-psnr",
    "Training workdir, a .pth/.safetensors weights file, or a named model (sslsr.weights.zoo). Default: the "
    "x4 model shipped in the package (configs/srvgg_psnr.py).",
)
ARCH = flags.DEFINE_string("arch", None, "Architecture of a weights file, e.g. RRDBNet, MSRResNet or SwinIR.")
ARCH_KWARGS = flags.DEFINE_list("arch_kwargs", [], "Constructor arguments for --arch, e.g. num_block=23,num_feat=64.")
DEFAULT_TILE = 256  # LR pixels: one compiled shape for every image, and bounded memory

SCALE = flags.DEFINE_integer("scale", None, "SR factor (default: the model's own; must agree with it).")
TILE = flags.DEFINE_integer(
    "tile", None,
    f"LR tile size; 0: whole images (one compilation per image size). Default: {DEFAULT_TILE} for upscale (every "
    "image runs as tiles of exactly this shape, smaller ones reflect-padded), whole images for eval.py.",
)
TILE_OVERLAP = flags.DEFINE_integer("tile_overlap", 32, "LR pixels shared by neighbouring tiles.")
SELF_ENSEMBLE = flags.DEFINE_bool("self_ensemble", False, "Average over the 8 flips/transposes (x8 self-ensemble).")
DTYPE = flags.DEFINE_string("dtype", "float32", "float32 | bfloat16 | float16: the model's parameters and activations.")
BF16 = flags.DEFINE_bool("bf16", False, "Same as --dtype=bfloat16 (kept for existing command lines).")
# Diffusion models only (sslsr.diffusion: configs/resshift*.py workdirs, ResShift's published files).
SAMPLE_STEPS = flags.DEFINE_integer(
    "sample_steps", None, "Diffusion checkpoints: sampling steps, 1..T (fewer: respaced like ResShift's "
    "SpacedDiffusion). Default: the run's diffusion.sample_steps (all T = 15 for ResShift).")
SAMPLE_SEED = flags.DEFINE_integer("sample_seed", None, "Diffusion checkpoints: the sampling seed (default: the "
                                   "run's diffusion.sample_seed); an image's output depends on it and the image only.")
AUTOENCODER = flags.DEFINE_string(
    "autoencoder", None, "ResShift's autoencoder_vq_f4.pth, with --checkpoint resshift_realsrx4_s15_v1.pth: runs "
    "ResShift's published x4 model (seed default 12345).")

# Only `python -m sslsr.upscale` reads these (eval.py writes RGB PNGs at the model's scale).
ALPHA = flags.DEFINE_enum(
    "alpha", "bicubic", ["bicubic", "model"],
    "How an alpha channel is upscaled: MATLAB bicubic, or run through the model as a grey image.",
)
OUTSCALE = flags.DEFINE_float(
    "outscale", None, "Final factor (default: the model's): the SR output is resized by MATLAB bicubic to "
    "ceil(LR size * outscale), e.g. 3.5 from a x4 model.",
)
EXT = flags.DEFINE_enum(
    "ext", "auto", ["auto", "png", "jpg", "jpeg", "webp"],
    "Output format of folder outputs; auto: the input's (png for other formats). Images with alpha "
    "are written as png instead of jpg; 16-bit samples are kept in png only.",
)
SUFFIX = flags.DEFINE_string("suffix", "", "Added to each output file's stem, e.g. _out: a.jpg -> a_out.jpg.")


def load_upscaler():
    """The model the flags name, ready for inference (`sslsr.inference.NetworkUpscaler`).

    Raises:
      UserError: --dtype, --arch or --arch_kwargs unknown, or --scale contradicting the model's
        scale (all checked before the weights are read where the flags alone tell); the weights
        layer's errors name the file.
    """
    from sslsr.inference import NetworkUpscaler
    from sslsr.models.precision import compute_dtype
    from sslsr.weights import load_generator

    # Checked here, not by absl, so that importing this module (eval.py, tests) adds no validator
    # that other CLIs' command lines would have to satisfy.
    if not CHECKPOINT.value:
        raise UserError("--checkpoint: required (a training workdir, or a .pth/.safetensors file with --arch)")
    dtype = "bfloat16" if BF16.value else DTYPE.value
    try:
        compute_dtype(dtype)
    except ValueError as e:
        raise UserError(f"--dtype: {e}") from None
    if _is_diffusion():
        from sslsr.diffusion import open_published, open_sampler

        if AUTOENCODER.value:
            sampler = open_published(CHECKPOINT.value, AUTOENCODER.value, sample_steps=SAMPLE_STEPS.value,
                                     seed=SAMPLE_SEED.value, dtype=dtype)
        else:
            sampler = open_sampler(CHECKPOINT.value, sample_steps=SAMPLE_STEPS.value, seed=SAMPLE_SEED.value,
                                   dtype=dtype)
        if SCALE.value is not None and SCALE.value != sampler.scale:
            raise UserError(f"--scale: {SCALE.value}, but {CHECKPOINT.value} upscales x{sampler.scale}")
        return sampler
    for flag in (SAMPLE_STEPS, SAMPLE_SEED):
        if flag.value is not None:
            raise UserError(f"--{flag.name}: only for diffusion checkpoints; {CHECKPOINT.value} is not one")
    kwargs = parse_kwargs(ARCH_KWARGS.value)
    _check_arch(kwargs)
    model = load_generator(CHECKPOINT.value, arch=ARCH.value, **kwargs)
    try:
        return NetworkUpscaler(model, scale=SCALE.value, dtype=dtype)
    except ValueError as e:
        raise UserError(f"--scale: {e}") from None


def _check_arch(kwargs: dict) -> None:
    """--arch, --arch_kwargs and --scale against the registry, before any weights are read."""
    if ARCH.value is None or pathlib.Path(CHECKPOINT.value).is_dir():  # a workdir's config names its model
        return
    from sslsr.models import registry

    generators = registry.names(registry.GENERATOR)
    if ARCH.value not in generators:
        raise UserError(f"--arch: unknown generator {ARCH.value!r}; expected one of {', '.join(generators)}")
    arch = registry.architecture(ARCH.value)
    # NNX modules' metaclass hides the constructor's signature behind (*args, **kwargs).
    ctor = arch.constructor
    is_class = isinstance(ctor, type)
    try:
        inspect.signature(ctor.__init__ if is_class else ctor).bind_partial(
            *((None,) if is_class else ()), **arch.kwargs(**kwargs)
        )
    except TypeError as e:
        raise UserError(f"--arch_kwargs: {ARCH.value}: {e}") from None
    # Only a scale spelled out in --arch_kwargs: otherwise the weights file decides (its keys or
    # metadata, e.g. an RRDBNet x2), which the NetworkUpscaler check covers after loading.
    if SCALE.value is not None and arch.scale_kwarg in kwargs and SCALE.value != arch.scale(kwargs):
        raise UserError(f"--scale: {SCALE.value}, but {ARCH.value} with these --arch_kwargs upscales "
                        f"x{arch.scale(kwargs)}")


def _is_diffusion() -> bool:
    """--checkpoint is a diffusion training workdir, or a denoiser file with --autoencoder (a
    sampler, not a generator, runs)."""
    if AUTOENCODER.value:
        return True
    if not pathlib.Path(CHECKPOINT.value).is_dir():
        return False
    from sslsr.diffusion import is_diffusion_workdir

    return is_diffusion_workdir(CHECKPOINT.value)


def _tile() -> int | None:
    """The LR tile size the flags give (None: whole images), checked before anything is loaded."""
    # A diffusion sampler chops large images itself, as ResShift does (sslsr.diffusion.sampler).
    default = 0 if CHECKPOINT.value and _is_diffusion() else DEFAULT_TILE
    tile = default if TILE.value is None else TILE.value
    if tile < 0:
        raise UserError(f"--tile: must be >= 0 (0: whole images), got {tile}")
    if tile and not 0 <= TILE_OVERLAP.value < tile:
        raise UserError(f"--tile_overlap: must be in [0, --tile={tile}), got {TILE_OVERLAP.value}")
    return tile or None


@dataclasses.dataclass(frozen=True)
class Job:
    src: pathlib.Path
    dst: pathlib.Path
    named_here: bool  # dst built from --suffix/--ext (so an alpha image may switch jpg -> png)


def _output_name(src: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    from sslsr.data.io import WRITE_FORMATS

    ext = EXT.value
    if ext == "auto":
        ext = src.suffix.lower()[1:] if src.suffix.lower() in WRITE_FORMATS else "png"
    return folder / f"{src.stem}{SUFFIX.value}.{ext}"


def _jobs(src: pathlib.Path, dst: pathlib.Path) -> list[Job]:
    """Every (input, output) pair, after refusing outputs that would land on inputs or on each other."""
    from sslsr.data.datasets import check_output_dir
    from sslsr.data.io import WRITE_FORMATS, list_images

    if os.sep in SUFFIX.value or "/" in SUFFIX.value:
        raise UserError(f"--suffix: must be a file-name part, got {SUFFIX.value!r}")
    if src.is_dir():
        if dst.suffix:
            raise UserError(f"{dst}: the input is a folder, so the output must be a folder too")
        if dst.exists() and not dst.is_dir():
            raise UserError(f"{dst}: exists and is not a folder")
        check_output_dir(src, dst, "SR images")
        try:
            files = list_images(src)
        except ValueError as e:
            raise UserError(str(e)) from None
        jobs = [Job(p, _output_name(p, dst), True) for p in files]
    elif not src.is_file():
        raise UserError(f"{src}: no such file or folder")
    elif dst.suffix:
        if dst.suffix.lower() not in WRITE_FORMATS:
            raise UserError(f"{dst}: cannot write {dst.suffix!r} files (expected {', '.join(WRITE_FORMATS)})")
        jobs = [Job(src, dst, False)]
    else:
        jobs = [Job(src, _output_name(src, dst), True)]
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for job in jobs:
        out = job.dst.resolve()
        if out == job.src.resolve():
            raise UserError(f"{job.dst}: would overwrite the input image; choose another output")
        if out in seen:
            raise UserError(f"{job.dst}: both {seen[out].name} and {job.src.name} would be written here (see --ext)")
        seen[out] = job.src
    return jobs


def compilation_cache_dir() -> str:
    """$JAX_COMPILATION_CACHE_DIR when set, else $XDG_CACHE_HOME/sslsr/jax (~/.cache/sslsr/jax)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sslsr", "jax")


def _enable_compilation_cache() -> None:
    # A new process then reuses the tile shape's compiled forward instead of compiling it again.
    # JAX reads JAX_COMPILATION_CACHE_DIR itself; a caller that
    # configured a cache keeps it.
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", compilation_cache_dir())


def _upscale_one(upscaler, job: Job, tile: int | None) -> tuple[pathlib.Path, tuple[int, ...]]:
    """Reads, super-resolves and writes one image; returns the path written and the output shape."""
    import numpy as np

    from sslsr.data.imresize import imresize
    from sslsr.data.io import read_image_unchanged, to_uint8, write_image
    from sslsr.inference import super_resolve_image

    img = read_image_unchanged(job.src)
    sixteen = img.dtype == np.uint16
    sr = super_resolve_image(
        upscaler, img.astype(np.float32) / (65535.0 if sixteen else 255.0), alpha=ALPHA.value, tile=tile,
        tile_overlap=TILE_OVERLAP.value, self_ensemble=SELF_ENSEMBLE.value, pad_to_tile=tile is not None,
    )
    if OUTSCALE.value is not None and OUTSCALE.value != upscaler.scale:
        sr = np.clip(imresize(sr, OUTSCALE.value / upscaler.scale), 0.0, 1.0)
    dst = job.dst
    has_alpha = sr.ndim == 3 and sr.shape[2] in (2, 4)
    if has_alpha and job.named_here and dst.suffix.lower() in (".jpg", ".jpeg"):
        dst = dst.with_suffix(".png")  # JPEG has no alpha (Real-ESRGAN does the same)
    if sixteen and dst.suffix.lower() == ".png":
        out = np.round(np.clip(sr, 0.0, 1.0) * 65535.0).astype(np.uint16)
    else:
        out = to_uint8(sr)
    write_image(dst, out)
    return dst, out.shape


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise UserError("expected two arguments, the input image or folder and the output image or folder")
    from tqdm import tqdm

    # Cheap checks first: flags and paths, then the model, then the images.
    tile = _tile()
    if OUTSCALE.value is not None and not OUTSCALE.value > 0:
        raise UserError(f"--outscale: must be > 0, got {OUTSCALE.value}")
    src = pathlib.Path(argv[1])
    jobs = _jobs(src, pathlib.Path(argv[2]))
    _enable_compilation_cache()
    upscaler = load_upscaler()
    failed = []
    for job in tqdm(jobs, unit="img", disable=len(jobs) == 1):
        try:
            dst, shape = _upscale_one(upscaler, job, tile)
        except (ValueError, OSError) as e:  # this image (or its output) only: the others still run
            msg = str(e)
            if len(jobs) == 1:
                raise UserError(msg if msg.startswith(str(job.src)) else f"{job.src}: {msg}") from None
            failed.append(msg if msg.startswith(str(job.src)) or msg.startswith(str(job.dst)) else f"{job.src}: {msg}")
            continue
        print(f"{job.src} -> {dst} ({shape[1]}x{shape[0]})", file=sys.stderr)
    if failed:
        for line in failed:
            print(f"failed: {line}", file=sys.stderr)
        raise UserError(f"{src}: {len(failed)} of {len(jobs)} images failed (listed above); the others were written")


if __name__ == "__main__":
    run(main)
