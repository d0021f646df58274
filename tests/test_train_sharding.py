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
    from sslsr.models import RRDBNet, VGGStyleDiscriminator, VGGFeatures
    from sslsr.train import sharding
    from sslsr.train.step import Frozen, LossSpec, TrainState, make_train_step

    assert jax.device_count() == 8
    g = RRDBNet(num_feat=4, num_block=1, num_grow_ch=4, rngs=nnx.Rngs(0))
    d = VGGStyleDiscriminator(3, 2, 128, rngs=nnx.Rngs(1))  # BatchNorm: statistics over the global batch
    # SGD: updates are linear in the gradients, so parameter differences measure gradient
    # differences (Adam would amplify reduction-order noise in near-zero gradient entries).
    ts = TrainState(g, optax.sgd(1e-2), d=d, tx_d=optax.sgd(1e-2), ema=True)
    ts.train()
    frozen = Frozen(vgg=VGGFeatures("vgg16", layers=("conv1_2",), rngs=nnx.Rngs(0)))
    spec = LossSpec(pixel=1e-2, perceptual=1.0, perceptual_layers=(("conv1_2", 1.0),), gan=5e-3,
                    gan_type="ragan", ssl=1000.0, ssl_search=7, ssl_window=3, ema_decay=0.9)
    graphdef, state0 = nnx.split(ts)
    fgd, fstate0 = nnx.split(frozen)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        hr = rng.random((8, 128, 128, 3), np.float32)
        batches.append({"lr": hr.reshape(8, 32, 4, 32, 4, 3).mean(axis=(2, 4)), "hr": hr,
                        "mask": (rng.random((8, 128, 128)) > 0.8).astype(np.float32)})
    results = {}
    for n in (1, 8):
        mesh = sharding.data_mesh(jax.devices()[:n])
        rep, data = sharding.replicated(mesh), sharding.batch_sharded(mesh)
        state = sharding.replicate(jax.tree.map(jnp.copy, state0), mesh)
        fstate = sharding.replicate(fstate0, mesh)
        step = jax.jit(make_train_step(graphdef, fgd, spec), in_shardings=(rep, rep, data, rep),
                       out_shardings=(rep, rep), static_argnums=4, donate_argnums=0)
        for i, b in enumerate(batches):
            gb = sharding.global_batch(b, mesh)
            assert len(gb["hr"].sharding.device_set) == n and gb["hr"].addressable_shards[0].data.shape[0] == 8 // n
            state, m = step(state, fstate, gb, jnp.int32(i), False)
        leaves = jax.tree_util.tree_flatten_with_path(nnx.as_pure(state))[0]
        assert all(len(x.sharding.device_set) == n for _, x in leaves)
        results[n] = ({jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves},
                      {k: float(v) for k, v in m.items()})
    init = {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(nnx.as_pure(state0))[0]}
    # Per part: the largest 8-vs-1-device difference relative to how far 2 steps moved the values.
    report = {}
    for k, a in results[1][0].items():
        if not np.issubdtype(a.dtype, np.floating):
            continue
        part = k.split("]")[0] + "]"
        diff = float(np.max(np.abs(a - results[8][0][k])))
        moved = float(np.max(np.abs(a - init[k])))
        worst = report.setdefault(part, [0.0, 0.0, ""])
        if diff > worst[0]:
            report[part] = [diff, moved, k]
    print("RESULT " + json.dumps({"parts": report, "m1": results[1][1], "m8": results[8][1]}))
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
    # Same update up to float summation order (batch means are reduced across devices).
    for part in ("['g']", "['d']", "['ema']"):
        diff, moved, key = res["parts"][part]
        assert diff < 1e-7 + 1e-3 * moved, (part, key, diff, moved)
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
    from sslsr.train import restore_generator

    a = restore_generator(str(tmp_path / "multi"))
    b = restore_generator(str(tmp_path / "single"))
    from flax import nnx

    import jax

    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
