"""The training loop end to end on tiny models: every config's demo variant, kill-and-resume
equivalence, the non-finite stop, and `restore_generator`."""

import importlib.util
import json
import os
import pathlib
import signal

import jax
import numpy as np
import pytest
from flax import nnx

from sslsr.train import NonFiniteLossError, restore_generator, train_and_evaluate
from sslsr.train import loop
from sslsr.train.recipes import gan
from sslsr.weights import checkpoints as ckpt_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ("rrdb_psnr", "esrgan", "esrgan_ssl", "swinirgan_ssl", "realesrgan_ssl")


def config_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_config(name: str, arg: str | None = "demo"):
    return config_module(name).get_config(arg)


def restore_items(workdir: str, step: int, names) -> dict:
    """{item: {leaf name: array}} straight from the orbax checkpoint (independent of the trainer)."""
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(pathlib.Path(workdir) / "checkpoints")
    out = mngr.restore(step, args=ocp.args.Composite(**{n: ocp.args.StandardRestore() for n in names}))
    return {n: {k: np.asarray(v) for k, v in dict(out[n]).items()} for n in names}


def tiny(c, steps: int = 2, pretrain: int = 1):
    """The demo config shrunk to test size (the loss recipe and the pipeline stay)."""
    if c.generator.arch == "RRDBNet":
        c.generator.kwargs.update(num_feat=8, num_block=1, num_grow_ch=4)
    elif c.generator.arch == "SwinIR":
        c.generator.kwargs.update(img_size=8, window_size=4, embed_dim=8, depths=(1,), num_heads=(1,))
    if c.discriminator.arch:
        c.discriminator.kwargs.num_feat = 2
    c.data.hr_patch = 32
    c.data.val = ""
    c.train.batch_size = 2
    c.train.total_steps = steps
    c.train.pretrain_steps = pretrain
    c.train.milestones = (1,)
    c.loss.perceptual_layers = {"conv1_2": 1.0}
    c.log.every = 1
    c.log.ckpt_every = 100
    return c


@pytest.mark.parametrize("name", CONFIGS)
def test_config_full_variant_is_complete_and_demo_runs(name, tmp_path):
    mod = config_module(name)
    assert all(word in mod.__doc__ for word in ("Run:", "Expected time", "Expected result", ":demo"))
    assert mod.get_config(None).train.total_steps >= 100_000
    # One main-stage step (the L1 stage and validation are covered by the test below).
    c = tiny(load_config(name), steps=1, pretrain=0)
    if name == "esrgan":  # also exercise the optional LPIPS loss with its real (AlexNet) network
        c.loss.lpips_weight = 0.1
        c.loss.lpips_net = "alex"
    metrics = train_and_evaluate(c, str(tmp_path))
    assert all(np.isfinite(v) for v in metrics.values())
    expect = {"l_g_pix"}
    if c.discriminator.arch:
        expect |= {"l_g_gan", "l_d_real", "l_d_fake", "out_d_real", "out_d_fake", "l_g_percep"}
    if c.loss.ssl_weight:
        expect.add("l_g_ssl")
    if c.loss.lpips_weight:
        expect.add("l_g_lpips")
    assert expect <= set(metrics), set(metrics)
    assert ckpt_lib.Checkpointer(str(tmp_path)).latest_step() == 1
    g = restore_generator(str(tmp_path))
    out = g(np.zeros((1, 8, 8, 3), np.float32))
    assert out.shape == (1, 32, 32, 3)
    assert (tmp_path / "log.txt").read_text().count("step 1 ") >= 1


def test_demo_validation_tensorboard_and_ema_restore(tmp_path):
    c = tiny(load_config("esrgan_ssl"), steps=3, pretrain=1)
    c.data.val = "demo"
    c.data.val_max_images = 1
    c.log.val_every = 3
    metrics = train_and_evaluate(c, str(tmp_path))
    assert 5 < metrics["val_psnr"] < 40 and 0 < metrics["val_ssim"] <= 1
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "config.json").read_text())["loss"]["ssl_weight"] == 1000.0
    ema = restore_generator(str(tmp_path))
    g = restore_generator(str(tmp_path), prefer_ema=False)
    state = restore_items(str(tmp_path), 3, ("ema", "g"))
    ema_ckpt, g_ckpt = state["ema"], state["g"]
    flat_ema, flat_g = ckpt_lib.flatten(nnx.state(ema)), ckpt_lib.flatten(nnx.state(g))
    for k in flat_ema:
        np.testing.assert_array_equal(flat_ema[k], ema_ckpt[k])
        np.testing.assert_array_equal(flat_g[k], g_ckpt[k])
    assert any(not np.array_equal(flat_ema[k], flat_g[k]) for k in flat_ema)


def _resume_config():
    c = tiny(load_config("esrgan"), steps=4, pretrain=1)
    c.loss.perceptual_weight = 0.0  # keep the compiled step small; the state logic is what is tested
    c.log.ckpt_every = 2
    return c


def _full_state(workdir):
    return restore_items(workdir, 4, ("g", "d", "opt_g", "opt_d", "ema", "opt_pre"))


def test_sigterm_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    train_and_evaluate(_resume_config(), straight)

    real_global_batch = loop.sharding.global_batch
    calls = {"n": 0}

    def global_batch_then_sigterm(batch, mesh):
        calls["n"] += 1
        if calls["n"] == 3:  # SIGTERM arrives during step 3: it completes, is saved, the run stops
            os.kill(os.getpid(), signal.SIGTERM)
        return real_global_batch(batch, mesh)

    monkeypatch.setattr(loop.sharding, "global_batch", global_batch_then_sigterm)
    train_and_evaluate(_resume_config(), killed)
    assert ckpt_lib.Checkpointer(killed).latest_step() == 3
    monkeypatch.setattr(loop.sharding, "global_batch", real_global_batch)
    train_and_evaluate(_resume_config(), killed)  # resumes from step 3 (params, opt, EMA, data)
    assert "resumed from" in (pathlib.Path(killed) / "log.txt").read_text()

    a, b = _full_state(straight), _full_state(killed)
    assert set(a) == set(b) == {"g", "d", "opt_g", "opt_d", "ema", "opt_pre"}
    for part in a:
        for k in a[part]:
            np.testing.assert_allclose(np.asarray(a[part][k]), np.asarray(b[part][k]), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{part}/{k}")


def test_non_finite_loss_stops_naming_step_and_term_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    real_global_batch = loop.sharding.global_batch
    calls = {"n": 0}

    def poisoned(batch, mesh):
        calls["n"] += 1
        if calls["n"] == 3:
            batch = dict(batch, hr=np.full_like(batch["hr"], np.nan))
        return real_global_batch(batch, mesh)

    monkeypatch.setattr(loop.sharding, "global_batch", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 3: .*l_g_pix=nan.*last good checkpoint \(step 2\)"):
        train_and_evaluate(_resume_config(), str(tmp_path))
    assert ckpt_lib.Checkpointer(str(tmp_path)).latest_step() == 2
    g = restore_generator(str(tmp_path))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(nnx.state(g)))


def test_init_from_workdir_and_pth(tmp_path):
    torch = pytest.importorskip("torch")
    from sslsr import convert

    c = tiny(load_config("esrgan"), steps=1, pretrain=0)
    src = ckpt_lib.build_generator(c, seed=7)
    # A PyTorch .pth in BasicSR's wrapper, read through sslsr.convert.
    sd = {k: torch.from_numpy(np.asarray(v)) for k, v in convert.to_torch_state_dict(src, "RRDBNet").items()}
    torch.save({"params_ema": sd}, tmp_path / "g.pth")
    c.generator.init_from = str(tmp_path / "g.pth")
    c.generator.init_key = "params_ema"
    g = gan.init_generator(c)
    for a, b in zip(jax.tree.leaves(nnx.state(g, nnx.Param)), jax.tree.leaves(nnx.state(src, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # One of our workdirs (its EMA generator).
    workdir = tmp_path / "wd"
    ckpt_lib.save_config(str(workdir), c)
    import optax

    ts = gan.TrainState(src, optax.adam(1e-3), ema=True)
    nnx.update(ts.ema, jax.tree.map(lambda x: x + 0.5, nnx.state(ts.ema, nnx.Param)))  # EMA != G
    ckpt_lib.Checkpointer(str(workdir)).save(5, nnx.state(ts))
    c.generator.init_from = str(workdir)
    g = gan.init_generator(c)
    for a, b in zip(jax.tree.leaves(nnx.state(g, nnx.Param)), jax.tree.leaves(nnx.state(ts.ema, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c.generator.init_key = "params"  # the trained G instead
    g = gan.init_generator(c)
    for a, b in zip(jax.tree.leaves(nnx.state(g, nnx.Param)), jax.tree.leaves(nnx.state(ts.g, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
