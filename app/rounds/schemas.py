"""What every round configuration shares; each round type's own model lives in its module
(`app.rounds.types`), validated before a round starts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    # Unknown fields and non-finite numbers are refused: a typo is a 422, never a default.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RoundConfigBase(StrictModel):
    """The settings every round type has: its seed, the held-out prompts and the promotion gate."""

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

    def sampling(self) -> tuple[float | None, int | None]:
        """(temperature, max new tokens) the policy was trained to sample with, which the gate
        samples with too; None: the project's sampling settings."""
        return None, None


class RewardModelSettings(StrictModel):
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
