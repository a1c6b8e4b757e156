"""String enums stored as VARCHAR + CHECK (portable across SQLite and PostgreSQL); RoundType
only names the built-in round types."""

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    annotator = "annotator"


class PolicyKind(StrEnum):
    base = "base"  # the project's starting model, as loaded from the hub or a directory
    trained = "trained"  # produced by a round (SFT, PPO or DPO)
    external = "external"  # samples uploaded from a model RankLoop did not train


class PolicyStatus(StrEnum):
    candidate = "candidate"
    current = "current"
    rejected = "rejected"
    retired = "retired"


class TaskStatus(StrEnum):
    open = "open"
    complete = "complete"
    cancelled = "cancelled"


class AssignmentState(StrEnum):
    leased = "leased"
    submitted = "submitted"
    skipped = "skipped"
    expired = "expired"


class RoundType(StrEnum):
    """The built-in round types' names. The rounds table stores any registered type's name
    (`app.rounds.registry`), so a new type needs no member here."""

    sft = "sft"
    reward_ppo = "reward_ppo"
    dpo = "dpo"


class RoundState(StrEnum):
    queued = "queued"
    reward_model = "reward_model"
    policy = "policy"
    evaluating = "evaluating"
    sampling = "sampling"
    done = "done"
    rejected = "rejected"
    failed = "failed"
    cancelled = "cancelled"
    needs_more_data = "needs_more_data"
    """The reward model could not tell the rankings apart better than chance: nothing trained."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_ROUND_STATES


TERMINAL_ROUND_STATES = frozenset(
    {
        RoundState.done,
        RoundState.rejected,
        RoundState.failed,
        RoundState.cancelled,
        RoundState.needs_more_data,
    }
)


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
