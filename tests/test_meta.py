"""MetaF2N pieces: the inner step, the meta-gradient, first vs second order, the task sampler."""

import functools
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from sslsr.data.realesrgan import REALESRGAN, realesrgan_degrade
from sslsr.meta import inner, tasks
from sslsr.models import registry
from sslsr.train.recipes import metaf2n
from sslsr.train.recipes.gan import Frozen, Net


def _linear_apply(p, x):
    """A tiny SR "network": per-channel gain and bias after a nearest x2 upsampling."""
    up = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return up * p["w"] + p["b"]


def test_inner_step_matches_hand_derived_gradient():
    rng = np.random.default_rng(0)
    lr = rng.random((2, 3, 3, 3))
    pgt = rng.random((2, 6, 6, 3))
    m = rng.random((2, 6, 6, 1)) + 0.5
    p = {"w": np.array([0.9, 1.1, 1.0]), "b": np.array([0.01, -0.02, 0.0])}
    out = inner.adapt(_linear_apply, jax.tree.map(jnp.asarray, p), jnp.asarray(lr), jnp.asarray(pgt), jnp.asarray(m),
                      lr_inner=0.5, steps=2)
    # By hand: L = mean(m |pgt - (w up + b)|), dL/dw_c = -sum_{c} m sign(r) up / N, dL/db_c = -sum m sign(r) / N.
    up = np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2)
    w, b = p["w"].copy(), p["b"].copy()
    for _ in range(2):
        r = pgt - (up * w + b)
        coef = -m * np.sign(r) / r.size
        w, b = w - 0.5 * (coef * up).sum(axis=(0, 1, 2)), b - 0.5 * coef.sum(axis=(0, 1, 2))
    np.testing.assert_allclose(out["w"], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["b"], b, rtol=1e-5, atol=1e-6)


def test_mask_regulariser_and_masknet_shape():
    assert float(inner.mask_regulariser(jnp.ones((1, 4, 4, 1)))) == 0.0
    np.testing.assert_allclose(float(inner.mask_regulariser(jnp.zeros((1, 4, 4, 1)))), 0.5)
    net = registry.build("MaskNet", rngs=nnx.Rngs(0), num_feat=2)
    assert len(net.convs) == 8
    m = net(inner.mask_input(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 16, 16, 3))))
    assert m.shape == (1, 16, 16, 1) and bool(jnp.all(m >= 0))


def _tiny(order: int):
    """A tiny config, G (SRVGGNetCompact, 4 features, 1 conv), MaskNet (2 convs) and one 2-task batch."""
    c = ml_collections.ConfigDict()
    c.meta = metaf2n.meta_config()
    c.meta.update(order=order, inner_lr=0.1, reg_weight=0.5)
    c.loss = ml_collections.ConfigDict(dict(pixel_weight=1.0, lpips_weight=0.0, gan_weight=0.0, ssl_weight=0.0))
    rng = np.random.default_rng(0)
    batch = {"face_lr": rng.random((2, 1, 4, 4, 3)), "face_hr": rng.random((2, 1, 16, 16, 3)),
             "bg_lr": rng.random((2, 1, 7, 7, 3)), "bg_hr": rng.random((2, 1, 28, 28, 3))}
    return (c, *_tiny_nets(), batch)


@functools.cache
def _tiny_nets():
    g = registry.build("SRVGGNetCompact", rngs=nnx.Rngs(0), num_feat=4, num_conv=1, upscale=4, act_type="prelu")
    mask = registry.build("MaskNet", rngs=nnx.Rngs(1), num_feat=3, num_conv=2)
    return Net.of(g), Net.of(mask)


def _objective(c, g, mask, batch, dtype=jnp.float32):
    def f(params):
        return metaf2n.meta_objective(c, params, g, mask, None, Frozen(), batch, batch["face_hr"], dtype)[0]

    return f


def _forward64(graphdef, params, rest, x, dtype):
    """`gan.forward` without its float32 output cast, so the whole objective runs in float64."""
    del dtype
    return nnx.merge(graphdef, params, rest)(x), rest


def _directional(f, params, direction, eps):
    step = lambda s: jax.tree.map(lambda p, v: p + s * v, params, direction)  # noqa: E731
    return (f(step(eps)) - f(step(-eps))) / (2 * eps)


def test_meta_gradient_matches_finite_differences(monkeypatch):
    monkeypatch.setattr(metaf2n, "forward", _forward64)
    with jax.enable_x64(True):
        c, g, mask, batch = _tiny(order=2)
        to64 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
        g, mask, batch = g._replace(params=to64(g.params)), mask._replace(params=to64(mask.params)), to64(batch)
        value_and_grad = jax.jit(jax.value_and_grad(_objective(c, g, mask, batch, jnp.float64)))  # one compile
        f = lambda p: value_and_grad(p)[0]  # noqa: E731
        params = {"g": g.params, "mask": mask.params}
        value, grads = value_and_grad(params)
        assert value.dtype == jnp.float64
        leaves = jax.tree.leaves(params)
        keys = jax.random.split(jax.random.key(0), len(leaves))
        direction = jax.tree.unflatten(jax.tree.structure(params),
                                       [jax.random.normal(k, x.shape, jnp.float64) for k, x in zip(keys, leaves)])
        # G and the MaskNet separately: the MaskNet's gradient exists only through the inner step and L_reg
        for part in ("g", "mask"):
            d = {k: direction[k] if k == part else jax.tree.map(jnp.zeros_like, direction[k]) for k in direction}
            analytic = sum(jnp.vdot(a, v) for a, v in zip(jax.tree.leaves(grads), jax.tree.leaves(d)))
            np.testing.assert_allclose(float(analytic), float(_directional(f, params, d, 1e-6)), rtol=1e-6)


def test_first_order_masknet_gets_only_the_regulariser():
    grads = {}
    for order in (1, 2):
        c, g, mask, batch = _tiny(order)
        grads[order] = jax.jit(jax.grad(_objective(c, g, mask, batch)))({"g": g.params, "mask": mask.params})["mask"]

    def reg_only(mp):  # reg_weight * L_reg of the MaskNet's map on the task faces, nothing else
        m = jax.vmap(lambda lr, hr: nnx.merge(mask.graphdef, mp, mask.rest)(inner.mask_input(lr, hr)))(
            jnp.asarray(batch["face_lr"]), jnp.asarray(batch["face_hr"]))
        return c.meta.reg_weight * inner.mask_regulariser(m)

    expected = jax.grad(reg_only)(mask.params)
    for a, b in zip(jax.tree.leaves(grads[1]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    diff = sum(float(jnp.sum(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(grads[2]), jax.tree.leaves(expected)))
    assert diff > 1e-4 * sum(float(jnp.sum(jnp.abs(b))) for b in jax.tree.leaves(expected))


def test_task_shares_one_degradation_between_faces_and_backgrounds():
    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    background = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    shared = tasks.SharedDraws(np.random.default_rng(7))
    views = [shared.for_image(i) for i in range(3)]
    lrs = [realesrgan_degrade(img, 4, v, REALESRGAN) for img, v in zip((face, background, face), views)]
    assert [lr.shape for lr in lrs] == [(8, 8, 3), (12, 16, 3), (8, 8, 3)]
    # every image replayed the same parameter draws, in the same order
    assert len(shared.log) > 10 and all(v._pos == len(shared.log) for v in views)
    other = tasks.SharedDraws(np.random.default_rng(8))
    realesrgan_degrade(face, 4, other.for_image(0), REALESRGAN)
    assert [x[2] for x in other.log] != [x[2] for x in shared.log]
    # a replay that asks for a different draw than recorded is an error, not a silent mismatch
    with pytest.raises(RuntimeError, match="recorded"):
        shared.for_image(5).integers(3)


def test_sample_task_shapes():
    faces = [f for _, f in tasks.demo_faces()]
    t = tasks.sample_task(faces, faces, n=2, face_size=32, bg_patch=64, scale=4, rng=np.random.default_rng(0),
                          face_jitter=0.1, with_mask=True)
    assert t["face_lr"].shape == (2, 8, 8, 3) and t["face_hr"].shape == (2, 32, 32, 3)
    assert t["bg_lr"].shape == (2, 16, 16, 3) and t["bg_hr"].shape == (2, 64, 64, 3) and t["bg_mask"].shape == (2, 64, 64)


def test_gpen_pseudo_ground_truth_restores_the_upsampled_faces():
    from sslsr.faces.restore import restore_faces

    class Negative(nnx.Module):  # stands in for GPEN's FullGenerator ([-1, 1] faces of `size`): x -> -x
        size = 32

        def __call__(self, x):
            return -x

    gpen = Negative()
    c = ml_collections.ConfigDict({"meta": metaf2n.meta_config()})
    c.meta.pseudo_gt = "gpen"
    rng = np.random.default_rng(1)
    face_lr, face_hr = jnp.asarray(rng.random((1, 2, 4, 4, 3))), jnp.asarray(rng.random((1, 2, 16, 16, 3)))
    pgt = metaf2n.pseudo_ground_truth(c, metaf2n._MetaFrozen(restorer=gpen), face_lr, face_hr)
    assert pgt.shape == face_hr.shape and float(pgt.min()) >= 0 and float(pgt.max()) <= 1
    expected = restore_faces(gpen, jnp.clip(inner.upsample(face_lr[0], 4), 0, 1))
    np.testing.assert_allclose(pgt[0], expected, atol=1e-6)
    assert float(jnp.abs(pgt - face_hr).max()) > 0.1


def test_restorer_faces_align_restore_and_paste_back():
    from sslsr.meta.adapt import FaceBox, RestorerFaces

    class Grey:  # a "restorer" whose output is a flat grey face, to see where it lands
        size, name = 32, "grey"

        def restore(self, faces):
            return np.full_like(faces, 0.5)

    rng = np.random.default_rng(0)
    lr = rng.random((24, 24, 3)).astype(np.float32)
    up = np.asarray(inner.upsample(jnp.asarray(lr[None]), 4)[0])
    marks = np.array([[10, 10], [14, 10], [12, 12], [10.5, 14], [13.5, 14]], np.float64) + [5, 7]  # photo pixels
    box = FaceBox(10, 12, 26, 30, landmarks=marks)
    pgt = RestorerFaces(Grey())(lr, up, box, 7, 5, 4)  # the crop starts at photo (y=7, x=5)
    assert pgt.shape == up.shape
    np.testing.assert_allclose(pgt[48, 48], 0.5, atol=1e-3)  # the face centre: restored
    np.testing.assert_allclose(pgt[0, 0], np.clip(up[0, 0], 0, 1), atol=1e-6)  # the crop corner: untouched
    # no landmarks: the whole upsampled crop goes to the restorer
    np.testing.assert_allclose(RestorerFaces(Grey())(lr, up, FaceBox(10, 12, 26, 30), 7, 5, 4), 0.5)
