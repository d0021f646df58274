"""The only place the package reaches into private JAX internals.

Each hook has a public-API fallback or a clear failure, and tests/test_jax_private.py checks that the
installed JAX still has every one of them, so a JAX upgrade that moves one fails a test instead of
silently slowing model construction down or breaking multi-host training.
"""

from __future__ import annotations

import contextlib


def _tracer_class():
    """JAX's DynamicJaxprTracer when it still defines `_origin_msg`, else None."""
    try:
        from jax._src.interpreters.partial_eval import DynamicJaxprTracer
    except ImportError:  # pragma: no cover - depends on the JAX version
        return None
    return DynamicJaxprTracer if "_origin_msg" in DynamicJaxprTracer.__dict__ else None


def tracer_hook_available() -> bool:
    """Whether `cheap_tracer_errors` can take effect with the installed JAX."""
    return _tracer_class() is not None


@contextlib.contextmanager
def cheap_tracer_errors():
    """Skips building JAX's "where did this tracer come from" text while tracing a constructor.

    Every `rngs.params()` call updates the RNG counter, and flax's `Variable.set_value` probes
    `getattr(value, 'sharding', None)`; on a tracer that raises an AttributeError whose message
    walks the whole jaxpr traced so far, so abstract construction is quadratic in the number of
    layers (about 30 s for RRDBNet-23 instead of 3 s). The message is never shown there. If JAX's
    private hook moves, this is a no-op and construction is just slower.
    """
    cls = _tracer_class()
    if cls is None:  # pragma: no cover - depends on the JAX version
        yield
        return
    original = cls.__dict__["_origin_msg"]
    cls._origin_msg = lambda self: ""
    try:
        yield
    finally:
        cls._origin_msg = original


def _distributed_state():
    from jax._src import distributed

    return distributed.global_state


def barrier_hook_available() -> bool:
    """Whether the coordination-service client type `wait_at_barrier` uses still exists."""
    try:
        from jax._src.lib import _jax
    except ImportError:  # pragma: no cover - depends on the JAX version
        return False
    return hasattr(_distributed_state(), "client") and hasattr(_jax.DistributedRuntimeClient, "wait_at_barrier")


def wait_at_barrier(name: str, timeout_s: int) -> None:
    """Blocks until every process reaches barrier `name`, for up to `timeout_s` seconds.

    The public API has no barrier with a timeout (`multihost_utils.sync_global_devices` is a
    collective, whose gloo context gives up when processes arrive ~30 s apart); the coordination
    service's barrier waits as long as asked. Needs `jax.distributed.initialize` first.
    """
    client = _distributed_state().client
    if client is None:
        raise RuntimeError(f"barrier {name!r}: jax.distributed is not initialized")
    client.wait_at_barrier(name, timeout_in_ms=timeout_s * 1000)
