"""The architectures of the paper's other GAN methods (issue 15) against PyTorch rebuilds of the
published code: SPSR's generator, RankSRGAN's SRResNet and ranker, mmsr's VGG discriminators for
192 and 296 crops; their conversions both ways, key detection, the old RRDBNet key names and the
one-line errors for bad inputs.

Small widths; SPSR needs its full 20-block trunk (the gradient branch taps block 20), so it runs
once, op by op (its repeated blocks make that cheaper than compiling the whole graph); the
others are jitted."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import InputError, UserError
from sslsr.models import registry
from sslsr.models.discriminators import VGGDiscriminator192, VGGDiscriminator296
from sslsr.models.spsr import SPSRNet
from sslsr.weights import detect, load_generator, load_ranker, pytorch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from tests.torch_refs import ranksrgan, rrdbnet, spsr, vgg_discriminators  # noqa: E402
from tests.torch_refs.discriminators import randomize_batchnorm  # noqa: E402


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def torch_sd(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def torch_save(sd, path):
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, path)
    return path


def forward(model, x):
    """Jitted: compiling these small networks once is cheaper than running them op by op."""
    return nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x))


def torch_forward(model, x):
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy().transpose(0, 2, 3, 1) if o.ndim == 4 else o.numpy() for o in outs]


def assert_round_trip(module, arch, ref):
    """Our export has exactly the reference's keys and arrays and loads into it strictly."""
    sd = torch_sd(ref)
    back = pytorch.to_torch_state_dict(module, arch)
    assert back.keys() == sd.keys()
    for key, value in sd.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_spsr_matches_pytorch_and_round_trips(tmp_path):
    torch.manual_seed(0)
    kwargs = dict(in_nc=3, out_nc=3, nf=8, nb=20, gc=4, upscale=4)
    ref = spsr.SPSRNet(**kwargs).eval()
    sd = torch_sd(ref)
    # PyTorch registers HR_conv0_new twice: its conv is in the state dict under two keys.
    np.testing.assert_array_equal(sd["HR_conv0_new.0.weight"], sd["model.8.weight"])
    model = pytorch.from_torch(sd, "SPSRNet", **kwargs)
    x = np.random.default_rng(0).random((1, 8, 8, 3)).astype(np.float32)
    sr, branch = model.with_branch(jnp.asarray(x))
    ref_branch, ref_sr, _ = torch_forward(ref, x)  # the published order; the LR gradient is dropped
    assert sr.shape == branch.shape == (1, 32, 32, 3)
    assert rel_err(sr, ref_sr) <= 1e-4
    assert rel_err(branch, ref_branch) <= 1e-4
    np.testing.assert_array_equal(model(jnp.asarray(x)), sr)  # plain call: the SR image alone (ops cached now)
    assert_round_trip(model, "SPSRNet", ref)

    assert detect.identify(sd, "spsr.pth")[:2] == ("SPSRNet", kwargs)  # not the old ESRGAN keys it shares
    bad = dict(sd, **{"HR_conv0_new.0.weight": sd["HR_conv0_new.0.weight"] + 1})
    with pytest.raises(InputError, match=re.escape("HR_conv0_new.0.weight: differs from model.8.weight")):
        pytorch.from_torch(bad, "SPSRNet", **kwargs)


def test_spsr_needs_twenty_blocks():
    with pytest.raises(ValueError, match=r"^SPSRNet: nb \(RRDB blocks\) must be at least 20.*got nb=19$"):
        SPSRNet(nb=19, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("upscale", [4, 3])
def test_srresnet_matches_pytorch_and_round_trips(upscale):
    torch.manual_seed(1)
    kwargs = dict(in_nc=3, out_nc=3, nf=8, nb=2, upscale=upscale)
    ref = ranksrgan.SRResNet(**kwargs).eval()
    model = pytorch.from_torch(torch_sd(ref), "SRResNet", **kwargs)
    x = np.random.default_rng(1).random((1, 6, 6, 3)).astype(np.float32)
    out = forward(model, x)
    assert out.shape == (1, 6 * upscale, 6 * upscale, 3)
    assert rel_err(out, torch_forward(ref, x)[0]) <= 1e-4
    assert_round_trip(model, "SRResNet", ref)
    assert detect.identify(torch_sd(ref))[:2] == ("SRResNet", kwargs)
    assert registry.scale_of(model) == upscale


def test_ranker_matches_pytorch_loads_and_rejects_other_files(tmp_path):
    torch.manual_seed(2)
    ref = ranksrgan.RankerVGG12(3, 4)
    randomize_batchnorm(ref)
    sd = torch_sd(ref)
    path = torch_save(sd, tmp_path / "mmsr_Ranker_PI.pth")
    ranker = load_ranker(path)  # in_nc / nf from the file
    assert_round_trip(ranker, "RankerVGG12", ref)
    x = np.random.default_rng(2).random((2, 64, 64, 3)).astype(np.float32)
    # Train mode (batch statistics), as RankSRGAN's loss runs it; both update their running stats.
    out = forward(ranker, x)
    assert out.shape == (2, 1)
    assert rel_err(out, torch_forward(ref.train(), x)[0]) <= 1e-4
    ranker.eval()
    assert rel_err(forward(ranker, x), torch_forward(ref.eval(), x)[0]) <= 1e-4
    with pytest.raises(ValueError, match="square"):
        ranker(jnp.zeros((1, 64, 48, 3)))

    # A generator file given as the ranker, and the ranker given as a generator: one line each.
    gen = torch_save(torch_sd(ranksrgan.SRResNet(nf=4, nb=1)), tmp_path / "srresnet.pth")
    with pytest.raises(UserError, match=r"srresnet.pth: not a RankSRGAN ranker .*it holds SRResNet generator") as e:
        load_ranker(gen)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"mmsr_Ranker_PI.pth holds a RankerVGG12 \(ranker\) state dict"):
        load_generator(path)


@pytest.mark.parametrize(("cls", "size"), [(VGGDiscriminator192, 192), (VGGDiscriminator296, 296)])
def test_vgg_discriminators_match_pytorch(cls, size):
    torch.manual_seed(3)
    ref = vgg_discriminators.VGGDiscriminator(3, 4, size)
    randomize_batchnorm(ref)
    arch = cls.__name__
    # The published layout: same parameter count as the original at its width.
    full = nnx.eval_shape(lambda: registry.build(arch, rngs=nnx.Rngs(0)))
    n_ours = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(full, nnx.Param)))
    assert n_ours == sum(p.numel() for p in vgg_discriminators.VGGDiscriminator(3, 64, size).parameters())

    model = pytorch.from_torch(torch_sd(ref), arch, num_feat=4)
    x = np.random.default_rng(3).random((2, size, size, 3)).astype(np.float32)
    model.eval()
    assert rel_err(forward(model, x), torch_forward(ref.eval(), x)[0]) <= 1e-4
    assert_round_trip(model, arch, ref)
    model.train()
    assert rel_err(forward(model, x), torch_forward(ref.train(), x)[0]) <= 1e-4
    with pytest.raises(ValueError, match=rf"^{arch}: expected {size}x{size} input, got 128x128"):
        model(jnp.zeros((1, 128, 128, 3)))


def to_mmsr_keys(sd):
    """BasicSR RRDBNet keys -> mmsr / BebyGAN's (`RRDB_trunk.N.RDB1.conv1`, `trunk_conv`, ...)."""
    heads = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for key, value in sd.items():
        key = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", key)
        head, _, leaf = key.rpartition(".")
        out[f"{heads.get(head, head)}.{leaf}"] = value
    return out


def test_rrdbnet_accepts_the_old_mmsr_key_names(tmp_path):
    torch.manual_seed(4)
    kwargs = dict(num_feat=8, num_block=2, num_grow_ch=4)
    sd = torch_sd(rrdbnet.RRDBNet(**kwargs))
    old = to_mmsr_keys(sd)
    assert "RRDB_trunk.1.RDB3.conv5.weight" in old and "HRconv.bias" in old
    expected = pytorch.to_torch_state_dict(pytorch.from_torch(sd, "RRDBNet", **kwargs), "RRDBNet")
    for loaded in (pytorch.from_torch(old, "RRDBNet", **kwargs),
                   load_generator(torch_save(old, tmp_path / "bebygan_G.pth"))):
        got = pytorch.to_torch_state_dict(loaded, "RRDBNet")  # exported under BasicSR's names
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
