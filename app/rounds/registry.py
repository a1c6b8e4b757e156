"""The round types, each declared once (`app.rounds.round_type.RoundTypeSpec`) in its own
module of `app.rounds.types`: its config model, its stages, its trainer and what it adds to the
gate.

The service's state machine, the round form, the API's config union and the command line all
read this registry, so a new round type is one new module listed in `app.rounds.types`. The
web app never imports the worker: the trainer is named by a "module:function" string that the
worker resolves (`worker.jobs.rounds.policy_stage`). A type's name is stored on the round as
it is (a short lower-case name: no migration for a new type); its stage names are the round's
states, so they must be `RoundState` values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Union

from pydantic import Field

from app.models import RoundState
from app.models.training_round import ROUND_TYPE_LENGTH
from app.rounds.round_type import RoundTypeSpec
from app.rounds.schemas import RoundConfigBase
from app.rounds.types import BUILTIN

_TYPES: dict[str, RoundTypeSpec] = {spec.name: spec for spec in BUILTIN}
_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{ROUND_TYPE_LENGTH - 1}}}")


def register(spec: RoundTypeSpec) -> RoundTypeSpec:
    """Add (or replace) a type; refused when a round of it could not be stored."""
    if not _NAME.fullmatch(spec.name):
        raise ValueError(
            f"A round type {spec.name!r} cannot be stored on a round: name it with lower-case "
            f"letters, digits and underscores, at most {ROUND_TYPE_LENGTH} characters"
        )
    states = {state.value for state in RoundState}
    for stage in spec.stages:
        if stage.name not in states:
            raise ValueError(f"A round's state cannot be stage {stage.name!r} (RoundState)")
    _TYPES[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _TYPES.pop(name, None)


@contextmanager
def registered(spec: RoundTypeSpec) -> Iterator[RoundTypeSpec]:
    """`spec` registered for the block (in place of a type of its name), then restored."""
    previous = _TYPES.get(spec.name)
    register(spec)
    try:
        yield spec
    finally:
        if previous is None:
            unregister(spec.name)
        else:
            _TYPES[spec.name] = previous  # in its place: the form and the API keep their order


def find(name: str) -> RoundTypeSpec | None:
    return _TYPES.get(name)


def get(name: str) -> RoundTypeSpec:
    spec = find(name)
    if spec is None:
        raise KeyError(f"No round type {name!r}")
    return spec


def names() -> list[str]:
    return list(_TYPES)


def all_types() -> list[RoundTypeSpec]:
    return list(_TYPES.values())


def configs() -> dict[str, type[RoundConfigBase]]:
    """Each type's config model, by type name."""
    return {spec.name: spec.config for spec in all_types()}


def config_union() -> Any:
    """The configs of every type, told apart by their `type` field (the API's request body)."""
    models = tuple(configs().values())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at runtime
