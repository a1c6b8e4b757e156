"""Round configurations, one pydantic model per round type, validated before a round starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: Annotated[
        int | None,
        Field(
            ge=0,
            le=2**31 - 1,
            description="Seed for training and evaluation (blank: derived from the round's id, "
            "so a round started again after a rejection is a new try).",
        ),
    ] = None
    eval_prompts: Annotated[
        int | None,
        Field(
            ge=2,
            le=1000,
            description="Held-out prompts the promotion gate samples (blank: sized from the "
            "project's prompts).",
        ),
    ] = None
    reference: Annotated[
        Literal["start", "previous"],
        Field(
            description="'start': stay close to the project's starting policy (after SFT, the "
            "SFT model) and continue the current adapter; 'previous': merge the current "
            "version into the base and start a fresh adapter, so each round moves a bounded "
            "step from the version before it."
        ),
    ] = "previous"
    max_kl: Annotated[
        float,
        Field(
            ge=0.01,
            le=1e4,
            description="Gate: the new version's KL to the reference must be below.",
        ),
    ] = 25.0
    gate_samples: Annotated[
        int | None,
        Field(
            ge=1,
            le=32,
            description="Gate: samples per held-out prompt from each version (blank: enough "
            "for about 200 samples per version).",
        ),
    ] = None
    min_score_gain: Annotated[
        float,
        Field(
            ge=-1000,
            le=1000,
            description="Gate: the lower end of the gain's interval (held-out reward model, "
            "new version minus the previous one) must be above this.",
        ),
    ] = 0.0
    gate_confidence: Annotated[
        float,
        Field(
            ge=0.5,
            lt=1,
            description="Gate: two-sided level of the gain's interval; 0.9 makes its lower "
            "end a one-sided 95% bound.",
        ),
    ] = 0.9
    min_accuracy_low: Annotated[
        float,
        Field(
            ge=0,
            lt=1,
            description="Before training the policy: the one-sided 95% lower bound of the "
            "reward models' held-out pair accuracy must be above this, or the round ends "
            "'needs more data'; 0 turns the check off.",
        ),
    ] = 0.5


class RewardModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_model: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=500,
            description="Model under the reward head (default: the project's).",
        ),
    ] = None
    epochs: Annotated[
        int, Field(ge=1, le=100, description="At most this many passes over the rankings.")
    ] = 10
    patience: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="Stop after this many epochs without a lower held-out loss; the best "
            "epoch's weights are kept.",
        ),
    ] = 2
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 1e-3
    heldout_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    max_length: Annotated[int, Field(ge=16, le=8192)] = 256


class PPOSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: Annotated[
        int | None,
        Field(
            ge=1,
            le=100000,
            description="PPO updates (blank: about four rollouts per training prompt, fewer "
            "while rankings are fewer than prompts).",
        ),
    ] = None
    batch_size: Annotated[int, Field(ge=2, le=4096, description="Prompts per rollout.")] = 16
    mini_batch_size: Annotated[int, Field(ge=1, le=4096)] = 8
    ppo_epochs: Annotated[int, Field(ge=1, le=16)] = 4
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 3e-4
    kl_coef: Annotated[float, Field(ge=0, le=10)] = 0.05
    adaptive_kl: bool = False
    # The same ranges as the project's sampling settings: a blank is sized from them.
    temperature: Annotated[
        float | None,
        Field(ge=0.01, le=5, description="Rollout temperature (blank: the project's)."),
    ] = None
    max_new_tokens: Annotated[
        int | None,
        Field(ge=1, le=8192, description="Rollout length in tokens (blank: the project's)."),
    ] = None

    @model_validator(mode="after")
    def _mini_batches_divide_the_batch(self) -> PPOSettings:
        # Checked here, not after the reward model has trained for an hour.
        if self.batch_size % self.mini_batch_size:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must divide batch_size "
                f"({self.batch_size})"
            )
        return self


class RewardPPOConfig(_Config):
    """Reward model on all rankings so far, then PPO against it."""

    type: Literal["reward_ppo"] = "reward_ppo"
    reward_model: RewardModelSettings = RewardModelSettings()
    ppo: PPOSettings = PPOSettings()


class SFTConfig(_Config):
    """Fine-tune the policy adapter on demonstrations (loss on response tokens only)."""

    type: Literal["sft"] = "sft"
    epochs: Annotated[int, Field(ge=1, le=100)] = 3
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 3e-4
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    heldout_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.1


class DPOConfig(_Config):
    """Train the policy adapter directly on the pairs of a comparison snapshot."""

    type: Literal["dpo"] = "dpo"
    reward_model: Annotated[
        RewardModelSettings,
        Field(description="The judge: a reward model trained on the rankings, for the gate."),
    ] = RewardModelSettings()
    beta: Annotated[float, Field(ge=1e-3, le=10)] = 0.1
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    epochs: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="Passes over the pairs; the epoch with the lowest held-out loss is kept.",
        ),
    ] = 3
    # bench/loop.py --suite --type dpo (one seed, length and keywords+length, 3 rounds):
    # 2e-4 moved the policy little (KL 0.3-1.5, +0.36 and +0.12 σ over the base); 6e-4
    # gained +0.52 and +0.31 σ with KL 2.7-4.7, every promoted round better than its parent.
    learning_rate: Annotated[float, Field(ge=1e-7, le=1)] = 6e-4
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    heldout_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    min_heldout_accuracy: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Gate: the new version's held-out pair accuracy (its implicit reward) "
            "must reach this. 0, the default, only shows it: a point estimate on a fifth of "
            "the pairs is noise at these sizes, and the held-out reward model's gain on fresh "
            "samples is what the gate decides on.",
        ),
    ] = 0.0


RoundConfig = Annotated[RewardPPOConfig | SFTConfig | DPOConfig, Field(discriminator="type")]
CONFIG_BY_TYPE: dict[str, type[_Config]] = {
    "reward_ppo": RewardPPOConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
}

# The stages each round type passes through, in order (the state machine's happy path).
STAGES: dict[str, list[str]] = {
    "reward_ppo": ["reward_model", "policy", "evaluating", "sampling"],
    "sft": ["policy", "evaluating", "sampling"],
    "dpo": ["reward_model", "policy", "evaluating", "sampling"],
}
