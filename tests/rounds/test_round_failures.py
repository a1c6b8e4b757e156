"""A failed round or sampling job reads like a product: `error` is one line saying what failed
and what to do, `error_detail` the traceback without server paths, shown to admins in a
details block on the round page and the project page."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from sqlalchemy.orm import Session

from app.models import Project, RoundState, SamplingJob, TrainingRound
from app.projects.service import add_prompts
from app.rounds.service import StageStart
from app.sampling import service as sampling
from tests.conftest import FreshDatabase
from tests.factories import make_project, make_round
from tests.rounds.conftest import section
from worker.jobs import rounds as round_jobs
from worker.jobs import sampling as sampling_jobs

SERVER_PATHS = [sys.prefix, str(Path(round_jobs.__file__).resolve().parents[2]), "site-packages"]


def _assert_product_failure(error: str | None, detail: str | None, *starts: str) -> None:
    assert error is not None
    assert "\n" not in error
    assert "Traceback" not in error
    assert error.startswith(starts), error
    assert detail is not None
    assert detail.startswith("Traceback (most recent call last):")
    for path in SERVER_PATHS:
        assert path not in error + detail, path


def _round_failing_with(
    db: FreshDatabase,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    round_type: str,
    raise_it: Callable[[StageStart], None],
) -> TrainingRound:
    with db.session() as session:
        project = make_project(session)
        round_id = make_round(session, project, round_type).id
        session.commit()
    monkeypatch.setitem(round_jobs.STAGES, stage, lambda start, reporter: raise_it(start))

    with pytest.raises(Exception):  # noqa: B017, PT011 - re-raised for the worker's log
        round_jobs.run_stage(round_id, stage)

    with db.session() as session:
        ended = session.get(TrainingRound, round_id)
        assert ended is not None
        assert ended.state == RoundState.failed
        return ended


def test_out_of_memory_names_the_stage_and_the_setting_to_lower(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(start: StageStart) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    ended = _round_failing_with(app_database, monkeypatch, "reward_model", "reward_ppo", oom)

    _assert_product_failure(
        ended.error, ended.error_detail, "Out of memory while training the reward model — lower"
    )
    assert "reward_model.max_length" in (ended.error or "")
    assert "start a new round" in (ended.error or "")
    assert "OutOfMemoryError: CUDA out of memory" in (ended.error_detail or "")


def test_a_base_model_that_does_not_load_says_so(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from transformers import AutoConfig

    def load(start: StageStart) -> None:  # a directory without config.json
        AutoConfig.from_pretrained(str(tmp_path))

    ended = _round_failing_with(app_database, monkeypatch, "policy", "sft", load)

    _assert_product_failure(
        ended.error,
        ended.error_detail,
        "The base model could not be loaded while training the policy with SFT: ",
    )
    assert str(tmp_path) not in (ended.error or "") + (ended.error_detail or "")
    assert "transformers/" in (ended.error_detail or "")  # frames as module paths


def test_our_own_refusals_are_the_line_as_they_are(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rankings went away after the round started: the reward model's own message."""
    from worker.jobs.reward_model import train_project_reward_model

    def train(start: StageStart) -> None:
        train_project_reward_model(start.project_id)

    ended = _round_failing_with(app_database, monkeypatch, "reward_model", "dpo", train)

    _assert_product_failure(
        ended.error, ended.error_detail, "The reward model needs rankings to learn from: "
    )
    assert "worker/jobs/reward_model.py" in (ended.error_detail or "")


def test_an_unexpected_error_says_what_was_running_and_what_to_do(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(start: StageStart) -> None:
        {}["missing key"]  # noqa: B018

    ended = _round_failing_with(app_database, monkeypatch, "evaluating", "reward_ppo", bug)

    _assert_product_failure(
        ended.error,
        ended.error_detail,
        "Unexpected error while evaluating the new version (the promotion gate) (KeyError: ",
    )
    assert "start a new round" in (ended.error or "")


def test_a_failed_sampling_job_records_one_line_and_the_details(
    app_database: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_database.session() as session:
        project = make_project(session)
        add_prompts(session, project_id=project.id, contents=[f"Q{i}?" for i in range(3)])
        job = sampling.start_sampling(session, project_id=project.id, enqueue=False)
        assert job is not None
        session.commit()
        job_id = job.id

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(sampling_jobs, "load_policy_for_generation", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        sampling_jobs.run_sampling_job(job_id)

    with app_database.session() as session:
        failed = session.get(SamplingJob, job_id)
        assert failed is not None
        assert failed.state.value == "failed"
        _assert_product_failure(
            failed.error, failed.error_detail, "Out of memory while sampling policy version 1"
        )
        assert "samples per prompt or max new tokens" in (failed.error or "")
        assert "rankloop sample" in (failed.error or "")


# The pages -----------------------------------------------------------------------------------

LINE = "Out of memory while training the reward model — lower reward_model.max_length"
DETAIL = 'Traceback (most recent call last):\n  File "worker/jobs/rounds.py", line 1\nBoom'


def test_the_round_page_shows_the_line_and_admins_the_details(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    training_round = make_round(
        db_session, project, "reward_ppo", state=RoundState.failed, error=LINE, error_detail=DETAIL
    )
    db_session.commit()

    page = client.get(f"/admin/rounds/{training_round.id}").text

    assert f'<p class="error" id="round-error">{LINE}</p>' in page
    details = section(page, '<details id="round-error-detail">', "</details>")
    assert "Traceback (most recent call last):" in details
    assert "worker/jobs/rounds.py" in details


def test_a_traceback_stored_as_the_error_shows_its_last_line(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    """Rounds that failed before reasons were one line kept the whole traceback in `error`."""
    legacy = (
        "Traceback (most recent call last):\n"
        f'  File "{sys.prefix}/lib/site-packages/torch/nn/functional.py", line 2\n'
        "IndexError: index out of range in self\n"
    )
    training_round = make_round(
        db_session, project, "dpo", state=RoundState.failed, error=legacy, error_detail=None
    )
    db_session.commit()

    page = client.get(f"/admin/rounds/{training_round.id}").text

    assert '<p class="error" id="round-error">IndexError: index out of range in self</p>' in page
    assert '<details id="round-error-detail">' in page
    assert sys.prefix not in page
    assert "torch/nn/functional.py" in page


def test_the_project_page_shows_a_failed_jobs_line_and_details(
    client: httpx.Client, db_session: Session, project: Project
) -> None:
    add_prompts(db_session, project_id=project.id, contents=["Q?"])
    job = sampling.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert job is not None
    sampling.fail_job(db_session, job.id, "The base model could not be loaded: gone", detail=DETAIL)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text

    row = section(page, f'id="sampling-job-{job.id}-error"', "</tr>")
    assert '<p class="error">The base model could not be loaded: gone</p>' in row
    assert "<details>" in row
    assert "Traceback (most recent call last):" in row
