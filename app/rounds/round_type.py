"""What a round type declares (`RoundTypeSpec`), in its own module of `app.rounds.types`:
its config model, its stages, its trainer, what it sizes from the project and what it adds to
the gate. `app.rounds.registry` holds the declared types; the rest of the code reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.rounds.schemas import RoundConfigBase


@dataclass(frozen=True)
class Stage:
    """One step of a round; `name` is the round's state while it runs."""

    name: str
    title: str
    """What it is, as the reaper's error says it: "PPO training", "evaluation"."""
    doing: str
    """What it was doing, as a failed round's one-line error says it."""
    lower: str
    """The settings that take less memory there, named when it ran out."""


REWARD_MODEL = Stage(
    "reward_model",
    title="reward model training",
    doing="training the reward model",
    lower="reward_model.max_length (or choose a smaller reward_model.base_model)",
)
EVALUATING = Stage(
    "evaluating",
    title="evaluation",
    doing="evaluating the new version (the promotion gate)",
    lower="gate_samples or eval_prompts",
)
SAMPLING = Stage(
    "sampling",
    title="sampling",
    doing="sampling the new version for annotators",
    lower="the project's samples per prompt or max new tokens",
)


def policy_stage(algorithm: str, *, lower: str) -> Stage:
    """The stage that trains the policy with `algorithm` ("PPO", "SFT", ...)."""
    return Stage(
        "policy",
        title=f"{algorithm} training",
        doing=f"training the policy with {algorithm}",
        lower=lower,
    )


@dataclass(frozen=True)
class Sized:
    """A value a round left blank, sized from the project (`app.rounds.sizing`), and why."""

    value: Any
    reason: str


GateFigures = Callable[[Any, dict[str, Any]], dict[str, Any]]
"""(the round's parsed config, the candidate's training summary) → figures the type adds to
the gate's; pure, so the gate stays a function of numbers (`app.rounds.gate.decide`)."""


SizeSettings = Callable[..., dict[str, Sized]]
"""(project, parsed config, *, prompts, rankings, n_eval) → {dotted name: sizing.Sized} for the
blank settings only this type has; n_eval is the gate's held-out prompt count."""


@dataclass(frozen=True)
class RoundTypeSpec:
    """A round type: everything the state machine, the form, the API, the command line and the
    worker need to know about it, declared once in the type's module."""

    name: str
    """Stored on the round (`TrainingRound.type`) and sent as the config's `type`: lower-case
    letters, digits and underscores, at most 40 characters (`app.rounds.registry.register`)."""
    config: type[RoundConfigBase]
    """The pydantic model of its settings: their one set of defaults and bounds."""
    stages: tuple[Stage, ...]
    """In order: the state machine's happy path."""
    trainer: str
    """"module:function" the worker's policy stage calls with a `worker.jobs.rounds.PolicyJob`;
    it returns the training summary with the adapter's directory under "adapter_dir"."""
    trains_on: Literal["rankings", "demonstrations"]
    """What the round needs before it may start (`app.rounds.preconditions`)."""
    gate_figures: GateFigures | None = None
    """Figures the gate adds for this type (and `decide` reads), e.g. DPO's pair accuracy."""
    size: SizeSettings | None = None
    """Sizes the type's own blank settings from the project (`app.rounds.sizing`)."""
    trains_against_reward_model: bool = False
    """The policy optimises the round's reward model: the gate shows the gain that model
    reports beside the held-out judge's (a gain only it sees is over-optimisation)."""

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> Stage | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    def parse(self, config: dict[str, Any]) -> RoundConfigBase:
        """The stored (already validated) config as its typed model."""
        return self.config.model_validate({**config, "type": self.name})
