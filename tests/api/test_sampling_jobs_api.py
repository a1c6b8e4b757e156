"""A sampling job's counts over /api/v1: the prompts it sampled shortened to fit the model."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session

from app.models import JobState
from app.projects.service import add_prompts
from app.sampling import service as sampling
from tests.factories import make_project, make_task

CONVERSATION = [
    *(
        {"role": role, "content": f"Old {role} turn {i} about the stone bridge. " * 40}
        for i in range(6)
        for role in ("user", "assistant")
    ),
    {"role": "user", "content": "And why is the sky blue?"},
]


def test_a_job_that_sampled_an_over_long_conversation_lists_it_as_shortened(
    client: httpx.Client, db_session: Session, reader: dict[str, str]
) -> None:
    project = make_project(db_session)  # long_prompts = "truncate", the default
    added = add_prompts(
        db_session, project_id=project.id, contents=[CONVERSATION, "Why?"], measure=False
    ).added
    job = sampling.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert job is not None
    assert sorted(job.prompt_ids) == sorted(p.id for p in added)
    # What the sampling job leaves behind: the conversation measured too long, sampled
    # all the same (oldest turns dropped), and a task for each prompt.
    added[0].too_long = True
    for prompt in added:
        make_task(db_session, project, prompt=prompt).sampling_job_id = job.id
    job.state, job.prompts_done = JobState.done, job.prompts_total
    db_session.commit()

    page = client.get(f"/api/v1/projects/{project.id}/sampling-jobs", headers=reader).json()

    (listed,) = page["items"]
    assert (listed["prompts_shortened"], listed["prompts_skipped"]) == (1, 0)
