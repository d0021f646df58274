"""sslsr.convert: round trips, checkpoint wrappers and files, and one error listing all problems."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr import convert
from sslsr.models import MSRResNet, UNetDiscriminatorSN, VGGFeatures, VGGStyleDiscriminator

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

SWIN_KW = dict(
    upscale=2, img_size=8, window_size=4, depths=(2,), embed_dim=12, num_heads=(2,), upsampler="pixelshuffle"
)
RRDB_KW = dict(num_feat=8, num_block=1, num_grow_ch=4)
MSR_KW = dict(num_feat=8, num_block=1, upscale=2)


def torch_model(arch):
    torch.manual_seed(0)
    if arch == "SwinIR":
        from tests.torch_refs.swinir import SwinIR

        return SwinIR(**SWIN_KW), SWIN_KW
    if arch == "RRDBNet":
        from tests.torch_refs.rrdbnet import RRDBNet

        return RRDBNet(**RRDB_KW), RRDB_KW
    from tests.torch_refs.msrresnet import MSRResNet as TorchMSRResNet

    return TorchMSRResNet(**MSR_KW), MSR_KW


def numpy_sd(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("arch", ["RRDBNet", "MSRResNet", "SwinIR"])
def test_round_trip_equals_the_pytorch_state_dict(arch):
    ref, kw = torch_model(arch)
    sd = numpy_sd(ref)
    if arch == "SwinIR":  # the official buffers travel through the round trip
        assert any(k.endswith("attn_mask") for k in sd) and any(k.endswith("relative_position_index") for k in sd)
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(ref.state_dict(), arch, **kw), arch), sd)


def test_exported_weights_load_strictly_into_pytorch_and_agree():
    from tests.torch_refs.msrresnet import MSRResNet as TorchMSRResNet

    model = MSRResNet(**MSR_KW, rngs=nnx.Rngs(3))
    ref = TorchMSRResNet(**MSR_KW)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in convert.to_torch_state_dict(model, "MSRResNet").items()})
    x = np.random.default_rng(0).random((1, 6, 5, 3)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), expected, atol=1e-5)


def test_wrappers_prefixes_and_files(tmp_path):
    ref, kw = torch_model("MSRResNet")
    sd = numpy_sd(ref)
    other = {k: v + 1 for k, v in sd.items()}
    # BasicSR default: 'params' wins over 'params_ema'; param_key selects explicitly.
    wrapped = {"params": {f"module.{k}": v for k, v in sd.items()}, "params_ema": other}
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(wrapped, "MSRResNet", **kw), "MSRResNet"), sd)
    ema = convert.from_torch(wrapped, "MSRResNet", param_key="params_ema", **kw)
    assert_same_state(convert.to_torch_state_dict(ema, "MSRResNet"), other)
    assert_same_state(convert.load_state_dict({"params_ema": other}), other)  # fallback when 'params' is absent

    pth = tmp_path / "net.pth"
    torch.save({"params": ref.state_dict()}, pth)
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(pth, "MSRResNet", **kw), "MSRResNet"), sd)
    from safetensors.numpy import save_file

    st = tmp_path / "net.safetensors"
    save_file(sd, str(st))
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(str(st), "MSRResNet", **kw), "MSRResNet"), sd)


def test_one_error_lists_missing_unexpected_and_shape_problems():
    ref, kw = torch_model("RRDBNet")
    sd = numpy_sd(ref)
    del sd["conv_body.bias"]
    sd["conv_extra.weight"] = np.zeros(3, np.float32)
    sd["conv_first.weight"] = sd["conv_first.weight"][:, :2]
    with pytest.raises(ValueError) as err:
        convert.from_torch(sd, "RRDBNet", **kw)
    msg = str(err.value)
    assert "missing keys (1): conv_body.bias" in msg
    assert "unexpected keys (1): conv_extra.weight" in msg
    assert "conv_first.weight: checkpoint (8, 2, 3, 3) vs model (8, 3, 3, 3)" in msg
    with pytest.raises(ValueError, match="unknown arch 'ESRGAN'"):
        convert.from_torch(sd, "ESRGAN")


def test_swinir_buffers_are_checked_against_the_config():
    ref, kw = torch_model("SwinIR")
    sd = numpy_sd(ref)
    # Buffers are recomputable, so checkpoints without them load too.
    stripped = {k: v for k, v in sd.items() if not k.endswith(("attn_mask", "relative_position_index"))}
    convert.from_torch(stripped, "SwinIR", **kw)
    # A checkpoint trained at another img_size carries a differently shaped attn_mask.
    with pytest.raises(
        ValueError, match=r"buffers that do not match arch_kwargs \(1\): layers.0.residual_group.blocks.1.attn_mask"
    ):
        convert.from_torch(sd, "SwinIR", **{**kw, "img_size": 12})


@pytest.mark.parametrize(
    "arch,build,kw",
    [
        ("VGGStyleDiscriminator", lambda r: VGGStyleDiscriminator(3, 8, rngs=r), dict(num_feat=8)),
        ("UNetDiscriminatorSN", lambda r: UNetDiscriminatorSN(3, 8, rngs=r), dict(num_feat=8)),
        ("VGG19", lambda r: VGGFeatures("vgg19", layers=("conv2_1",), rngs=r), dict(layers=("conv2_1",))),
    ],
)
def test_round_trip_of_discriminators_and_features(arch, build, kw):
    sd = convert.to_torch_state_dict(build(nnx.Rngs(1)), arch)
    if arch == "VGGStyleDiscriminator":
        assert sd["bn0_1.num_batches_tracked"].dtype == np.int64 and "bn0_1.running_var" in sd
    if arch == "UNetDiscriminatorSN":
        assert sd["conv1.weight_orig"].shape == (16, 8, 4, 4) and sd["conv1.weight_v"].shape == (8 * 16,)
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(sd, arch, **kw), arch), sd)


def test_vgg_ignores_classifier_and_deeper_layers_but_not_missing_ones():
    sd = convert.to_torch_state_dict(VGGFeatures("vgg16", layers=("relu1_2",), rngs=nnx.Rngs(0)), "VGG16")
    full = {
        **sd,
        "features.5.weight": np.zeros((128, 64, 3, 3), np.float32),
        "classifier.0.bias": np.zeros(4, np.float32),
    }
    assert_same_state(convert.to_torch_state_dict(convert.from_torch(full, "VGG16", layers=("relu1_2",)), "VGG16"), sd)
    with pytest.raises(ValueError, match="missing keys"):
        convert.from_torch(full, "VGG16", layers=("conv2_1",))
