"""What a round needs before it may start, checked when it is started (form, API, CLI).

A round that cannot run is refused at once with what is missing, instead of queueing, training
a reward model for an hour and failing in a later stage. Each check is cheap: counts in the
database and, for the base model, a look at the disk or the local Hugging Face cache (never a
download).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import AppError
from app.models import PolicyKind, Project, RoundType
from app.rounds import lineage, registry, repository
from app.rounds.judge_reward import judge_problems

MIN_PROMPTS = 4
"""Active prompts a round needs: `lineage.split_prompts` holds a quarter (at least 2) out for
the promotion gate and trains on the rest."""
MIN_RANKINGS = 4
"""Usable rankings a reward model trains on (worker.jobs.reward_model.MIN_RANKINGS)."""
MIN_DEMONSTRATIONS = 4
"""Demonstrations an SFT round trains on (worker.jobs.round_trainers.train_sft_policy)."""

TINY = "tiny"  # worker.policies.TINY: the demo model the workers build themselves
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
_TRUE = {"1", "true", "yes", "on"}


def problems(
    session: Session, project: Project, *, round_type: str, config: dict[str, Any]
) -> list[dict[str, str]]:
    """What keeps a round of `round_type` with `config` (parsed) from running on `project`:
    one {"field", "message"} per problem, each saying what to do; empty when it can run."""
    found: list[dict[str, str]] = []
    trains_on = registry.get(round_type).trains_on
    prompts, _ = repository.sizing_counts(session, project.id)
    if prompts < MIN_PROMPTS:
        found.append(
            {
                "field": "prompts",
                "message": f"the project has {prompts} active prompt{_s(prompts)}; a round "
                f"needs at least {MIN_PROMPTS} (a quarter are held out for the promotion "
                "gate): import prompts on the project page",
            }
        )
    current = repository.current_version(session, project.id)
    if current is None:
        found.append(
            {
                "field": "policy",
                "message": "the project has no current policy version to train: roll back to "
                "an earlier version on the project page",
            }
        )
    elif current.kind == PolicyKind.external:
        found.append(
            {
                "field": "policy",
                "message": f"the current version (v{current.number}) holds uploaded samples "
                "and has no weights to train: roll back to a trained or base version first",
            }
        )
    elif round_type != RoundType.sft.value:
        try:  # refuse now what the policy stage would refuse after training a reward model
            lineage.policy_source(
                session, project_id=project.id, reference=config["reference"], round_type=round_type
            )
        except AppError as exc:
            found.append({"field": "reference", "message": exc.message})
    # A judge as the reward (app.rounds.judge_reward) trains no reward model: no rankings needed.
    judged = config.get("reward_judge_id") is not None
    found.extend(judge_problems(session, project, round_type=round_type, config=config))
    if not judged:
        found.extend(_data_problems(session, project.id, trains_on=trains_on))
    base = lineage.base_model(session, project.id)
    why = base_model_problem(base)
    if why is not None:
        found.append({"field": "base_model", "message": f"{why}; change it in the settings"})
    rm_base = (config.get("reward_model") or {}).get("base_model")
    if trains_on == "rankings" and not judged and rm_base and rm_base != base:
        why = base_model_problem(rm_base)
        if why is not None:
            found.append({"field": "reward_model.base_model", "message": why})
    return found


def _data_problems(session: Session, project_id: int, *, trains_on: str) -> list[dict[str, str]]:
    """Too few of what the round type trains on: demonstrations, or usable rankings."""
    if trains_on == "demonstrations":
        have, need, field = (
            demonstration_count(session, project_id),
            MIN_DEMONSTRATIONS,
            "demonstrations",
        )
        message = (
            f"SFT trains on demonstrations: the project has {have}, at least {need} are "
            "needed; import some on the project page or let annotators write them"
        )
    else:
        have, need, field = usable_ranking_count(session, project_id), MIN_RANKINGS, "rankings"
        message = (
            f"no reward model can be trained: the project has {have} usable ranking{_s(have)} "
            "(excluded annotators, flagged samples and all-tied rankings left out), at least "
            f"{need} are needed; have annotators rank more tasks"
        )
    return [{"field": field, "message": message}] if have < need else []


def refusal_message(found: list[dict[str, str]]) -> str:
    return "This round cannot run: " + "; ".join(p["message"] for p in found) + "."


def demonstration_count(session: Session, project_id: int) -> int:
    from app.models import Demonstration

    return int(
        session.scalar(
            select(func.count(Demonstration.id)).where(Demonstration.project_id == project_id)
        )
        or 0
    )


def usable_ranking_count(session: Session, project_id: int) -> int:
    """Rankings a reward model would train on: those with a non-tie comparison that a snapshot
    takes (`snapshots.eligible_comparisons`)."""
    from app.models import Comparison, Project
    from app.rounds.snapshots import eligible_comparisons, judge_data

    sources = judge_data(session.get(Project, project_id)).sources  # judges' count if trained on
    eligible = eligible_comparisons(project_id, sources=sources).subquery()
    return int(
        session.scalar(
            select(func.count(func.distinct(Comparison.ranking_id))).where(
                Comparison.id.in_(select(eligible.c.id)), ~Comparison.tie
            )
        )
        or 0
    )


def base_model_problem(name: str) -> str | None:
    """Why the workers could not load `name` (a hub id, a directory, or "tiny"), or None.

    Cheap and download-free: a directory must hold a config.json; a hub id must be in the
    local Hugging Face cache, or, when the hub may be used, exist there (one metadata request;
    when the hub cannot be reached the question stays open and the round may start).
    """
    name = name.strip()
    if name == TINY:
        return None  # built by the workers on first use
    if name.startswith(("/", ".", "~")) or _exists(name):
        try:
            path = Path(name).expanduser()
        except RuntimeError:  # ~user of no such user
            return f"the base model {name!r} is not a directory on this server"
        if not _exists(str(path), kind="dir"):
            return f"the base model {name!r} is not a directory on this server"
        if not (path / "config.json").is_file():
            return (
                f"the base model directory {name!r} has no config.json (save the model "
                "there with save_pretrained)"
            )
        return None
    if not _HUB_ID.fullmatch(name):
        return (
            f"the base model {name!r} is neither a directory on this server nor a Hugging "
            "Face model id such as 'org/name'"
        )
    return _hub_model_problem(name)


def _exists(name: str, *, kind: str = "any") -> bool:
    """Path.exists/is_dir that answer False for a name no file system holds (a component over
    255 bytes, a NUL) instead of raising OSError or ValueError: a 422, not a 500."""
    try:
        path = Path(name)
        return path.is_dir() if kind == "dir" else path.exists()
    except (OSError, ValueError):
        return False


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().lower() in _TRUE for f in flags)


def _hub_model_problem(repo_id: str) -> str | None:
    from huggingface_hub import file_exists, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return None
    except HFValidationError:
        return f"the base model {repo_id!r} is not a valid Hugging Face model id"
    if _hub_offline():
        return (
            f"the base model {repo_id!r} is not in this server's Hugging Face cache and the "
            "hub is offline (HF_HUB_OFFLINE): download it into the cache first"
        )
    from app.config import get_settings

    try:
        found = file_exists(repo_id, "config.json", token=get_settings().effective_hf_token())
    except GatedRepoError:
        return (
            f"the base model {repo_id!r} is gated on the Hugging Face hub and this server's "
            "token has no access: accept its terms on the hub and set HF_TOKEN"
        )
    except Exception:  # noqa: BLE001 - hub unreachable: cannot tell; the worker will say
        return None
    if not found:
        return (
            f"the base model {repo_id!r} was not found on the Hugging Face hub (a private "
            "model needs HF_TOKEN)"
        )
    return None


def _s(count: int) -> str:
    return "" if count == 1 else "s"
