"""Every private JAX hook of sslsr.jax_private is still found in the installed JAX."""

import jax
import jax.numpy as jnp
import pytest

from sslsr import jax_private


def test_tracer_hook_found_and_restored():
    assert jax_private.tracer_hook_available(), "JAX moved DynamicJaxprTracer._origin_msg: update sslsr.jax_private"
    from jax._src.interpreters.partial_eval import DynamicJaxprTracer

    original = DynamicJaxprTracer.__dict__["_origin_msg"]
    with jax_private.cheap_tracer_errors():
        assert DynamicJaxprTracer.__dict__["_origin_msg"] is not original
        assert jax.make_jaxpr(lambda x: x * 2)(jnp.ones(2)) is not None
    assert DynamicJaxprTracer.__dict__["_origin_msg"] is original


def test_barrier_hook_found():
    assert jax_private.barrier_hook_available(), "JAX moved the coordination-service barrier: update sslsr.jax_private"


def test_barrier_without_distributed_runtime_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not initialized"):
        jax_private.wait_at_barrier("x", 1)
