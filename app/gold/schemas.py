"""What the gold API takes and returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.ids import MAX_ID


class GoldTaskIn(BaseModel):
    """Exactly one of `groups` and `bad_sample_id`."""

    model_config = ConfigDict(extra="forbid")

    task_id: int = Field(ge=1, le=MAX_ID)
    groups: list[list[int]] | None = Field(
        default=None,
        description="The known ordering of the task's samples: groups of sample ids, best "
        "first, ties in one group (as a ranking is submitted); every sample once.",
        examples=[[[11], [12, 13], [14]]],
    )
    bad_sample_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="A sample of the task known to be the worst."
    )


class GoldTaskOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_id": 7,
                    "prompt_id": 3,
                    "groups": [[11], [12, 13], [14]],
                    "bad_sample_id": None,
                    "answered": 4,
                    "agreed": 3,
                    "pairs": 20,
                    "pairs_correct": 18.5,
                }
            ]
        }
    )

    task_id: int
    prompt_id: int
    groups: list[list[int]] | None
    bad_sample_id: int | None
    answered: int = Field(description="Rankings of this task (a 'none usable' answer counts).")
    agreed: int = Field(
        description="Rankings none of whose pairs contradicts the known answer (pairs tied in "
        "the known ordering are not judged)."
    )
    pairs: int = Field(description="Judged pairs over all rankings of the task.")
    pairs_correct: float = Field(description="Correct pairs; a tie counts half.")


class GoldAnnotatorOut(BaseModel):
    user_id: int
    username: str
    pairs: int
    correct: float
    accuracy: float | None
    ci_low: float | None = Field(description="95% Wilson interval over the judged pairs.")
    ci_high: float | None
