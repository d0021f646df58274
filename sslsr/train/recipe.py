"""What a training method gives the generic loop (`sslsr.train.loop`): the recipe interface.

A recipe turns a validated config into a `Setup`: the trainable state (checkpointed, one orbax item
per top-level key), the constant networks its losses read (replicated, never checkpointed), the
stages that run its jitted steps over step ranges, and the upscaler validation runs. The loop owns
everything else: workdir, checkpoints and resume with the data-iterator state, signals, sharding
and multi-host, finite checks, logging and validation.

How other families fit without loop changes:
- a diffusion model: `state` holds the denoiser, its optimiser and EMA; one stage whose step draws
  the noise level and noise from `fold_in(key, step)`; `upscaler` is an iterative sampler object
  with `with_state` (see `sslsr.inference`), `eval_state` picks the EMA denoiser.
- meta-learning (e.g. MetaF2N): the step runs the inner adaptation and the outer update;
  `loader_options` asks for the batches it needs; `upscaler` adapts per image in `prepare`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

import ml_collections
from flax import nnx

# (state, constants, batch, step, static) -> (state, metrics): pure, jitted by the loop with the
# state and constants replicated, the batch split over the 'data' mesh axis, `step` an int32
# scalar (the global step about to run, for per-step randomness) and `static` a trace-time switch.
# metrics: {name: float32 scalar}, every loss term the step computed.
StepFn = Callable[[nnx.State, Any, dict, Any, Hashable], tuple[nnx.State, dict]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """Steps [start, end) of a run, all made by one jitted step function.

    name: shown in the log.
    step: the pure step (see `StepFn`).
    static: step -> the `static` argument of `step` for that step (e.g. a loss term switched on
      from some step); each distinct value compiles once.
    begin: state -> state, applied before the stage's first step (also when a run resumes exactly
      there), e.g. restarting an EMA from the weights the previous stage produced.
    eval_state: state -> the state of the network inference uses after a step of this stage,
      handed to `Setup.upscaler.with_state`.
    """

    name: str
    start: int
    end: int
    step: StepFn
    eval_state: Callable[[nnx.State], nnx.State]
    static: Callable[[int], Hashable] = lambda step: None
    begin: Callable[[nnx.State], nnx.State] | None = None


class Upscaler(Protocol):
    """The validation side of `sslsr.inference.Upscaler`: the same model with other weights."""

    scale: int

    def with_state(self, state: nnx.State) -> Any:
        """An `sslsr.inference.Upscaler` running these weights (no recompilation)."""
        ...


@dataclasses.dataclass
class Setup:
    """A recipe's state and steps for one run.

    state: the trainable state (`nnx.state` of the recipe's modules and optimisers), on the host;
      the loop replicates, checkpoints and restores it.
    constants: networks the losses read but never train (e.g. VGG features); replicated, not saved.
    stages: contiguous, covering [0, config.train.total_steps).
    upscaler: what validation runs, given `stage.eval_state(state)`; None for a recipe with no SR
      output (RankSRGAN's ranker), whose validate() then requires `data.val = ''` (the loop builds
      a validator only when data.val is set).
    """

    state: nnx.State
    constants: Any
    stages: Sequence[Stage]
    upscaler: Upscaler | None


class Recipe(Protocol):
    """A training method. Stateless: everything per run lives in the `Setup` it builds."""

    # The registry role `config.generator.arch` must have: the network the recipe trains
    # (GENERATOR for SR methods, DENOISER for diffusion, RANKER for RankSRGAN's ranker).
    role: str

    def scale(self, config: ml_collections.ConfigDict) -> int:
        """The run's upscaling factor (the data pipeline's LR/HR ratio; 1 for a network that does
        not upscale); ConfigError naming the field when it is not one the recipe supports."""
        ...

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Raises `ConfigError` naming the field for the recipe's own fields (before any build)."""
        ...

    def loader_options(self, config: ml_collections.ConfigDict) -> dict:
        """Keywords for `sslsr.data.pipeline.make_train_loader` that depend on the recipe
        (e.g. whether batches carry an edge mask)."""
        ...

    # Optional: `train_loader(config, per_process_batch) -> grain IterDataset` for a recipe whose
    # batches are not (LR, HR) patches (MetaF2N's tasks); the loop then uses it instead of
    # `sslsr.data.pipeline.make_train_loader` (its iterator state is checkpointed the same way).

    def setup(self, config: ml_collections.ConfigDict) -> Setup:
        """Builds the modules, optimisers and steps `config` describes."""
        ...
