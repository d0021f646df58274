"""Architecture detection from a state dict's keys and shapes, checked against the kwargs that
built it and against spandrel's detection of the same file."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.weights import detect, load_generator, open_generator, pytorch, save
from tests.spandrel_stub import import_spandrel
from tests.test_export import CASES, lr_input, make, ours

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

# our kwarg -> spandrel's hyperparameter of the same meaning
SPANDREL_NAMES = {
    "RRDBNet": {"num_feat": "num_filters", "num_block": "num_blocks", "num_out_ch": "out_nc"},
    "SwinIR": {k: k for k in ("img_size", "window_size", "embed_dim", "depths", "num_heads", "mlp_ratio",
                              "upsampler", "resi_connection", "upscale", "in_chans")},
    "SRVGGNetCompact": {k: k for k in ("num_in_ch", "num_out_ch", "num_feat", "num_conv", "upscale")},
}


def torch_save(sd, path, wrapper=None):
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    torch.save({wrapper: tensors} if wrapper else tensors, path)
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_detection_recovers_the_kwargs_and_agrees_with_spandrel(name, tmp_path):
    spandrel = import_spandrel()
    gen = make(name)
    path = save.write(gen, tmp_path / f"{name}.pth")
    arch, kwargs, _ = detect.identify(pytorch.load_state_dict(str(path), "params_ema"))
    expected = registry.architecture(gen.arch).kwargs(**gen.kwargs)
    assert arch == gen.arch
    assert {k: kwargs[k] for k in expected if k in kwargs} == {k: expected[k] for k in kwargs if k in expected}
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    hp = descriptor.model.hyperparameters
    for ours_name, theirs in SPANDREL_NAMES[arch].items():
        if ours_name in kwargs:
            value = hp[theirs]
            assert (tuple(value) if isinstance(value, list) else value) == kwargs[ours_name], ours_name
    assert descriptor.scale == registry.architecture(arch).scale(kwargs)


def to_old_esrgan_keys(sd, num_block):
    """BasicSR RRDBNet keys -> the original ESRGAN repository's (x4)."""
    tail = {"conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in sd.items():
        if m := re.match(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$", key):
            key = f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"
        else:
            head, leaf = key.rsplit(".", 1)
            key = {"conv_first": "model.0", "conv_body": f"model.1.sub.{num_block}", **tail}[head] + "." + leaf
        out[key] = value
    return out


def test_old_esrgan_keys_load_without_arch_and_agree_with_spandrel(tmp_path):
    spandrel = import_spandrel()
    gen = make("rrdb_x4")
    old = to_old_esrgan_keys(pytorch.to_torch_state_dict(gen.model, "RRDBNet"), 2)
    path = torch_save(old, tmp_path / "esrgan_old.pth")
    x = lr_input(8)
    loaded = open_generator(path)
    assert loaded.arch == "RRDBNet" and loaded.kwargs["num_block"] == 2 and loaded.kwargs["scale"] == 4
    np.testing.assert_allclose(ours(loaded.model, x), ours(gen.model, x), atol=1e-6)
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "ESRGAN" and descriptor.model.hyperparameters["num_blocks"] == 2
    # old BasicSR (BSRGAN/RealSR) names too
    new = pytorch.to_torch_state_dict(gen.model, "RRDBNet")
    renamed = {re.sub(r"^body\.(\d+)\.rdb(\d)", r"RRDB_trunk.\1.RDB\2", k)
               .replace("conv_body", "trunk_conv").replace("conv_up", "upconv").replace("conv_hr", "HRconv"): v
               for k, v in new.items()}
    np.testing.assert_allclose(ours(load_generator(torch_save(renamed, tmp_path / "old_basicsr.pth")), x),
                               ours(gen.model, x), atol=1e-6)


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_msrresnet_is_detected_and_spandrel_has_no_loader_for_it(upscale, tmp_path):
    spandrel = import_spandrel()
    kw = dict(num_feat=8, num_block=2, upscale=upscale)
    model = registry.build("MSRResNet", rngs=nnx.Rngs(0), **kw)
    path = torch_save(pytorch.to_torch_state_dict(model, "MSRResNet"), tmp_path / "msr.pth", "params")
    loaded = open_generator(path)
    assert loaded.arch == "MSRResNet" and {k: loaded.kwargs[k] for k in kw} == kw
    x = lr_input(6)
    np.testing.assert_allclose(ours(loaded.model, x), ours(model, x), atol=1e-6)
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader().load_from_file(str(path))


def test_unknown_ambiguous_and_mismatched_files_give_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^w.pth: no known architecture's keys \(found 2 keys: a.weight, b.bias"):
        detect.identify({"a.weight": np.zeros(3), "b.bias": np.zeros(3)}, "w.pth")
    relu = registry.build("SRVGGNetCompact", rngs=nnx.Rngs(0), num_feat=4, num_conv=1, act_type="relu")
    path = torch_save(pytorch.to_torch_state_dict(relu, "SRVGGNetCompact"), tmp_path / "relu.pth")
    with pytest.raises(UserError, match="ReLU or LeakyReLU is ambiguous") as info:
        load_generator(path)
    assert "\n" not in str(info.value)
    x = lr_input(5)
    by_hand = load_generator(path, arch="SRVGGNetCompact", num_feat=4, num_conv=1, act_type="relu")
    np.testing.assert_allclose(ours(by_hand, x), ours(relu, x), atol=1e-6)
    swin = save.write(make("swinir_lightweight"), tmp_path / "swin.pth")
    with pytest.raises(UserError, match="swin.pth: holds SwinIR weights, not --arch RRDBNet"):
        load_generator(swin, arch="RRDBNet")
    broken = pytorch.load_state_dict(str(swin), "params_ema")
    del broken["upsample.0.weight"], broken["upsample.0.bias"]
    with pytest.raises(UserError, match="without an upsampler"):
        detect.identify(broken, "swin.pth")
    half = {k: v for k, v in pytorch.to_torch_state_dict(make("rrdb_x4").model, "RRDBNet").items()
            if not k.startswith("conv_last")}
    with pytest.raises(UserError, match=r"incomplete weights \(KeyError"):
        detect.identify(half, "half.pth")
    more = pytorch.to_torch_state_dict(make("rrdb_x4").model, "RRDBNet")
    more["conv_last.weight"] = np.zeros((3, 4, 3, 3), np.float32)  # conv_hr gives 8 channels
    with pytest.raises(UserError, match=r"more.pth: convert.from_torch\(RRDBNet.*conv_last.weight: checkpoint"):
        load_generator(torch_save(more, tmp_path / "more.pth"))
