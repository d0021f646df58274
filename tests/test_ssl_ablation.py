"""The ±SSL ablation's config pair (experiments/ssl_ablation): the arms may differ only in SSL."""

import importlib.util

import pytest

from sslsr.train.config import validate

from .conftest import REPO


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_config", REPO / "experiments" / "ssl_ablation" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validate_without_t91(config):
    config.data.train = "demo"  # T91 lives in ../shared/data, which a fresh clone lacks
    validate(config)


def _flat(config, prefix=""):
    out = {}
    for key, value in config.items():
        if hasattr(value, "items") and not isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@pytest.mark.parametrize("gan_steps, batch_size, seed", [(400, 4, 0), (10_000, 8, 3)])
def test_arms_differ_only_in_the_ssl_weight(ablation, gan_steps, batch_size, seed):
    base = _flat(ablation.get_config("baseline", gan_steps=gan_steps, batch_size=batch_size, seed=seed))
    ssl = _flat(ablation.get_config("ssl", gan_steps=gan_steps, batch_size=batch_size, seed=seed))
    assert base.keys() == ssl.keys()
    assert {k for k in base if base[k] != ssl[k]} == {"loss.ssl_weight"}
    assert (base["loss.ssl_weight"], ssl["loss.ssl_weight"]) == (0.0, 1000.0)
    assert (ssl["train.total_steps"], ssl["train.batch_size"], ssl["seed"]) == (gan_steps, batch_size, seed)
    assert {k: v for k, v in ssl.items() if k.startswith("loss.perceptual_layers")} == {
        "loss.perceptual_layers.conv5_3": 1.0}


def test_every_stage_is_a_valid_training_config(ablation):
    for arm in ("pretrain", "baseline", "ssl"):
        _validate_without_t91(ablation.get_config(arm, pretrain_steps=1000, gan_steps=400))


def test_pretraining_is_shared_l1_without_ema(ablation):
    pre = [ablation.get_config("pretrain", seed=s, pretrain_steps=1000) for s in (0, 1)]
    assert _flat(pre[0]) == _flat(pre[1])  # one initialisation for every GAN seed
    c = pre[0]
    assert c.discriminator.arch == "" and c.train.ema_decay == 0.0
    assert (c.loss.pixel_weight, c.loss.perceptual_weight, c.loss.gan_weight, c.loss.ssl_weight) == (1.0, 0, 0, 0)
    assert c.train.total_steps == 1000 and tuple(c.train.milestones) == (500,)


@pytest.mark.parametrize("gan_steps, expected", [(400, 0.975), (1000, 0.99), (10_000, 0.999), (50_000, 0.999),
                                                 (10, 0.0), (4, 0.0)])
def test_ema_horizon_is_a_tenth_of_the_gan_stage(ablation, gan_steps, expected):
    assert ablation.gan_ema_decay(gan_steps) == pytest.approx(expected)
    _validate_without_t91(ablation.get_config("ssl", gan_steps=gan_steps))


def test_unknown_arm_is_refused(ablation):
    with pytest.raises(ValueError, match="arm must be"):
        ablation.get_config("ssl_only")
