"""ORM classes, one module per aggregate; importing this package registers every table."""

from app.models.annotator import AnnotatorExclusion, AnnotatorReliability
from app.models.enums import (
    TERMINAL_ROUND_STATES,
    AssignmentState,
    JobState,
    PolicyKind,
    PolicyStatus,
    Role,
    RoundState,
    RoundType,
    TaskStatus,
)
from app.models.judge import Judge, JudgeTaskLog
from app.models.policy import PolicyVersion, RewardModelVersion
from app.models.project import Demonstration, Project, Prompt
from app.models.ranking import Comparison, ComparisonSnapshot, Ranking, SnapshotComparison
from app.models.rating import PolicyRating, SampleRating
from app.models.sample import Sample, SampleFlag
from app.models.task import Assignment, RankingTask, TaskSample
from app.models.training_round import SamplingJob, TrainingRound, WorkerHeartbeat
from app.models.user import ApiToken, LoginAttempt, ProjectMember, User, WebSession

__all__ = [
    "TERMINAL_ROUND_STATES",
    "AnnotatorExclusion",
    "AnnotatorReliability",
    "ApiToken",
    "Assignment",
    "AssignmentState",
    "Comparison",
    "ComparisonSnapshot",
    "Demonstration",
    "JobState",
    "Judge",
    "JudgeTaskLog",
    "LoginAttempt",
    "PolicyKind",
    "PolicyRating",
    "PolicyStatus",
    "PolicyVersion",
    "Project",
    "ProjectMember",
    "Prompt",
    "Ranking",
    "RankingTask",
    "RewardModelVersion",
    "Role",
    "RoundState",
    "RoundType",
    "Sample",
    "SampleFlag",
    "SampleRating",
    "SamplingJob",
    "SnapshotComparison",
    "TaskSample",
    "TaskStatus",
    "TrainingRound",
    "User",
    "WebSession",
    "WorkerHeartbeat",
]
