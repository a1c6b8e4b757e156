"""What the critic-free round types (`reward_rloo`, `reward_grpo`) share: their settings and
their sizing. Both train a reward model as `reward_ppo` does, then sample K answers per prompt
(the group annotators rank) and use the others as each answer's baseline: no value head
(docs/training-notes.md §Critic-free rounds)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from app.rounds.round_type import Sized
from app.rounds.schemas import StrictModel
from app.rounds.types.reward_ppo import (
    PPO_MAX_EPISODES,
    PPO_MIN_EPISODES,
    PPO_PASSES,
    PPOSettings,
    rollout_basis,
)

if TYPE_CHECKING:
    from app.models import Project

_PPO = PPOSettings()


class CriticFreeSettings(StrictModel):
    """PPO's proven values where they carry over (learning rate, KL coefficient, clip, epochs,
    mini-batch); the rollout's temperature, length and group size come from the project."""

    steps: Annotated[
        int | None,
        Field(
            ge=1,
            le=100000,
            description="Updates (blank: as many answers as a PPO round samples, about four "
            "per training prompt, in groups of group_size).",
        ),
    ] = None
    group_size: Annotated[
        int | None,
        Field(
            ge=2,
            le=64,
            description="Answers per prompt; each one's baseline is the others (blank: the "
            "project's samples per prompt).",
        ),
    ] = None
    # 4 prompts × the project's 4 samples = PPO's 16 rollouts per update.
    batch_size: Annotated[int, Field(ge=1, le=1024, description="Prompts per update.")] = 4
    mini_batch_size: Annotated[
        int, Field(ge=1, le=4096, description="Answers per optimizer step.")
    ] = _PPO.mini_batch_size
    epochs: Annotated[int, Field(ge=1, le=16, description="Passes over each update's answers.")] = (
        _PPO.ppo_epochs
    )
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = _PPO.learning_rate
    clip_range: Annotated[float, Field(ge=0.01, le=1, description="Ratio clip ε.")] = 0.2
    kl_coef: Annotated[float, Field(ge=0, le=10)] = _PPO.kl_coef
    kl_in: Annotated[
        Literal["reward", "loss"],
        Field(
            description="'reward': the KL to the reference is subtracted from each answer's "
            "reward (as PPO); 'loss': a k3 KL term is added to the loss (as GRPO)."
        ),
    ] = "reward"
    temperature: Annotated[
        float | None,
        Field(ge=0.01, le=5, description="Rollout temperature (blank: the project's)."),
    ] = None
    max_new_tokens: Annotated[
        int | None,
        Field(ge=1, le=8192, description="Rollout length in tokens (blank: the project's)."),
    ] = None


def sizer(key: str) -> Any:
    """The `RoundTypeSpec.size` of a type whose settings (`CriticFreeSettings`) sit under `key`."""

    def size(
        project: Project, config: dict[str, Any], *, prompts: int, rankings: int, n_eval: int
    ) -> dict[str, Sized]:
        """Rollouts as the project samples (temperature, length, answers per prompt), and the
        updates from the rollouts a PPO round would sample (`reward_ppo.PPO_PASSES`)."""
        sized: dict[str, Sized] = {}
        settings = config[key]
        if settings.get("temperature") is None:
            sized[f"{key}.temperature"] = Sized(
                project.temperature, "the project's sampling temperature"
            )
        if settings.get("max_new_tokens") is None:
            sized[f"{key}.max_new_tokens"] = Sized(
                project.max_new_tokens,
                "the project's sample length, so rollouts are as long as what annotators rank",
            )
        group = settings.get("group_size")
        if group is None:
            group = project.samples_per_prompt
            sized[f"{key}.group_size"] = Sized(
                group, "the project's samples per prompt: the group annotators rank"
            )
        if settings.get("steps") is None:
            train_prompts = max(1, prompts - n_eval)
            basis = rollout_basis(config, train_prompts=train_prompts, rankings=rankings)
            episodes = min(PPO_MAX_EPISODES, max(PPO_MIN_EPISODES, PPO_PASSES * basis))
            per_step = settings["batch_size"] * group
            steps = max(1, round(episodes / per_step))
            sized[f"{key}.steps"] = Sized(
                steps,
                f"{PPO_PASSES} rollouts per training prompt ({train_prompts}), or per ranking "
                f"while rankings ({rankings}) are fewer, within {PPO_MIN_EPISODES}-"
                f"{PPO_MAX_EPISODES} rollouts, as PPO: {steps} steps × "
                f"{settings['batch_size']} prompts × {group} answers",
            )
        return sized

    return size
