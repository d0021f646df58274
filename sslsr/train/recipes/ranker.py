"""RankSRGAN's ranker training (`config.recipe = 'ranker'`): learn to order SR images by a
perceptual index, for the rank-content loss of `configs/ranksrgan*.py` (`loss.rank_weights`).

Data (RankSRGAN's rank dataset: patches of the same content restored by several SR methods, each
labelled with its perceptual index, lower = better):

    <data.train>/<method>/<name>     one folder per SR method; the same <name> in two method
                                     folders is the same content (RankSRGAN pairs its three
                                     folders by sorted position; here by name)
    <ranking.labels>                 a text file, one `<method>/<name> <score>` per line (paths
                                     relative to data.train, whitespace-separated as RankSRGAN's
                                     label .txt; blank lines and lines starting with '#' skipped)

A sample is one content drawn at random and two of its labelled methods drawn at random (RankSRGAN
draws one of its three method pairs uniformly), cropped at the same random place to
`data.hr_patch` (296 for `Ranker_VGG12_296`; RankSRGAN's patches are already that size).
`data.train = 'demo'` builds an easy labelled set in memory instead: the bundled photos clean
and with Gaussian noise of std 0.04 and 0.1, labelled 0, 1, 2.

Per step (RankSRGAN's `Ranker_Model.optimize_parameters`): the ranker, in train mode (BatchNorm on
batch statistics), scores the batch of first images and then the batch of second images, both
scores are clamped to [-clamp, clamp] (5), and the margin ranking loss with margin 0.5 and target
y = +1 where score1 >= score2 else -1 pushes the worse-labelled image's score above the other's:
a higher output means a worse predicted perceptual index, what RankSRGAN's rank-content loss
minimises. Adam (`train.lr_g`, `train.betas`, `train.milestones`) with PyTorch's coupled weight
decay (`ranking.weight_decay` x parameters added to the gradient, every parameter as published).

No SR output: the recipe has no upscaler, so validation is off (`data.val = ''`); the logged
`acc` is the fraction of the batch's pairs the ranker orders correctly. Checkpoint items: 'ranker'
and 'opt'. `sslsr.weights.load_ranker(workdir)` (and so `loss.rank_weights=<workdir>`) restores the
trained ranker.
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sslsr.models import registry
from sslsr.models.precision import compute_dtype
from sslsr.train.config import error
from sslsr.train.recipe import Setup, Stage
from sslsr.train.recipes.gan import Net, _adam, _norm, _schedule, forward

# The demo's synthetic methods: Gaussian noise std -> label (more noise = worse).
DEMO_NOISE = (0.0, 0.04, 0.1)


def ranking_config(labels: str = "") -> ml_collections.ConfigDict:
    """The `config.ranking` group (RankSRGAN's train_Ranker.yml / Ranker_model.py)."""
    r = ml_collections.ConfigDict()
    r.labels = labels  # the label file (module docstring); unused with data.train='demo'
    r.margin = 0.5  # nn.MarginRankingLoss(margin=0.5)
    r.clamp = 5.0  # scores clamped to [-5, 5] before the loss
    r.weight_decay = 1e-4  # weight_decay_R: torch Adam's L2 term
    return r


def margin_ranking_loss(pred1, pred2, score1, score2, margin: float):
    """RankSRGAN's rank loss: mean over the batch of max(0, -y (pred1 - pred2) + margin),
    y = +1 where label score1 >= score2 (img1 the worse or equal) else -1.

    pred1, pred2: (B,) or (B, 1) ranker outputs; score1, score2: the same shape, the labels.
    """
    y = jnp.where(score1 >= score2, 1.0, -1.0)
    return jnp.mean(jnp.maximum(0.0, -y * (pred1 - pred2) + margin))


def read_labels(path: str, root: str) -> list[list[tuple[str, float]]]:
    """The label file -> groups of (image path, score), one group per content with >= 2 methods.

    Raises ConfigError (`config.ranking.labels: <file> ...`) naming the file and the first problem.
    """
    def bad(msg: str):
        return error("ranking.labels", f"{path}: {msg}")

    file = pathlib.Path(os.path.expanduser(path))
    if not file.is_file():
        raise bad("no such label file (lines '<method>/<name> <score>')")
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise bad(f"cannot read it as text ({type(e).__name__})") from None
    base = pathlib.Path(os.path.expanduser(root))
    groups: dict[str, list[tuple[str, float]]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise bad(f"line {number}: expected '<method>/<name> <score>', got {line.strip()!r}")
        rel, value = parts
        try:
            score = float(value)
        except ValueError:
            raise bad(f"line {number}: score {value!r} is not a number") from None
        if not np.isfinite(score):
            raise bad(f"line {number}: score {value!r} is not finite")
        method, sep, name = rel.partition("/")
        if not sep or not name:
            raise bad(f"line {number}: {rel!r} is not '<method folder>/<name>'")
        if not (base / rel).is_file():
            raise bad(f"line {number}: {base / rel} does not exist")
        groups.setdefault(name, []).append((str(base / rel), score))
    pairs = [g for g in groups.values() if len(g) >= 2]
    if not pairs:
        raise bad(f"no content labelled for two methods ({len(groups)} names): nothing to rank")
    return pairs


def demo_groups() -> list[list[tuple[np.ndarray, float]]]:
    """The demo's labelled set: each bundled training photo clean and noisy (`DEMO_NOISE`)."""
    from sslsr.data.builtin import demo_images

    rng = np.random.default_rng(0)
    groups = []
    for _, img in demo_images("train"):
        x = img.astype(np.float32) / 255
        groups.append([(np.clip(np.round((x + rng.normal(0, s, x.shape)) * 255), 0, 255).astype(np.uint8),
                        float(i)) for i, s in enumerate(DEMO_NOISE)])
    return groups


def _groups(config):
    if config.data.train == "demo":
        return demo_groups()
    return read_labels(config.ranking.labels, config.data.train)


class _PairMap:
    """grain random map: (index, rng) -> one labelled pair, float32 images in [0, 1] cropped alike."""

    def __init__(self, config):
        self.groups = _groups(config)
        self.size = int(config.data.hr_patch)

    def __call__(self, index, rng):
        from sslsr.data.io import read_image
        from sslsr.errors import InputError

        del index  # every pair is drawn from rng (seeded by the index)
        group = self.groups[rng.integers(len(self.groups))]
        i, j = rng.choice(len(group), 2, replace=False)
        images = [group[k][0] if isinstance(group[k][0], np.ndarray) else read_image(group[k][0]) for k in (i, j)]
        h, w = images[0].shape[:2]
        if images[1].shape[:2] != (h, w) or min(h, w) < self.size:
            where = [group[k][0] if isinstance(group[k][0], str) else "demo" for k in (i, j)]
            raise InputError(f"{where[0]}: the pair ({where[1]}) must have one size >= data.hr_patch="
                             f"{self.size}, got {images[0].shape[:2]} and {images[1].shape[:2]}")
        y, x = rng.integers(h - self.size + 1), rng.integers(w - self.size + 1)
        crop = [im[y:y + self.size, x:x + self.size].astype(np.float32) / np.float32(255) for im in images]
        return {"img1": crop[0], "img2": crop[1],
                "score1": np.float32(group[i][1]), "score2": np.float32(group[j][1])}


class RankerState(nnx.Module):
    """The ranker and its Adam (with weight decay)."""

    def __init__(self, ranker: nnx.Module, tx: optax.GradientTransformation):
        self.ranker = ranker
        self.opt = nnx.Optimizer(ranker, tx, wrt=nnx.Param)


def make_rank_step(graphdef, config):
    """`step(state, constants, batch, step, static) -> (state, metrics)`: one ranker update on a
    batch of `RankerRecipe.train_loader`."""
    r = config.ranking
    dtype = compute_dtype(config.train.compute_dtype)

    def step_fn(state, constants, batch, step, static=None):
        del constants, step, static
        ts = nnx.merge(graphdef, state)
        net = Net.of(ts.ranker)

        def objective(params):
            # Two forwards as RankSRGAN: each batch is normalised with its own statistics.
            p1, rest = forward(net.graphdef, params, net.rest, batch["img1"], dtype)
            p2, rest = forward(net.graphdef, params, rest, batch["img2"], dtype)
            p1, p2 = (jnp.clip(p[:, 0], -r.clamp, r.clamp) for p in (p1, p2))
            loss = margin_ranking_loss(p1, p2, batch["score1"], batch["score2"], float(r.margin))
            return loss, (rest, p1, p2)

        (loss, (rest, p1, p2)), grads = jax.value_and_grad(objective, has_aux=True)(net.params)
        nnx.update(ts.ranker, rest)
        ts.opt.update(ts.ranker, grads)
        y = jnp.where(batch["score1"] >= batch["score2"], 1.0, -1.0)
        return nnx.state(ts), {"l_rank": loss, "acc": jnp.mean((y * (p1 - p2) > 0).astype(jnp.float32)),
                               "grad_norm_r": _norm(grads)}

    return step_fn


def init_ranker(config) -> nnx.Module:
    """The ranker `config.generator` describes (seeded), from `generator.init_from` when set
    (a ranker .pth or a ranker workdir: fine-tuning), in train mode."""
    if config.generator.init_from:
        from sslsr.weights import load_ranker

        ranker = load_ranker(os.path.expanduser(config.generator.init_from), **dict(config.generator.kwargs))
    else:
        ranker = registry.build(config.generator.arch, rngs=nnx.Rngs(config.seed), **dict(config.generator.kwargs))
    ranker.train()
    return ranker


class RankerRecipe:
    """`sslsr.train.recipe.Recipe` for RankSRGAN's ranker (see the module docstring)."""

    role = registry.RANKER

    def scale(self, c: ml_collections.ConfigDict) -> int:
        return 1  # a ranker scores images: its "LR" and "HR" are the same crop

    def validate(self, c: ml_collections.ConfigDict) -> None:
        if "ranking" not in c:
            raise error("ranking", "missing: ranker configs carry a ranking group "
                        "(sslsr.train.recipes.ranker.ranking_config)")
        r = c.ranking
        if c.generator.arch not in registry.names(registry.RANKER):
            raise error("generator.arch", f"the ranker recipe trains one of {registry.names(registry.RANKER)}, "
                        f"got {c.generator.arch!r}")
        if c.discriminator.arch:
            raise error("discriminator.arch", "the ranker trains alone: set ''")
        if c.data.val or c.log.best_metric:
            raise error("data.val", "a ranker has no SR output to validate: set data.val='' and log.best_metric=''")
        if c.data.hr_patch < 32:
            raise error("data.hr_patch", f"{c.data.hr_patch}: the ranker takes square crops of at least 32 px")
        if c.train.ema_decay or c.train.pretrain_steps or c.train.grad_accum != 1:
            raise error("train.ema_decay", "the ranker keeps no EMA, has no L1 stage and no gradient accumulation: "
                        "set train.ema_decay=0, train.pretrain_steps=0, train.grad_accum=1")
        if not r.margin > 0 or not r.clamp > 0:
            raise error("ranking.margin", f"margin ({r.margin}) and clamp ({r.clamp}) must be > 0")
        if not r.weight_decay >= 0:
            raise error("ranking.weight_decay", f"must be >= 0, got {r.weight_decay}")
        if c.data.train != "demo":
            read_labels(r.labels, c.data.train)

    def loader_options(self, config: ml_collections.ConfigDict) -> dict:
        return {}

    def train_loader(self, config: ml_collections.ConfigDict, batch_size: int):
        """Infinite, resumable stream of `batch_size` labelled pairs: float32 {'img1', 'img2'
        (B, P, P, 3) in [0, 1], 'score1', 'score2' (B,)}."""
        from sslsr.data.pipeline import make_random_stream

        return make_random_stream(_PairMap(config), batch_size=batch_size, seed=config.seed,
                                  num_workers=config.data.num_workers)

    def setup(self, config: ml_collections.ConfigDict) -> Setup:
        config = ml_collections.FrozenConfigDict(config)
        t = config.train
        tx = optax.chain(optax.add_decayed_weights(float(config.ranking.weight_decay)),
                         _adam(t, _schedule(t, t.lr_g)))
        ts = RankerState(init_ranker(config), tx)
        graphdef, state = nnx.split(ts)
        stage = Stage("rank", 0, t.total_steps, make_rank_step(graphdef, config), eval_state=lambda s: s["ranker"])
        return Setup(state=state, constants=None, stages=[stage], upscaler=None)
