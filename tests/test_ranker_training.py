"""RankSRGAN's ranker training (recipe 'ranker', sslsr/train/recipes/ranker.py, configs/ranker.py):
the margin ranking loss against its definition, a short run on a tiny labelled set (smooth images,
clean and noisy, labelled by noise level) that learns to order them, the label file checks, and
the trained workdir as RankSRGAN's `loss.rank_weights`.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sslsr.data.io import write_png
from sslsr.errors import UserError
from sslsr.train import ConfigError
from sslsr.train.config import validate
from sslsr.train.loop import train_and_evaluate
from sslsr.train.recipes import gan
from sslsr.train.recipes.ranker import margin_ranking_loss

REPO = pathlib.Path(__file__).resolve().parents[1]
NOISE = {"clean": 0.0, "noisy": 0.15}  # method folder -> noise std (its label: more noise = worse)


def _config_file(name: str, arg: str | None = None):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg), module.__doc__


def _smooth(rng, size: int = 40) -> np.ndarray:
    """A smooth random colour image: a bilinear upsampling of a 3x3 grid."""
    grid = rng.uniform(0.2, 0.8, (3, 3, 3))
    t = np.linspace(0, 2, size)
    i0 = np.minimum(t.astype(int), 1)
    f = (t - i0)[:, None]
    rows = grid[i0] * (1 - f[..., None]) + grid[i0 + 1] * f[..., None]  # (size, 3, 3)
    cols = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
    return cols


def _pair(rng) -> dict[str, np.ndarray]:
    x = _smooth(rng)
    return {m: np.clip(np.round((x + rng.normal(0, s, x.shape)) * 255), 0, 255).astype(np.uint8)
            for m, s in NOISE.items()}


def _dataset(root: pathlib.Path, n: int = 4) -> pathlib.Path:
    """root/<method>/<k>.png for n contents, and root/labels.txt ('<method>/<name> <score>')."""
    rng = np.random.default_rng(0)
    lines = ["# method/name score"]
    for k in range(n):
        for method, img in _pair(rng).items():
            (root / method).mkdir(parents=True, exist_ok=True)
            write_png(root / method / f"{k}.png", img)
            lines.append(f"{method}/{k}.png {NOISE[method] * 20:.3f}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root / "labels.txt"


def _tiny(root: pathlib.Path, labels, steps: int):
    c, _ = _config_file("ranker")
    c.data.train = str(root)
    c.ranking.labels = str(labels)
    c.generator.kwargs.nf = 8
    c.data.hr_patch = 32
    c.train.batch_size = 4
    c.train.total_steps = steps
    c.train.lr_g = 2e-3
    c.train.milestones = ()
    c.log.every = 1
    c.log.ckpt_every = 1000
    return c


def test_margin_ranking_loss_matches_its_definition():
    rng = np.random.default_rng(1)
    p1, p2 = rng.normal(size=(2, 16)).astype(np.float32)
    s1, s2 = rng.integers(0, 3, (2, 16)).astype(np.float32)  # with ties: y = +1 (score1 >= score2)
    y = np.where(s1 >= s2, 1.0, -1.0)
    expected = np.mean([max(0.0, -yi * (a - b) + 0.5) for a, b, yi in zip(p1, p2, y)])
    got = jax.jit(margin_ranking_loss, static_argnums=4)(p1, p2, s1, s2, 0.5)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # img1 labelled worse (3 > 1), scored higher by more than the margin: no loss; lower: margin + gap.
    one = lambda v: jnp.array([v])  # noqa: E731
    assert float(margin_ranking_loss(one(2.0), one(1.0), one(3.0), one(1.0), 0.5)) == 0
    assert float(margin_ranking_loss(one(1.0), one(2.0), one(3.0), one(1.0), 0.5)) == 1.5


def test_ranker_learns_the_order_and_serves_as_rank_weights(tmp_path):
    labels = _dataset(tmp_path / "data")
    c = _tiny(tmp_path / "data", labels, steps=30)
    workdir = tmp_path / "run"
    train_and_evaluate(c, str(workdir))
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["l_rank"] for r in records if "l_rank" in r]
    accuracy = [r["acc"] for r in records if "acc" in r]
    assert len(losses) == 30
    # The untrained ranker starts near the margin (0.5); the easy order is learned within steps
    # (per-batch values stay noisy: 4 pairs a batch).
    assert np.mean(losses[-15:]) < 0.7 * losses[0]
    assert np.mean(accuracy[-15:]) >= 0.75

    # The workdir is RankSRGAN's ranker: a config accepts it, the GAN recipe loads it.
    g, _ = _config_file("ranksrgan", "demo")
    g.loss.rank_weights = str(workdir)
    validate(g)
    ranker = gan.load_ranker(g)
    assert type(ranker).__name__ == "RankerVGG12"
    # ... and ranks unseen clean images better (lower) than their noisy versions.
    rng = np.random.default_rng(7)
    pairs = [_pair(rng) for _ in range(4)]
    batch = np.stack([p[m] for p in pairs for m in NOISE]).astype(np.float32)[:, 4:36, 4:36] / 255
    for mode in ("train", "eval"):  # batch statistics (RankSRGAN) and the running ones (the GAN recipe)
        getattr(ranker, mode)()
        scores = np.asarray(nnx.jit(lambda m, x: m(x))(ranker, jnp.asarray(batch)))[:, 0].reshape(4, 2)
        assert np.all(scores[:, 0] < scores[:, 1]), (mode, scores)
    # ... and is no super-resolution model: eval.py / upscale / init_from refuse it in one line.
    from sslsr.errors import UserError
    from sslsr.weights import load_generator

    with pytest.raises(UserError, match="'ranker' run training a RankerVGG12 .ranker., not a super-resolution model"):
        load_generator(str(workdir))


def test_demo_variant_and_docstring():
    c, doc = _config_file("ranker", "demo")
    assert all(word in doc for word in ("Run:", "Expected time", "Expected result", ":demo"))
    assert _config_file("ranker")[0].train.total_steps >= 100_000
    validate(c)


@pytest.mark.parametrize("content, problem", [
    (None, "no such label file"),
    ("clean/0.png\n", "line 1: expected '<method>/<name> <score>'"),
    ("clean/0.png good\n", "line 1: score 'good' is not a number"),
    ("clean/0.png nan\n", "line 1: score 'nan' is not finite"),
    ("0.png 1.0\n", "line 1: '0.png' is not '<method folder>/<name>'"),
    ("clean/9.png 1.0\n", "line 1: "),
    ("clean/0.png 0\nclean/1.png 1\n", "no content labelled for two methods"),
    (b"\xff\xfe\x00bad", "cannot read it as text"),
])
def test_bad_label_file_is_one_line_naming_it(tmp_path, content, problem):
    _dataset(tmp_path / "data", n=2)
    labels = tmp_path / "bad_labels.txt"
    if isinstance(content, bytes):
        labels.write_bytes(content)
    elif content is not None:
        labels.write_text(content)
    c = _tiny(tmp_path / "data", labels, steps=1)
    with pytest.raises(ConfigError) as e:
        validate(c)
    msg = str(e.value)
    assert msg.startswith(f"config.ranking.labels: {labels}: ") and problem in msg and "\n" not in msg


def test_non_ranker_workdir_as_rank_weights_is_a_user_error(tmp_path):
    from sslsr.weights import load_ranker

    (tmp_path / "config.json").write_text(json.dumps({"recipe": "gan"}))
    with pytest.raises(UserError, match="not a ranker's"):
        load_ranker(tmp_path)
