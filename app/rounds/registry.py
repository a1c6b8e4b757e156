"""The round types, each declared once (`RoundTypeSpec`) in its own module of
`app.rounds.types`: its config model, its stages, its trainer and what it adds to the gate.

The service's state machine, the round form, the API's config union and the command line all
read this registry, so a new round type is one new module listed in `app.rounds.types`. The
web app never imports the worker: the trainer is named by a "module:function" string that the
worker resolves (`worker.jobs.rounds.policy_stage`). A type's name and its stage names are
stored on the round (`RoundType`, `RoundState`), so they must be values those columns accept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Field

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


GateFigures = Callable[[Any, dict[str, Any]], dict[str, Any]]
"""(the round's parsed config, the candidate's training summary) → figures the type adds to
the gate's; pure, so the gate stays a function of numbers (`app.rounds.gate.decide`)."""


@dataclass(frozen=True)
class RoundTypeSpec:
    name: str
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


_TYPES: dict[str, RoundTypeSpec] = {}


def _loaded() -> dict[str, RoundTypeSpec]:
    if not _TYPES:
        from app.rounds.types import BUILTIN  # the modules import this one: loaded on first use

        for spec in BUILTIN:
            _TYPES.setdefault(spec.name, spec)
    return _TYPES


def register(spec: RoundTypeSpec) -> RoundTypeSpec:
    """Add (or replace) a type; refused when a round of it could not be stored."""
    from app.models import RoundState, RoundType

    if spec.name not in {t.value for t in RoundType}:
        raise ValueError(
            f"No round type {spec.name!r} in app.models.RoundType: add it there, with a "
            "migration for the rounds table's check"
        )
    states = {state.value for state in RoundState}
    for stage in spec.stages:
        if stage.name not in states:
            raise ValueError(f"A round's state cannot be stage {stage.name!r} (RoundState)")
    _loaded()[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _loaded().pop(name, None)


@contextmanager
def registered(spec: RoundTypeSpec) -> Iterator[RoundTypeSpec]:
    """`spec` registered for the block (in place of a type of its name), then restored."""
    types = _loaded()
    previous = types.get(spec.name)
    register(spec)
    try:
        yield spec
    finally:
        if previous is None:
            unregister(spec.name)
        else:
            types[spec.name] = previous  # in its place: the form and the API keep their order


def find(name: str) -> RoundTypeSpec | None:
    return _loaded().get(name)


def get(name: str) -> RoundTypeSpec:
    spec = find(name)
    if spec is None:
        raise KeyError(f"No round type {name!r}")
    return spec


def names() -> list[str]:
    return list(_loaded())


def all_types() -> list[RoundTypeSpec]:
    return list(_loaded().values())


def configs() -> dict[str, type[RoundConfigBase]]:
    """Each type's config model, by type name."""
    return {spec.name: spec.config for spec in all_types()}


def config_union() -> Any:
    """The configs of every type, told apart by their `type` field (the API's request body)."""
    models = tuple(configs().values())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at runtime
