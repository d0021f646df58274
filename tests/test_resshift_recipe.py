"""The ResShift recipe: SSL through the decoder (gradient vs finite differences), training runs
(latent space with SSL, the demo config), the self-contained workdir under eval.py / upscale, and
the bad inputs (one line each). Tiny networks: a 1-level 32-channel ResShiftUNet, a 2-level
32-channel VQAutoencoder (x2)."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from sslsr.errors import UserError
from sslsr.models import registry
from sslsr.models.precision import cast_floating
from sslsr.train import config as config_lib
from sslsr.train.recipes import resshift
from tests.conftest import run_cli

TINY_UNET = dict(resshift.RESSHIFT_UNET, image_size=16, lq_size=16, model_channels=32, channel_mult=(1,),
                 num_res_blocks=(1,), attention_resolutions=(), swin_depth=1, swin_embed_dim=32, num_head_channels=16,
                 mlp_ratio=1)
TINY_VQ = dict(resshift.VQ_F4, ch=32, ch_mult=(1, 2), num_res_blocks=1, n_embed=16, resolution=32)


def _save(module, arch: str, path) -> str:
    from safetensors.numpy import save_file

    from sslsr.convert import to_torch_state_dict

    save_file(to_torch_state_dict(module, arch), str(path))
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random denoiser and autoencoder in PyTorch layout (ResShift's key names)."""
    d = tmp_path_factory.mktemp("resshift_weights")
    unet = registry.build("ResShiftUNet", rngs=nnx.Rngs(1), **TINY_UNET)
    vq = registry.build("VQAutoencoder", rngs=nnx.Rngs(2), **TINY_VQ)
    return {"unet": _save(unet, "ResShiftUNet", d / "unet.safetensors"),
            "vq": _save(vq, "VQAutoencoder", d / "vq.safetensors"), "vq_module": vq}


def latent_config(weights, **loss) -> ml_collections.ConfigDict:
    """A latent-space x2 run: 32 px HR, 16 px LR, 16 px latent; SSL on a small search window."""
    c = resshift.base_config()
    c.generator.kwargs = ml_collections.ConfigDict(TINY_UNET)
    c.autoencoder.kwargs = ml_collections.ConfigDict(TINY_VQ)
    c.autoencoder.weights = weights["vq"]
    c.diffusion.sf = 2
    c.diffusion.sample_steps = 2
    c.data.train, c.data.val, c.data.hr_patch, c.data.degradation = "demo", "", 32, "bicubic"
    c.train.batch_size, c.train.total_steps, c.train.warmup_steps = 2, 2, 2
    c.loss.update(dict(pixel_weight=0.1, ssl_weight=1.0, ssl_search=5, ssl_window=3, **loss))
    c.log.every, c.log.ckpt_every, c.log.best_metric = 1, 2, ""
    return c


def test_ssl_gradient_through_decoder_matches_finite_differences(weights):
    """d/dz of gamma*L1 + beta*SSL of the decoded latent (the recipe's `decoded_terms`): the
    straight-through quantiser passes the decoder's gradient at the quantised latent, so it equals
    central differences of the decoder without quantiser at that latent (float64)."""
    vq = weights["vq_module"]
    lo = ml_collections.ConfigDict(dict(pixel_weight=0.1, ssl_weight=1.0, ssl_alpha=1.0, ssl_search=5, ssl_window=3,
                                        ssl_h=0.004))
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        gdef, state = nnx.split(vq)
        ae = nnx.merge(gdef, cast_floating(state, jnp.float64))
        z = jnp.asarray(rng.standard_normal((1, 8, 8, 3)))
        hr = jnp.asarray(rng.random((1, 16, 16, 3)))
        mask = jnp.asarray((rng.random((1, 16, 16)) < 0.3).astype(np.float64))

        # hr and mask are arguments, not closed-over constants (ssl_loss range-checks concrete images).
        def through_vq(z, hr, mask):
            return resshift.decoded_terms(ae, z, hr, mask, lo, jnp.float64)[0]

        def plain(zq, hr, mask):  # the decoder alone: differentiable everywhere
            img = (ae.decoder(ae.post_quant_conv(zq)) + 1.0) / 2.0
            from sslsr.losses.ssl import ssl_loss

            return 0.1 * jnp.mean(jnp.abs(img - hr)) + ssl_loss(img, hr, mask, search_size=5, window_size=3, h=0.004)

        zq = jax.jit(ae.quantize)(z)
        g = jax.jit(jax.grad(through_vq))(z, hr, mask)
        assert float(jnp.abs(g).max()) > 0
        plain = jax.jit(plain)
        eps = 1e-4  # the decoder keeps some float32 internals (GroupNorm statistics): not smaller
        for seed in range(3):
            d = jnp.asarray(np.random.default_rng(seed + 10).standard_normal(z.shape))
            fd = (plain(zq + eps * d, hr, mask) - plain(zq - eps * d, hr, mask)) / (2 * eps)
            assert float(jnp.vdot(g, d)) == pytest.approx(float(fd), rel=1e-3)

def test_latent_ssl_run_then_eval_and_upscale(weights, tmp_path):
    """Two latent-space steps with SSL on; the workdir alone (autoencoder in its checkpoint) runs
    under eval.py and upscale with --sample_steps/--sample_seed."""
    import eval as eval_cli
    from sslsr import upscale
    from sslsr.diffusion import open_sampler
    from sslsr.inference import super_resolve
    from sslsr.train import train_and_evaluate

    import shutil

    wd = tmp_path / "run"
    c = latent_config(weights)
    c.autoencoder.weights = str(shutil.copy(weights["vq"], tmp_path / "vq_copy.safetensors"))
    result = train_and_evaluate(c, str(wd))
    os.remove(c.autoencoder.weights)  # the workdir is self-contained
    assert {"l_mse", "l_pix", "l_ssl", "l_total"} <= set(result)
    assert all(np.isfinite(v) for v in result.values())
    assert (wd / "checkpoints" / "2" / "autoencoder").is_dir()
    metrics = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]

    lr = np.asarray(Image.fromarray((np.random.default_rng(3).random((12, 10, 3)) * 255).astype(np.uint8)))
    sr = super_resolve(open_sampler(wd, sample_steps=2, seed=5), lr)
    assert sr.shape == (24, 20, 3)

    Image.fromarray(lr).save(tmp_path / "lr.png")
    run_cli(upscale.main, "upscale", tmp_path / "lr.png", tmp_path / "sr.png", "--checkpoint", wd,
            "--sample_steps", 2, "--sample_seed", 5)
    # Another sampler instance with the same seed (the CLI's): the same sample.
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sr.png")), np.round(sr * 255).astype(np.uint8))
    with pytest.raises(UserError, match="--sample_steps: must be in"):
        run_cli(upscale.main, "upscale", tmp_path / "lr.png", tmp_path / "x.png", "--checkpoint", wd,
                "--sample_steps", 16)

    (tmp_path / "set" / "HR").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(4).random((24, 20, 3)) * 255).astype(np.uint8)).save(
        tmp_path / "set" / "HR" / "a.png")
    run_cli(eval_cli.main, "eval", "--checkpoint", wd, "--datasets", "set", "--data_root", tmp_path,
            "--out", tmp_path / "eval", "--scale", 2, "--sample_steps", 2, "--metrics", "psnr,ssim",
            "--num_comparisons", 0)
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "PSNR" in table and "SSIM" in table and "Bicubic" in table


def test_demo_config_trains(tmp_path):
    """configs/resshift.py:demo (pixel space), 2 steps (the SSL terms are covered above)."""
    from configs import resshift as resshift_config
    from configs import resshift_ssl
    from sslsr.train import train_and_evaluate

    assert resshift_ssl.get_config("demo").loss.ssl_weight == 1.0
    c = resshift_config.get_config("demo")
    c.train.total_steps, c.train.batch_size, c.data.val, c.data.hr_patch = 2, 2, "", 32
    c.log.every, c.log.ckpt_every = 1, 2
    result = train_and_evaluate(c, str(tmp_path / "demo"))
    assert "l_mse" in result and all(np.isfinite(v) for v in result.values())


def _one_line_error(config, workdir, match: str):
    from sslsr.train import train_and_evaluate

    with pytest.raises(UserError, match=match) as e:
        train_and_evaluate(config, str(workdir))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_inputs(weights, tmp_path):
    # A denoiser file given as the autoencoder, and an autoencoder file given as the denoiser.
    c = latent_config(weights)
    c.autoencoder.weights = weights["unet"]
    _one_line_error(c, tmp_path / "a", r"^config\.autoencoder\.weights: .*unet\.safetensors holds a ResShift denoiser")
    c = latent_config(weights)
    c.generator.init_from = weights["vq"]
    _one_line_error(c, tmp_path / "b", r"^config\.generator\.init_from: .*vq\.safetensors holds a ResShift autoencoder")
    # The autoencoder's latent channels do not match the denoiser's.
    c = latent_config(weights)
    c.autoencoder.kwargs.embed_dim = 4
    _one_line_error(c, tmp_path / "c",
                    r"^config\.generator\.kwargs\.in_channels: 3, but the autoencoder's latent has 4")
    # Weights of other sizes than the config's.
    c = latent_config(weights)
    c.autoencoder.kwargs.ch = 64
    _one_line_error(c, tmp_path / "d", r"^config\.autoencoder\.weights: .* does not fit VQAutoencoder")
    # A training patch not divisible by the autoencoder's factor (x4 autoencoder, x2 SR: lq_size 2x image_size).
    c = latent_config(weights)
    c.autoencoder.kwargs.ch_mult = (1, 2, 4)
    c.generator.kwargs.lq_size = 32
    c.data.hr_patch = 34
    _one_line_error(c, tmp_path / "e", r"^config\.data\.hr_patch: 34 is not a multiple of the autoencoder's factor 4")
    # sf contradicting the autoencoder, and a latent the denoiser cannot take.
    c = latent_config(weights)
    c.diffusion.sf = 4
    c.data.hr_patch = 32
    _one_line_error(c, tmp_path / "f", r"^config\.diffusion\.sf: 4, but the autoencoder's factor 2")
    c = latent_config(weights)
    c.data.hr_patch = 36
    _one_line_error(c, tmp_path / "g", r"^config\.data\.hr_patch: 36 gives a 18px latent, not a multiple of")
    assert not list(tmp_path.glob("*/checkpoints/*"))  # nothing trained or saved
    # The same mix-ups on the command line, with ResShift's published files (upscale --autoencoder).
    from sslsr import upscale

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    for ckpt, ae, match in (
            (weights["vq"], weights["unet"], r"^--checkpoint: .*vq\.safetensors holds a ResShift autoencoder"),
            (weights["unet"], weights["unet"], r"^--checkpoint: .*unet\.safetensors does not fit ResShiftUNet")):
        with pytest.raises(UserError, match=match) as e:
            run_cli(upscale.main, "upscale", tmp_path / "in.png", tmp_path / "out.png", "--checkpoint", ckpt,
                    "--autoencoder", ae)
        assert "\n" not in str(e.value)
    assert config_lib.scale(latent_config(weights)) == 2
