"""Active selection without a model: the uniform share, determinism under a seed, the most
uncertain samples chosen with hand-made heads, the leaderboard's uniform filter, the plan a
job gets and the counts the project page shows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Comparison, PolicyRating, RankingTask, RewardModelVersion, TaskStatus
from app.ratings.bradley_terry import BETTER, UNDECIDED
from app.rounds.snapshots import create_snapshot
from app.sampling import selection, service
from app.sampling.selection import (
    UNCERTAINTY,
    UNIFORM,
    choose_prompts,
    choose_task,
    most_uncertain,
    split_uniform,
    uniform_count,
    uniform_task_filter,
)
from app.sampling.selection import (
    UNDECIDED as REASON_UNDECIDED,
)
from app.seeds import derived_seed
from tests.factories import (
    make_current_version,
    make_project,
    make_prompt,
    make_ranking,
    make_task,
    make_user,
    task_sample_ids,
)
from worker.training.reward_ensemble import RewardEnsemble

prompt_lists = st.lists(st.integers(1, 10_000), min_size=0, max_size=60, unique=True)
shares = st.floats(0.0, 1.0)


# The uniform share -------------------------------------------------------------------------


@given(prompt_lists, shares, st.integers(0, 2**31 - 1))
def test_the_uniform_split_is_the_same_under_the_same_seed(
    prompt_ids: list[int], share: float, seed: int
) -> None:
    first = split_uniform(prompt_ids, share, seed)
    assert first == split_uniform(list(reversed(prompt_ids)), share, seed)
    assert first <= set(prompt_ids)


@given(prompt_lists, shares, st.integers(0, 2**31 - 1))
def test_the_uniform_share_holds_exactly_rounded_up(
    prompt_ids: list[int], share: float, seed: int
) -> None:
    uniform = split_uniform(prompt_ids, share, seed)
    n = len(prompt_ids)
    assert len(uniform) == uniform_count(n, share) == min(n, math.ceil(share * n - 1e-9))
    assert share * n - 1e-9 <= len(uniform) < share * n + 1


def test_different_seeds_draw_different_uniform_prompts() -> None:
    prompts = list(range(1, 101))
    draws = {frozenset(split_uniform(prompts, 0.2, seed)) for seed in range(5)}
    assert len(draws) == 5


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="uniform share"):
        uniform_count(10, 1.5)


# The most uncertain samples ----------------------------------------------------------------


def _ensemble_scores(weight: list[list[float]], features: list[list[float]]) -> np.ndarray:
    """(E, N) scores of hand-made heads on hand-made features (no standardisation)."""
    ensemble = RewardEnsemble(
        torch.tensor(weight), torch.zeros(len(weight[0])), torch.ones(len(weight[0]))
    )
    return ensemble.scores(torch.tensor(features)).numpy()


def test_with_hand_made_heads_the_most_uncertain_candidates_are_chosen() -> None:
    # Feature 0: every head agrees (weight 1); feature 1: heads disagree in sign (±3).
    heads = [[1.0, 3.0], [1.0, -3.0], [1.0, 0.0]]
    features = [
        [0.0, 0.0],  # 0: the anchor
        [2.0, 0.0],  # 1: agreed on: clearly better than the anchor
        [-2.0, 0.0],  # 2: agreed on: clearly worse
        [0.0, 1.0],  # 3: disputed
        [0.0, -1.0],  # 4: disputed
        [4.0, 0.0],  # 5: agreed on
    ]
    scores = _ensemble_scores(heads, features)
    picked, value = most_uncertain(
        scores, anchors=[0], candidates=[1, 2, 3, 4, 5], n=2, cross=False
    )
    assert picked == [3, 4]
    agreed = selection.task_disagreement(selection.pair_disagreement(scores), [0, 1, 5])
    assert value > agreed


def test_choose_task_keeps_the_disputed_samples_and_says_why() -> None:
    heads = [[1.0, 3.0], [1.0, -3.0]]
    features = {10: [0.0, 0.0], 11: [1.0, 0.0], 12: [0.0, 2.0], 13: [-1.0, 0.0], 14: [0.0, -2.0]}
    matrix = _ensemble_scores(heads, list(features.values()))
    scores = {sid: matrix[:, n] for n, sid in enumerate(features)}
    choice = choose_task(
        7,
        anchors=[10],
        candidates=[11, 12, 13, 14],
        n_new=2,
        n_prev=1,
        scores=scores,
        undecided=False,
    )
    assert choice is not None
    assert (choice.prompt_id, choice.reason) == (7, UNCERTAINTY)
    assert sorted(choice.sample_ids) == [10, 12, 14]
    assert choice.disagreement is not None
    assert choice.disagreement > 0


def test_an_undecided_version_pair_counts_cross_version_pairs_only() -> None:
    # Candidates 2 and 3 are disputed between themselves only; 1 is disputed against the
    # anchor: deciding two versions needs the anchor–candidate pairs.
    scores = np.array(
        [
            [0.0, 2.0, 5.0, -5.0],
            [0.0, -2.0, -5.0, 5.0],
        ]
    )  # (E=2, N=4), sample 0 the previous version's
    scores[:, 2:] += np.array([[10.0], [10.0]])  # far from the anchor for every head
    all_pairs, _ = most_uncertain(scores, anchors=[0], candidates=[1, 2, 3], n=2, cross=False)
    cross, _ = most_uncertain(scores, anchors=[0], candidates=[1, 2, 3], n=2, cross=True)
    assert all_pairs == [2, 3]
    assert 1 in cross


def test_the_greedy_search_of_a_large_pool_finds_the_disputed_samples() -> None:
    rng = np.random.default_rng(0)
    agreed = np.tile(rng.normal(size=(1, 40)) * 5, (4, 1))  # (E=4, 40) every head alike
    disputed = rng.normal(size=(4, 6)) * 5  # (E=4, 6) heads at odds
    scores = np.concatenate([agreed, disputed], axis=1)  # (4, 46)
    assert math.comb(46, 6) > selection.MAX_SUBSETS
    picked, _ = most_uncertain(scores, anchors=[], candidates=list(range(46)), n=6, cross=False)
    assert len(set(picked) & set(range(40, 46))) >= 5
    again, _ = most_uncertain(scores, anchors=[], candidates=list(range(46)), n=6, cross=False)
    assert picked == again


def test_without_an_ensemble_a_task_takes_the_first_candidates() -> None:
    decided = choose_task(
        1, anchors=[5], candidates=[6, 7, 8, 9], n_new=2, n_prev=1, scores=None, undecided=False
    )
    undecided = choose_task(
        1, anchors=[5], candidates=[6, 7, 8, 9], n_new=2, n_prev=1, scores=None, undecided=True
    )
    assert decided is not None
    assert undecided is not None
    assert decided.sample_ids == undecided.sample_ids == (6, 7, 5)
    assert (decided.reason, undecided.reason) == (UNIFORM, REASON_UNDECIDED)


def test_a_prompt_short_of_distinct_texts_gets_no_task() -> None:
    assert (
        choose_task(1, anchors=[], candidates=[6], n_new=2, n_prev=0, scores=None, undecided=False)
        is None
    )


# The most uncertain prompts -----------------------------------------------------------------


def _planted_choices(disputed: set[int], prompts: int = 6) -> list[selection.TaskChoice]:
    """One best task per candidate prompt 1..`prompts`, scored by a planted ensemble: the
    samples of the `disputed` prompts lie on the feature the heads disagree on (±3), the
    others' on the feature every head weighs alike."""
    heads = [[1.0, 3.0], [1.0, -3.0], [1.0, 0.0]]
    features: dict[int, list[float]] = {}
    for prompt in range(1, prompts + 1):
        for j in range(8):  # 2K candidates of K = 4
            value = float(j - 4) / 2
            sample_id = prompt * 100 + j
            features[sample_id] = [0.0, value] if prompt in disputed else [value, 0.0]
    matrix = _ensemble_scores(heads, list(features.values()))
    scores = {sid: matrix[:, n] for n, sid in enumerate(features)}
    choices = [
        choose_task(
            prompt,
            anchors=[],
            candidates=[prompt * 100 + j for j in range(8)],
            n_new=4,
            n_prev=0,
            scores=scores,
            undecided=False,
        )
        for prompt in range(1, prompts + 1)
    ]
    return [c for c in choices if c is not None]


def test_the_prompts_a_planted_ensemble_disputes_most_are_chosen() -> None:
    choices = _planted_choices({2, 5})
    kept = choose_prompts(choices, 2)
    assert [c.prompt_id for c in kept] == [2, 5]
    assert {c.reason for c in kept} == {UNCERTAINTY}


@given(st.sets(st.integers(1, 6)), st.integers(0, 6))
def test_choosing_prompts_is_deterministic_and_keeps_the_number_asked(
    disputed: set[int], n: int
) -> None:
    choices = _planted_choices(disputed)
    kept = choose_prompts(choices, n)
    assert kept == choose_prompts(list(choices), n)
    assert len(kept) == n
    if n >= len(disputed):  # every disputed prompt beats every agreed one
        assert disputed <= {c.prompt_id for c in kept}


def test_without_an_ensemble_the_jobs_own_prompts_come_first() -> None:
    choices = [
        choose_task(p, anchors=[], candidates=[p * 10, p * 10 + 1], n_new=2, n_prev=0,
                    scores=None, undecided=False)
        for p in (4, 1, 3, 2)
    ]  # fmt: skip
    kept = choose_prompts([c for c in choices if c is not None], 2)
    assert [c.prompt_id for c in kept] == [4, 1]
    assert {c.reason for c in kept} == {UNIFORM}


def test_the_candidate_pool_doubles_the_active_prompts() -> None:
    assert [selection.candidate_count(n, 0.2) for n in (0, 1, 5, 10, 20)] == [0, 0, 4, 8, 16]


# With a database -----------------------------------------------------------------------------


def _ranked_task(session: Session, project: object, reason: str) -> RankingTask:
    task = make_task(session, project)  # type: ignore[arg-type]
    task.selection_reason = reason
    make_ranking(session, task, make_user(session), [[s] for s in task_sample_ids(session, task)])
    return task


def test_the_uniform_filter_keeps_comparisons_of_uniform_tasks(db_session: Session) -> None:
    project = make_project(db_session)
    uniform = _ranked_task(db_session, project, UNIFORM)
    _ranked_task(db_session, project, UNCERTAINTY)
    _ranked_task(db_session, project, REASON_UNDECIDED)
    kept = db_session.scalars(
        select(Comparison.task_id).where(Comparison.project_id == project.id, uniform_task_filter())
    ).all()
    assert set(kept) == {uniform.id}
    assert len(kept) == 6  # C(4, 2) pairs of its strict ranking


def test_the_project_page_counts_open_and_done_tasks_by_reason(db_session: Session) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    assert service.selection_summary(db_session, project_id=project.id) == []  # all uniform
    for reason, status in [
        (UNCERTAINTY, TaskStatus.open),
        (UNCERTAINTY, TaskStatus.complete),
        (UNCERTAINTY, TaskStatus.complete),
        (REASON_UNDECIDED, TaskStatus.open),
    ]:
        task = make_task(db_session, project)
        task.selection_reason, task.status = reason, status
    gold = make_task(db_session, project)
    gold.selection_reason, gold.gold = UNCERTAINTY, True
    db_session.flush()
    rows = service.selection_summary(db_session, project_id=project.id)
    assert [(r.reason, r.open, r.done) for r in rows] == [
        (UNCERTAINTY, 1, 2),
        (REASON_UNDECIDED, 1, 0),
        (UNIFORM, 1, 0),
    ]


def _active_job(session: Session, *, share: float, prompts: int, seed: int = 11) -> int:
    project = make_project(session, selection="active", uniform_share=share)
    for _ in range(prompts):
        make_prompt(session, project)
    job = service.start_sampling(session, project_id=project.id, enqueue=False, seed=seed)
    assert job is not None
    return job.id


def test_an_active_job_draws_the_share_uniformly_the_same_way_each_time(
    db_session: Session,
) -> None:
    job_id = _active_job(db_session, share=0.25, prompts=10)
    plan = service.begin_job(db_session, job_id)
    again = service.begin_job(db_session, job_id)
    assert plan is not None
    assert again is not None
    assert len(plan.active_prompts) == 10 - math.ceil(0.25 * 10)
    assert plan.active_prompts == again.active_prompts
    assert plan.active_prompts <= set(plan.prompt_ids)
    assert plan.pool_new == selection.POOL_FACTOR * plan.n_new
    assert not plan.undecided  # one version: no pair to decide


def test_a_uniform_project_has_no_active_prompts(db_session: Session) -> None:
    project = make_project(db_session)
    make_prompt(db_session, project)
    job = service.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert job is not None
    plan = service.begin_job(db_session, job.id)
    assert plan is not None
    assert plan.active_prompts == frozenset()


@pytest.mark.parametrize(
    ("verdict", "undecided"), [(None, True), (UNDECIDED, True), (BETTER, False)]
)
def test_a_version_pair_is_undecided_until_the_leaderboard_tells_them_apart(
    db_session: Session, verdict: str | None, undecided: bool
) -> None:
    project = make_project(db_session, selection="active")
    make_prompt(db_session, project)
    _, current = make_current_version(db_session, project)
    if verdict is not None:
        db_session.add(PolicyRating(policy_version_id=current.id, verdict=verdict))
        db_session.flush()
    job = service.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert job is not None
    plan = service.begin_job(db_session, job.id)
    assert plan is not None
    assert plan.previous is not None
    assert plan.undecided is undecided


def test_chosen_tasks_show_only_their_prompts_samples(db_session: Session) -> None:
    project = make_project(db_session, selection="active", uniform_share=0.0)
    prompt = make_prompt(db_session, project)
    elsewhere = make_task(db_session, project)  # samples of another prompt
    job = service.start_sampling(
        db_session, project_id=project.id, enqueue=False, prompt_limit=None
    )
    assert job is not None
    plan = service.begin_job(db_session, job.id)
    assert plan is not None
    assert prompt.id in plan.active_prompts
    bad = selection.TaskChoice(
        prompt.id, tuple(task_sample_ids(db_session, elsewhere)), UNCERTAINTY
    )
    with pytest.raises(ValueError, match="another prompt's sample"):
        service.record_chosen_tasks(db_session, plan=plan, choices=[bad])
    assert not db_session.scalars(
        select(RankingTask).where(RankingTask.sampling_job_id == job.id)
    ).all()


def test_the_project_page_section_lists_the_reasons(db_session: Session) -> None:
    from types import SimpleNamespace

    from app.templating import templates

    project = make_project(db_session)
    for reason in (UNCERTAINTY, UNCERTAINTY, UNIFORM):
        make_task(db_session, project).selection_reason = reason
    db_session.flush()
    rows = service.selection_summary(db_session, project_id=project.id)
    section = templates.env.get_template("_task_selection.html")
    html = section.render(page=SimpleNamespace(task_selection=rows))
    assert 'id="task-selection"' in html
    assert re.search(
        r'id="task-selection-uncertainty"><td>reward model uncertain</td>'
        r'<td class="num">2</td><td class="num">0</td>',
        html,
    )
    assert "task-selection" not in section.render(page=SimpleNamespace())  # not wired: nothing


def _with_reward_model(session: Session, project: object) -> None:
    """A reward-model row (its artifact is never read here): what makes a job hold extra
    candidate prompts."""
    project_id = project.id  # type: ignore[attr-defined]
    snapshot = create_snapshot(session, project_id=project_id, name="rm")
    session.add(
        RewardModelVersion(
            project_id=project_id,
            number=1,
            snapshot_id=snapshot.id,
            base_model="tiny",
            artifact_uri="file:///rm/1",
        )
    )
    session.flush()


def test_with_a_reward_model_an_active_job_holds_twice_its_active_prompts(
    db_session: Session,
) -> None:
    project = make_project(db_session, selection="active", uniform_share=0.25)
    prompts = [make_prompt(db_session, project).id for _ in range(30)]
    _with_reward_model(db_session, project)
    job = service.start_sampling(
        db_session, project_id=project.id, enqueue=False, seed=11, prompt_limit=12
    )
    assert job is not None
    plan = service.begin_job(db_session, job.id)
    assert plan is not None
    own = prompts[:12]  # the 12 with the fewest tasks (all none), by id: as without a model
    assert job.prompts_total == 12
    assert plan.prompt_ids[:12] == own
    uniform = set(own) - plan.active_prompts
    assert uniform == split_uniform(own, 0.25, derived_seed("task selection", 11))
    assert len(uniform) == 3
    assert plan.active_needed == 9
    assert len(plan.active_prompts) == 18  # 9 own + 9 extra candidates
    assert plan.active_prompts - set(own) == set(prompts[12:21])
    again = service.begin_job(db_session, job.id)
    assert again == plan


def test_without_a_reward_model_an_active_job_holds_only_its_own_prompts(
    db_session: Session,
) -> None:
    job_id = _active_job(db_session, share=0.25, prompts=10)
    plan = service.begin_job(db_session, job_id)
    assert plan is not None
    assert len(plan.prompt_ids) == 10
    assert plan.active_needed == len(plan.active_prompts) == 7


def test_prompts_passed_over_leave_the_job(db_session: Session) -> None:
    project = make_project(db_session, selection="active", uniform_share=0.0)
    prompts = [make_prompt(db_session, project).id for _ in range(4)]
    _with_reward_model(db_session, project)
    job = service.start_sampling(db_session, project_id=project.id, enqueue=False, prompt_limit=2)
    assert job is not None
    plan = service.begin_job(db_session, job.id)
    assert plan is not None
    assert plan.prompt_ids == prompts
    assert service.active_tasks_left(db_session, plan) == 2
    made = service.record_chosen_tasks(
        db_session, plan=plan, choices=[], passed_over=[prompts[0], prompts[3]]
    )
    assert made == 0
    assert job.prompt_ids == [prompts[1], prompts[2]]
