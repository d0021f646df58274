"""Data parallelism: 8 fake CPU devices give the same update as 1 device (BatchNorm D, SSL, EMA),
and two CPU processes joined by jax.distributed train like one.

Each case runs in a subprocess because XLA_FLAGS / the distributed runtime must be set before JAX
initialises its backend.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

EIGHT_DEVICES = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np, optax
    from flax import nnx
    from sslsr.models import RRDBNet, VGGStyleDiscriminator
    from sslsr.train import sharding
    from sslsr.train.config import base_config
    from sslsr.train.recipes.gan import (Frozen, Net, TrainState, discriminator_grads, generator_grads,
                                         make_train_step)
    from sslsr.weights.offline import load_features

    assert jax.device_count() == 8
    g = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, rngs=nnx.Rngs(0))
    d = VGGStyleDiscriminator(3, 2, 128, rngs=nnx.Rngs(1))  # BatchNorm: statistics over the global batch
    # SGD: updates are linear in the gradients (Adam divides by the root of the second moment, which
    # turns reduction-order noise in a near-zero gradient entry into a sizeable part of its step).
    ts = TrainState(g, optax.sgd(1e-2), d=d, tx_d=optax.sgd(1e-2), ema=True)
    ts.train()
    frozen = Frozen(vgg=load_features("vgg16", layers=("conv1_2",)))
    config = base_config()
    config.loss.perceptual_layers = {"conv1_2": 1.0}
    config.loss.update(pixel_weight=1e-2, perceptual_weight=1.0, gan_weight=5e-3, gan_type="ragan", ssl_weight=1000.0,
                       ssl_search=7, ssl_window=3)
    config.train.ema_decay = 0.9
    graphdef, state0 = nnx.split(ts)
    fgd, fstate0 = nnx.split(frozen)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        hr = rng.random((8, 128, 128, 3), np.float32)
        batches.append({"lr": hr.reshape(8, 32, 4, 32, 4, 3).mean(axis=(2, 4)), "hr": hr,
                        "mask": (rng.random((8, 128, 128)) > 0.8).astype(np.float32)})

    def gradients(state, fstate, batch):
        # The step's G and D gradients before any optimiser: all that sharding can change.
        ts = nnx.merge(graphdef, state)
        g_grads, terms, sr, _, d_rest = generator_grads(config, ts, nnx.merge(fgd, fstate), batch, jax.random.key(0))
        d_grads, d_terms, d_rest = discriminator_grads(config, Net.of(ts.d)._replace(rest=d_rest), batch["hr"],
                                                       jax.lax.stop_gradient(sr))
        return {"g": g_grads, "d": d_grads, "d_state": d_rest}, {**terms, **d_terms}

    def floats(tree):
        return {jax.tree_util.keystr(p): np.asarray(x, np.float64)
                for p, x in jax.tree_util.tree_flatten_with_path(nnx.as_pure(tree))[0]
                if np.issubdtype(np.asarray(x).dtype, np.floating)}

    results = {}
    for n in (1, 8):
        mesh = sharding.data_mesh(jax.devices()[:n])
        rep, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
        state = sharding.replicate(jax.tree.map(jnp.copy, state0), mesh)
        fstate = sharding.replicate(fstate0, mesh)
        grads, terms = jax.jit(gradients, in_shardings=(rep, rep, data), out_shardings=(rep, rep))(
            state, fstate, sharding.global_batch(batches[0], mesh))
        step = jax.jit(make_train_step(graphdef, fgd, config), in_shardings=(rep, rep, data, rep),
                       out_shardings=(rep, rep), static_argnums=4, donate_argnums=0)
        for i, b in enumerate(batches):
            gb = sharding.global_batch(b, mesh)
            assert len(gb["hr"].sharding.device_set) == n and gb["hr"].addressable_shards[0].data.shape[0] == 8 // n
            state, m = step(state, fstate, gb, jnp.int32(i), False)
        leaves = jax.tree_util.tree_flatten_with_path(nnx.as_pure(state))[0]
        assert all(len(x.sharding.device_set) == n for _, x in leaves)
        results[n] = {"grads": {part: floats(grads[part]) for part in grads}, "state": floats(state),
                      "terms": {k: float(v) for k, v in terms.items()}, "m": {k: float(v) for k, v in m.items()}}

    def norm(arrays):
        return float(np.sqrt(sum(np.sum(a * a) for a in arrays)))

    # Per part: the L2 norm of the 8-vs-1-device difference and the norm it is measured against.
    report = {"grads": {}, "state": {}}
    for part, one in results[1]["grads"].items():
        eight = results[8]["grads"][part]
        report["grads"][part] = [norm(one[k] - eight[k] for k in one), norm(one.values())]
    init = floats(state0)
    for part in ("['g']", "['d']", "['ema']"):
        keys = [k for k in results[1]["state"] if k.startswith(part)]
        one, eight = results[1]["state"], results[8]["state"]
        report["state"][part] = [norm(one[k] - eight[k] for k in keys), norm(one[k] - init[k] for k in keys),
                                 norm(one[k] for k in keys)]
    print("RESULT " + json.dumps({**report, "terms1": results[1]["terms"], "terms8": results[8]["terms"],
                                  "m1": results[1]["m"], "m8": results[8]["m"]}))
""")


def _run(script: str, env_extra: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _result(proc) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_eight_devices_match_one_device():
    res = _result(_run(EIGHT_DEVICES, {}))
    # Sharding changes only the order of float sums (batch means reduced across devices), so every
    # gradient, and D's BatchNorm / spectral-norm state, matches up to float32 rounding measured
    # against the norm of the whole part: per-entry tolerances fail on near-zero entries, whose
    # rounding noise depends on the CPU's vector width. Dropping or duplicating part of the global
    # batch changes these by tens of percent.
    for part, (diff, size) in res["grads"].items():
        assert diff <= 1e-4 * size, (part, diff, size)
    for k, v in res["terms1"].items():
        assert res["terms8"][k] == pytest.approx(v, rel=1e-4, abs=1e-7), k
    # Two SGD steps (then the EMA): the parameters' difference is the gradients' (times the
    # learning rate) plus float32 rounding of the parameters themselves.
    for part, (diff, moved, size) in res["state"].items():
        assert diff <= 1e-3 * moved + 4 * np.finfo(np.float32).eps * size, (part, diff, moved, size)
    for k, v in res["m1"].items():
        assert res["m8"][k] == pytest.approx(v, rel=1e-3, abs=1e-6), k


TWO_PROCESS_TRAIN = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    from test_train_loop import load_config, tiny
    from sslsr.train import train_and_evaluate
    c = tiny(load_config("esrgan"), steps=2, pretrain=1)
    c.loss.perceptual_weight = 0.0
    c.train.batch_size = 4
    m = train_and_evaluate(c, sys.argv[1])
    print("RESULT " + json.dumps(m))
""")


@pytest.mark.slow
def test_two_cpu_processes_train_like_one(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2")
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESS_TRAIN, str(tmp_path / "multi")], cwd=REPO,
                              env=dict(env, JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    multi = [json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1][7:]) for out, _ in outs]
    single = _result(_run(TWO_PROCESS_TRAIN.replace("sys.argv[1]", repr(str(tmp_path / "single"))), {}))
    # Each process feeds half of the same global stream (interleaved), so the global batch holds the
    # same samples in another order; every loss is a batch mean, hence the same update.
    for m in multi:
        for k, v in single.items():
            assert m[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    import jax
    from flax import nnx

    from sslsr.train import restore_generator
    from sslsr.weights.checkpoints import build_generator, load_config

    a = restore_generator(str(tmp_path / "multi"))
    b = restore_generator(str(tmp_path / "single"))
    init = build_generator(load_config(str(tmp_path / "single")), seed=0)

    def flat(module):
        return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(nnx.state(module, nnx.Param))])

    # Adam's first steps move each entry by about lr * sign(gradient): reduction-order noise can flip
    # the sign of a near-zero gradient entry (a 2 * lr difference in that entry on some CPUs), so the
    # generators are compared as a whole, against how far training moved them.
    moved = np.linalg.norm(flat(b) - flat(init))
    assert np.linalg.norm(flat(a) - flat(b)) <= 0.1 * moved, (np.linalg.norm(flat(a) - flat(b)), moved)
