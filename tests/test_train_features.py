"""Trainer features of issue 12 section 5: gradient accumulation, gradient clipping, validation
with LPIPS on tiles of one shape, the best checkpoint, and the W&B writer."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sslsr.data import io
from sslsr.models import MSRResNet, UNetDiscriminatorSN
from sslsr.train import ConfigError, restore_generator, train_and_evaluate
from sslsr.train.config import base_config, validate
from sslsr.train.recipes import gan
from sslsr.train.validation import BestCheckpoint, Validator
from sslsr.weights import checkpoints as ckpt_lib
from sslsr.weights import load_generator
from tests.test_train_loop import load_config, tiny



class TinyFeatures(nnx.Module):
    """Stand-in for VGGFeatures (no batch statistics)."""

    def __init__(self):
        self.c1 = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(5))

    def __call__(self, x):
        return {"a": self.c1(x)}


def _step_config(grad_accum: int, clip: float = 0.0):
    c = base_config()
    c.loss.perceptual_layers = {"a": 1.0}
    c.loss.update(pixel_weight=1.0, perceptual_weight=0.5, gan_weight=0.1, gan_type="vanilla", ssl_weight=0.0,
                  tc_weight=0.0, lpips_weight=0.0)
    c.train.update(ema_decay=0.9, grad_accum=grad_accum, clip_grad_norm=clip)
    return c


def _converged_d():
    """UNetDiscriminatorSN whose spectral-norm vectors have converged: the accumulated step runs D
    more often than the one-batch step, and each training forward is a power iteration."""
    d = UNetDiscriminatorSN(3, 2, rngs=nnx.Rngs(1))
    d.train()

    forward = nnx.jit(lambda d, x: d(x))
    for _ in range(300):
        forward(d, jnp.zeros((1, 8, 8, 3)))
    return d


def _batch(n=4):
    rng = np.random.default_rng(0)
    hr = rng.random((n, 32, 32, 3), np.float32)
    lr = hr.reshape(n, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    return {"lr": jnp.asarray(lr), "hr": jnp.asarray(hr)}


def _rel(a: dict, b: dict) -> float:
    """Relative L2 distance of two flat {name: array} dicts (over all leaves together)."""
    num = sum(float(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2)) for k in a)
    den = sum(float(np.sum(np.asarray(b[k], np.float64) ** 2)) for k in b)
    return (num / den) ** 0.5


def _params(state, part):
    """{name: array} of the parameters (not the spectral-norm vectors) of `state[part]`."""
    return {k: np.asarray(v) for k, v in ckpt_lib.flatten(nnx.as_pure(state[part].filter(nnx.Param))).items()}


@pytest.fixture(scope="module")
def nets():
    return MSRResNet(num_feat=4, num_block=1, upscale=4, rngs=nnx.Rngs(0)), _converged_d()


def _one_step(nets, config, tx_g=None, tx_d=None):
    """One main step from the same G/D; SGD(lr=1) unless given, so a parameter change is -gradient."""
    g, d = nnx.clone(nets[0]), nnx.clone(nets[1])
    ts = gan.TrainState(g, tx_g or optax.sgd(1.0), d=d, tx_d=tx_d or optax.sgd(1.0), ema=True)
    ts.train()
    graphdef, state = nnx.split(ts)
    before = jax.tree.map(jnp.copy, state)
    frozen = gan.Frozen(vgg=TinyFeatures())
    fgraph, fstate = nnx.split(frozen)
    step = jax.jit(gan.make_train_step(graphdef, fgraph, config), static_argnums=4)
    after, metrics = step(state, fstate, _batch(), jnp.int32(0), False)
    return before, after, {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("k", [2, 4])
def test_grad_accum_equals_one_large_batch(nets, k):
    before, one, m1 = _one_step(nets, _step_config(1))
    _, acc, mk = _one_step(nets, _step_config(k))
    for part in ("g", "d"):
        delta_1 = {n: v - _params(before, part)[n] for n, v in _params(one, part).items()}
        delta_k = {n: v - _params(before, part)[n] for n, v in _params(acc, part).items()}
        assert _rel(delta_k, delta_1) < 1e-4, part  # SGD(1): the update is minus the mean gradient
    # EMA updated once, from the updated G: the same as the one-batch step's.
    assert _rel(_params(acc, "ema"), _params(one, "ema")) < 1e-6
    for name in ("l_g_pix", "l_g_percep", "l_g_gan", "l_d_real", "l_d_fake", "grad_norm_g", "grad_norm_d"):
        assert mk[name] == pytest.approx(m1[name], rel=1e-4), name


def test_grad_accum_in_the_l1_stage(nets):
    results = []
    for k in (1, 4):
        ts = gan.TrainState(nnx.clone(nets[0]), optax.sgd(1.0), tx_pre=optax.sgd(1.0))
        graphdef, state = nnx.split(ts)
        before = _params(state, "g")
        after, m = jax.jit(gan.make_pretrain_step(graphdef, grad_accum=k))(state, _batch())
        results.append(({n: v - before[n] for n, v in _params(after, "g").items()}, float(m["l_pre_pix"])))
    assert _rel(results[1][0], results[0][0]) < 1e-4
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-5)


def _adam_mu(state, part) -> float:
    """Global norm of Adam's first moment in the optimizer state `part` (after one update: (1-b1) g)."""
    flat = ckpt_lib.flatten(nnx.as_pure(state[part]))
    return float(optax.tree.norm({k: v for k, v in flat.items() if ".mu." in f".{k}."}))


def test_clip_grad_norm_clips_g_and_d_and_is_inert_when_off(nets):
    def run(clip):
        c = _step_config(1, clip)
        t = c.train
        return _one_step(nets, c, tx_g=gan._adam(t, 1e-3), tx_d=gan._adam(t, 1e-3))

    b1 = base_config().train.betas[0]
    _, off, m_off = run(0.0)
    for part, norm in (("opt_g", "grad_norm_g"), ("opt_d", "grad_norm_d")):
        assert _adam_mu(off, part) / (1 - b1) == pytest.approx(m_off[norm], rel=1e-4)
    clip = 0.25 * min(m_off["grad_norm_g"], m_off["grad_norm_d"])
    _, on, m_on = run(clip)
    for part, norm in (("opt_g", "grad_norm_g"), ("opt_d", "grad_norm_d")):
        assert m_on[norm] == pytest.approx(m_off[norm], rel=1e-6)  # the logged norm is before clipping
        assert _adam_mu(on, part) / (1 - b1) == pytest.approx(clip, rel=1e-4)
    # Off: exactly plain Adam (same optimizer state structure and same numbers).
    plain = optax.adam(1e-3, b1=b1, b2=base_config().train.betas[1])
    _, ref, _ = _one_step(nets, _step_config(1), tx_g=plain, tx_d=plain)
    assert jax.tree.structure(nnx.as_pure(ref)) == jax.tree.structure(nnx.as_pure(off))
    for a, b in zip(jax.tree.leaves(nnx.as_pure(ref)), jax.tree.leaves(nnx.as_pure(off))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("field,value,match", [
    ("train.grad_accum", 3, "train.grad_accum"),
    ("train.grad_accum", 0, "train.grad_accum"),
    ("train.clip_grad_norm", -1.0, "train.clip_grad_norm"),
    ("log.val_metrics", ("psnr", "fid"), "log.val_metrics"),
    ("log.best_metric", "dists", "log.best_metric"),
    ("log.val_tile", 40, "log.val_tile"),
])
def test_invalid_fields_name_the_field(field, value, match):
    c = base_config()
    c.train.batch_size = 8
    c.loss.perceptual_arch = "vgg16"
    c.loss.perceptual_layers = {"conv5_3": 1.0}
    section, name = field.split(".")
    c[section][name] = value
    with pytest.raises(ConfigError, match=f"^config.{match}"):
        validate(c)


class _NearestUpscaler:
    """A pointwise 'network' (nearest x s) recording the input shapes it is given: tiling and
    padding cannot change its output, so tiled validation must equal whole-image metrics."""

    scale = 4

    def __init__(self):
        self.shapes = set()

    def with_state(self, state):
        return self

    def prepare(self, lr):
        def forward(x):
            self.shapes.add(x.shape)
            return np.repeat(np.repeat(x, self.scale, axis=1), self.scale, axis=2)

        return forward


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory):
    """HR images larger and smaller than the 72-px validation tile in LR, and one in between."""
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(1)
    for name, (h, w) in {"a": (400, 304), "b": (40, 52), "c": (96, 320)}.items():
        io.write_png(str(root / "HR" / f"{name}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def _val_config(val_dir, tile=72, metrics=("psnr", "ssim", "lpips")):
    c = base_config()
    c.data.val = str(val_dir)
    c.data.val_max_images = 3
    c.log.val_tile = tile
    c.log.val_metrics = metrics
    return c


def test_validation_tiles_one_shape_and_matches_the_evaluation_protocol(val_dir):
    from sslsr.data import datasets
    from sslsr.evaluate.scoring import build_metrics

    up = _NearestUpscaler()
    scores, grids = Validator(_val_config(val_dir), up)({"w": jnp.zeros(1)})
    assert up.shapes == {(1, 72, 72, 3)}  # every image, small or large: one compiled shape
    fns, _ = build_metrics(("psnr", "ssim", "lpips"), crop_border=4, log=lambda s: None)
    expect = {m: [] for m in fns}
    for _, lr, hr in datasets.iterate_eval_pairs(str(val_dir), scale=4):
        sr = np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)
        for m, fn in fns.items():
            expect[m] += fn(hr, [sr])
    for m in fns:
        assert scores[m] == pytest.approx(np.mean(expect[m]), rel=1e-5, abs=1e-6), m
    assert len(grids) == 2


def _g_config():
    c = base_config()
    c.generator.arch = "MSRResNet"
    c.generator.kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_block=1, upscale=4)
    return c


@pytest.mark.parametrize("metric,values,best_step", [("lpips", (0.5, 0.6, 0.4, 0.45), 3),
                                                     ("psnr", (20.0, 22.0, 21.0, 19.0), 2)])
def test_best_checkpoint_keeps_the_best_step_and_restores(tmp_path, metric, values, best_step):
    c = _g_config()
    c.log.best_metric = metric
    workdir = str(tmp_path)
    states = {}
    best = BestCheckpoint(workdir, c)
    for step, value in enumerate(values[:2], start=1):
        g = MSRResNet(num_feat=4, num_block=1, upscale=4, rngs=nnx.Rngs(step))
        states[step] = nnx.state(g)
        best.update(step, {metric: value}, states[step])
    best.close()
    best = BestCheckpoint(workdir, c)  # a resumed run continues from best.json
    assert best.value == (min(values[:2]) if metric == "lpips" else max(values[:2]))
    for step, value in enumerate(values[2:], start=3):
        g = MSRResNet(num_feat=4, num_block=1, upscale=4, rngs=nnx.Rngs(step))
        states[step] = nnx.state(g)
        best.update(step, {metric: value}, states[step])
    best.close()
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    assert record == {"metric": metric, "value": values[best_step - 1], "step": best_step}
    assert sorted(os.listdir(tmp_path / "best" / "checkpoints")) == [str(best_step)]
    for restored in (restore_generator(str(tmp_path / "best")), load_generator(str(tmp_path / "best"))):
        got, want = ckpt_lib.flatten(nnx.state(restored)), ckpt_lib.flatten(states[best_step])
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))


def _tiny_run_config():
    """test_train_loop's tiny ESRGAN (perceptual term off), validating one demo image at steps 2 and 3."""
    c = tiny(load_config("esrgan"), steps=3, pretrain=1)
    c.data.val = "demo"
    c.data.val_max_images = 1
    c.loss.perceptual_weight = 0.0
    c.train.batch_size = 4
    c.log.update(val_every=2, images=0)
    return c


def test_loop_with_grad_accum_validates_with_lpips_and_keeps_best(tmp_path):
    c = _tiny_run_config()
    c.train.grad_accum = 2
    metrics = train_and_evaluate(c, str(tmp_path))
    assert {"val_psnr", "val_ssim", "val_lpips"} <= set(metrics)
    assert 0 < metrics["val_lpips"] < 1
    # Steps are optimizer steps: 1 L1 update and 2 GAN updates of G and D.
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(tmp_path / "checkpoints")
    out = mngr.restore(3, args=ocp.args.Composite(**{n: ocp.args.StandardRestore() for n in ("opt_g", "opt_pre")}))
    counts = {n: sorted({int(v) for k, v in dict(out[n]).items() if {"count", "step"} & set(k.split("."))})
              for n in ("opt_g", "opt_pre")}
    assert counts == {"opt_g": [2], "opt_pre": [1]}, counts
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    assert record["metric"] == "lpips" and record["step"] in (2, 3)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = {d["step"]: d["val_lpips"] for d in lines if "val_lpips" in d}
    assert record["value"] == pytest.approx(min(val.values())) and set(val) == {2, 3}
    assert restore_generator(str(tmp_path / "best"))(np.zeros((1, 8, 8, 3), np.float32)).shape == (1, 32, 32, 3)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="needs the wandb extra")
def test_wandb_offline_resume_writes_to_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    c = _tiny_run_config()
    c.discriminator.arch = ""
    c.loss.gan_weight = 0.0
    c.data.val = ""
    c.log.wandb = True
    c.train.total_steps = 2
    train_and_evaluate(c, str(tmp_path))
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    c.train.total_steps = 3  # the second part resumes from step 2
    train_and_evaluate(c, str(tmp_path))
    assert (tmp_path / "wandb_run_id").read_text().strip() == run_id
    runs = sorted(p.name for p in (tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.endswith(f"-{run_id}") for r in runs), runs
    assert "resumed from" in (tmp_path / "log.txt").read_text()
