"""Network interpolation: alpha 1 is A, 0 is B, 0.5 the mean; the CLI writes through the export
writer and refuses mismatched architectures in one line."""

import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import Generator, blend, load_generator, pytorch, save

KW = dict(num_feat=8, num_conv=2, upscale=2)


def gen(seed, arch="SRVGGNetCompact", **kw):
    kw = kw or KW
    model = registry.build(arch, rngs=nnx.Rngs(seed), **kw)
    model.eval()
    return Generator(model, arch, kw, "ema", 10)


def sd(g):
    return pytorch.to_torch_state_dict(g.model, g.arch)


def test_alpha_one_gives_a_zero_gives_b_half_the_mean():
    a, b = gen(0), gen(1)
    sa, sb = sd(a), sd(b)
    assert any(not np.array_equal(sa[k], sb[k]) for k in sa)
    for alpha, want in ((1.0, sa), (0.0, sb), (0.5, {k: (sa[k] + sb[k]) / 2 for k in sa})):
        got = sd(blend.blend(a, b, alpha))
        for k in sa:
            np.testing.assert_allclose(got[k], want[k], atol=1e-7, err_msg=f"alpha={alpha} {k}")
    assert blend.blend(a, b, 0.3).step is None
    # kwargs spelled out differently (a workdir config vs a detected file) build the same network
    spelled = Generator(b.model, b.arch, {**KW, "num_in_ch": 3, "act_type": "prelu"}, "raw")
    assert sd(blend.blend(a, spelled, 1.0)).keys() == sa.keys()


def test_mismatched_architectures_or_kwargs_are_refused():
    with pytest.raises(UserError, match=r"b.pth: SRVGGNetCompact\(.*num_conv=3.*cannot be interpolated with a.pth"):
        blend.blend(gen(0), gen(1, num_feat=8, num_conv=3, upscale=2), 0.5, names=("a.pth", "b.pth"))
    with pytest.raises(UserError, match=r"B: MSRResNet"):
        blend.blend(gen(0), gen(1, "MSRResNet", num_feat=8, num_block=1, upscale=2), 0.5)
    with pytest.raises(UserError, match="--alpha: must be a finite number"):
        blend.blend(gen(0), gen(1), float("nan"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sslsr.interp", *map(str, args)], capture_output=True, text=True)


def test_interp_cli_writes_the_blend_and_fails_in_one_line(tmp_path):
    a, b = save.write(gen(0), tmp_path / "a.safetensors"), save.write(gen(1), tmp_path / "b.safetensors")
    other = save.write(gen(2, num_feat=4, num_conv=2, upscale=2), tmp_path / "c.safetensors")
    done = run_cli(a, b, "--alpha=0.8", tmp_path / "ab.pth")
    assert done.returncode == 0, done.stderr
    got = pytorch.to_torch_state_dict(load_generator(tmp_path / "ab.pth"), "SRVGGNetCompact")
    sa, sb = sd(gen(0)), sd(gen(1))
    for k in sa:
        np.testing.assert_allclose(got[k], 0.8 * sa[k] + 0.2 * sb[k], atol=1e-6)
    failed = run_cli(a, other, "--alpha=0.5", tmp_path / "ac.safetensors")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(f"error: {other}: SRVGGNetCompact(")
    assert not (tmp_path / "ac.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "ab.pth", "b.safetensors", "c.safetensors"]
