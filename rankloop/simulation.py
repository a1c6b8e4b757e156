"""The whole loop with simulated annotators, in one process: sample → rank over HTTP → round.

`rankloop demo --simulate` and bench/loop.py drive it. The web app runs in a thread (the
annotators log in over real HTTP); sampling and the round's stages run here by calling the
worker's plain functions (worker/jobs), one after another, so a run is deterministic under its
seed and needs no broker. Each round is measured by sampling the new policy afresh (pure
sampling at the round's temperature) and scoring the texts with the simulated preference,
so the figure does not depend on what the promotion gate decided.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.db import session_scope
from app.models import (
    Comparison,
    PolicyVersion,
    Project,
    Prompt,
    RankingTask,
    Sample,
    TrainingRound,
)
from app.projects import repository as projects_repo
from app.projects import service as projects
from app.projects.prompt_import import PromptContent
from app.rounds import repository as rounds_repo
from app.rounds import service as rounds
from app.sampling import service as sampling
from app.simulation.annotators import run_annotators
from app.simulation.metrics import label_ceiling
from app.simulation.preferences import Preference, load_preference
from app.simulation.service import ensure_simulated_annotators

if TYPE_CHECKING:
    from app.judges.schemas import JudgeCreate

# Sized for the tiny model on a 2-core CPU: 50-80 s a round (reward model 13-40 s as the
# rankings grow, PPO about 22 s), so `demo --simulate` does two rounds in about 3 minutes.
TINY_ROUND: dict[str, Any] = {
    # A quarter of the loop's 192 prompts: the gate compares one sample per held-out prompt,
    # and with 24 its reward-model gain (std ~1 a sample) rejected a better round-3 policy.
    "eval_prompts": 48,
    # Each round starts a fresh adapter on the previous version (merged): PPO moves a little
    # from where the last round left off instead of paying again for the distance travelled.
    "reference": "previous",
    "max_kl": 25.0,
    # The gate scores 4 samples (gate_samples' default) on each of 48 held-out prompts, with
    # rewards normalised to std 1 on the reference's samples: near the preference's optimum a
    # gain of -0.003 is noise, not a worse policy (one such round was rejected at 0).
    "min_score_gain": -0.05,
    # Held-out accuracy levels off after 3-4 epochs (measured on rounds 1-3); a 5th and 6th
    # only cost time, which grows with the rankings (about 190 more each round).
    "reward_model": {"epochs": 4, "learning_rate": 1e-3, "max_length": 128},
    "ppo": {
        "steps": 48,
        "batch_size": 16,
        "mini_batch_size": 8,
        "ppo_epochs": 4,
        "learning_rate": 5e-4,
        "kl_coef": 0.05,
        "max_new_tokens": 64,
    },
}
TINY_DPO_ROUND: dict[str, Any] = {
    "type": "dpo",
    "eval_prompts": 24,
    "reference": "previous",
    "epochs": 3,
    "learning_rate": 3e-4,
    "batch_size": 8,
}


LOOP_PROJECT = "Demo: simulated annotators"
LOOP_JUDGE_PROJECT = "Demo: simulated judge"
"""The loop's project under `demo --simulate --judge` (judge_only: kept apart from people's)."""
LOOP_PROMPTS = 192
"""Prompts of the loop project (the 24 demo prompts and questions from the tiny model's
corpus). A quarter are held out for the promotion gate. By round 3 the policy is near the
preference's optimum (about 30 words, spread ~6) and a round gains 0.01-0.04: with 96
prompts the interval of the change (prompts resampled) was about ±0.012, as wide as the
gain. 192 halve its variance and double the rankings the reward model gets per round."""
LOOP_PROJECT_SETTINGS: dict[str, Any] = {
    # 8 samples a prompt: 28 pairs a ranking (against 6 at K=4) for little more generation,
    # which is what lets a reward model learn from a few dozen rankings.
    "samples_per_prompt": 8,
    "annotations_per_task": 1,
    # The loop samples each round itself (deterministically, here); no worker top-ups.
    "min_open_tasks": 0,
    "max_new_tokens": 64,
    # Pure sampling, as PPO's rollouts: the annotators judge what the policy itself says.
    "temperature": 1.0,
    "top_p": 1.0,
    "description": "The closed loop rehearsed with simulated annotators (rankloop demo "
    "--simulate); kept apart from the demo project people rank.",
}


def loop_project(
    session: Session,
    *,
    name: str = LOOP_PROJECT,
    base_model: str,
    settings: dict[str, Any] | None = None,
    prompts: list[PromptContent] | None = None,
) -> int:
    """The project the simulated loop runs in (created with its prompts if missing).

    `settings` default to LOOP_PROJECT_SETTINGS ({} is the form's defaults, as a new user gets
    them); `prompts` to the demo prompts and corpus questions, LOOP_PROMPTS in all.
    """
    from app.demo import load_demo_prompts

    project = projects_repo.get_project_by_name(session, name)
    if project is None:
        project = projects.create_project(
            session,
            name=name,
            base_model=base_model,
            **(LOOP_PROJECT_SETTINGS if settings is None else settings),
        )
        if prompts is None:
            demo = load_demo_prompts()
            prompts = [*demo, *corpus_questions(LOOP_PROMPTS - len(demo))]
        projects.add_prompts(session, project_id=project.id, contents=prompts)
    return project.id


def prompt_pool() -> list[str]:
    """Every prompt the loop can use: the demo prompts, then the corpus questions not among
    them (bench/loop.py --suite keeps some out of the project to measure on)."""
    from app.demo import load_demo_prompts

    pool = load_demo_prompts()
    seen = set(pool)
    return pool + [q for q in corpus_questions(10**6) if q not in seen]


def corpus_questions(count: int) -> list[str]:
    """Questions from the tiny model's corpus: prompts it can answer, spread over the file."""
    from worker.training.tiny_model import corpus_documents

    questions = [
        doc.split("\n", 1)[0].removeprefix("User: ").strip()
        for doc in corpus_documents()
        if doc.startswith("User: ")
    ]
    step = max(1, len(questions) // max(count, 1))
    return questions[::step][:count]


def corpus_answers() -> list[str]:
    """The assistant turns of the tiny model's corpus: what it learnt to say."""
    from worker.training.tiny_model import corpus_documents

    answers = []
    for doc in corpus_documents():
        for turn in doc.split("\nAssistant:")[1:]:
            answers.append(turn.split("\nUser:", 1)[0].strip())
    return answers


@dataclass
class LoopSettings:
    rounds: int = 2
    annotators: int = 3
    preference: str = "length:30"
    """Monotone over what the tiny model says at first (about 20 words): longer is better
    until 30 words, so a reward model learns it from one round of rankings and PPO can follow
    it for several rounds. A short target (length:8) was learnt in round 1, then the reward
    model extrapolated and round 2 collapsed to empty answers."""
    noise: float = 0.1
    """Bradley-Terry temperature of the simulated annotators."""
    bias: float = 0.0
    seed: int = 0
    round_type: str = "reward_ppo"
    round_config: dict[str, Any] = field(default_factory=lambda: dict(TINY_ROUND))
    measure_samples: int = 8
    """Fresh samples per prompt when scoring a policy: more narrow the interval of the
    change for a few seconds on the tiny model."""
    measure_prompts: list[PromptContent] | None = None
    """Prompts to score each version on instead of the project's active ones: prompts that
    never entered the project measure what a version does on new questions."""
    rank_last_version: bool = False
    """After the last round the annotators rank once more, so the leaderboard has rankings
    of the last version's samples to judge it by."""
    temperature: float = 1.0
    max_new_tokens: int = 64
    torch_threads: int | None = 1
    """The tiny model's matrices are too small to split across threads, and on a shared CPU
    the extra threads' spin-waits made PPO steps up to 50x slower (0.4 s → 20 s measured).
    None: as a worker would (RANKLOOP_TORCH_THREADS, else the cores; worker/threads.py)."""
    judge: str | None = None
    """Pure RLAIF: a model judge ranks each round's tasks in place of the simulated people
    (`simulated:AGREEMENT` or `hf:PATH`, see judge_form) and rounds train on its rankings
    only (the project's judge_only)."""
    human_share: float = 1.0
    """People rank only this share of what a full pass would: each pass submits at most
    ⌈share · required slots of all tasks so far⌉ minus their rankings so far (bench/rlaif.py)."""
    judge_weight: float | None = None
    """With `judge`: people rank beside the judge (overlap 'all', the agreement floor at its
    default) and rounds train on both, judge rankings at this weight (bench/rlaif.py)."""


@dataclass
class PolicyScore:
    version_number: int
    per_prompt: list[float]
    """Mean preference score of the samples of each prompt (prompts in id order)."""
    per_sample: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_prompt) if self.per_prompt else float("nan")

    @property
    def sample_std(self) -> float:
        """Spread of single samples' scores: the unit bench/loop.py states gains in."""
        return statistics.stdev(self.per_sample) if len(self.per_sample) > 1 else float("nan")


@dataclass
class RoundReport:
    number: int
    """0 is the starting policy, before any round."""
    state: str
    score: PolicyScore
    change_interval: tuple[float, float] | None = None
    """95 % bootstrap interval of the mean change in score from the parent (the version the
    round started from); None when the round made no version."""
    parent_number: int | None = None
    rankings: int = 0
    """Rankings the simulated annotators submitted before this round."""
    label_ceiling: float | None = None
    """Pair accuracy of the true preference on all rankings so far (see labels_ceiling)."""
    rm_accuracy: float | None = None
    kl: float | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@contextlib.contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The web app on a free port in a daemon thread; yields its URL."""
    import socket

    import uvicorn

    from rankloop.web import create_app

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def sample_current_version(project_id: int, *, seed: int, prompts: int | None = None) -> int:
    """Samples and tasks for every active prompt the current version has none for (or for
    `prompts` of those with the fewest tasks, as the sampling form's prompt count does)."""
    from worker.jobs.sampling import run_sampling_job

    with session_scope() as session:
        job = sampling.start_sampling(
            session, project_id=project_id, enqueue=False, seed=seed, prompt_limit=prompts
        )
        job_id = job.id if job is not None else None
    return run_sampling_job(job_id) if job_id is not None else 0


def measure_policy(
    project_id: int, version_id: int, settings: LoopSettings, *, seed: int
) -> PolicyScore:
    """Fresh pure samples of the version on every active prompt (or on
    settings.measure_prompts), scored by the preference."""
    from worker.policies import PolicySpec, load_policy_for_generation
    from worker.training.evaluation import sample_once

    preference = load_preference(settings.preference)
    with session_scope(readonly=True) as session:
        version = session.get(PolicyVersion, version_id)
        project = session.get(Project, project_id)
        assert version is not None
        assert project is not None
        spec = PolicySpec(
            version_id=version.id,
            base_model=version.base_model or project.base_model,
            adapter_uri=version.artifact_uri,
            trust_remote_code=project.trust_remote_code,
            merged_adapter_uris=tuple(version.metrics.get("merged_adapters", [])),
        )
        number = version.number
        prompts = settings.measure_prompts or [
            messages or text
            for text, messages in session.execute(
                select(Prompt.text, Prompt.messages)
                .where(Prompt.project_id == project_id, Prompt.active)
                .order_by(Prompt.id)
            )
        ]
    model, tokenizer = load_policy_for_generation(spec)
    repeated = [p for p in prompts for _ in range(settings.measure_samples)]
    samples = sample_once(
        model,
        tokenizer,
        repeated,
        temperature=settings.temperature,
        max_new_tokens=settings.max_new_tokens,
        seed=seed,
        batch_size=32,
    )
    scores = [preference(s.text) for s in samples]
    n = settings.measure_samples
    per_prompt = [statistics.fmean(scores[i : i + n]) for i in range(0, len(scores), n)]
    return PolicyScore(number, per_prompt, scores)


def labels_ceiling(project_id: int, preference: Preference) -> float | None:
    """The true preference's accuracy on the annotators' untied pairs so far: what a perfect
    reward model would score on these noisy labels."""
    winner, loser = aliased(Sample), aliased(Sample)
    with session_scope(readonly=True) as session:
        pairs = session.execute(
            select(winner.text, loser.text)
            .select_from(Comparison)
            .join(winner, winner.id == Comparison.winner_id)
            .join(loser, loser.id == Comparison.loser_id)
            .where(Comparison.project_id == project_id, Comparison.tie.is_(False))
        ).all()
    return label_ceiling(((w, lo) for w, lo in pairs), preference)


def _current_version_id(project_id: int) -> int:
    with session_scope(readonly=True) as session:
        current = rounds_repo.current_version(session, project_id)
        assert current is not None
        return current.id


def _current_version_number(project_id: int) -> int:
    with session_scope(readonly=True) as session:
        current = rounds_repo.current_version(session, project_id)
        assert current is not None
        return current.number


def _run_round(
    project_id: int, settings: LoopSettings, number: int
) -> tuple[int, dict[str, float]]:
    """Start a round and run its stages here, timing each; returns (round id, seconds)."""
    from app.rounds import registry
    from worker.jobs.rounds import run_stage

    config = {**settings.round_config, "seed": settings.seed * 100 + number}
    config.pop("type", None)
    with session_scope() as session:
        training_round = rounds.start_round(
            session,
            project_id=project_id,
            round_type=settings.round_type,
            config=config,
            enqueue=False,
        )
        round_id = training_round.id
    seconds: dict[str, float] = {}
    stage: str | None = registry.get(settings.round_type).stage_names[0]
    while stage is not None:
        started = time.perf_counter()
        try:
            following = run_stage(round_id, stage)
        finally:
            seconds[stage] = time.perf_counter() - started
        stage = following
    return round_id, seconds


def judge_form(spec: str, *, preference: str, seed: int) -> JudgeCreate:
    """The loop's judge from `simulated:AGREEMENT` (ranks by the annotators' preference, right
    on that share of pairs) or `hf:PATH` (a local causal LM scoring by log-probabilities).
    No people rank beside it, so no agreement floor can pause it."""
    from app.judges.schemas import JudgeCreate

    kind, _, value = spec.partition(":")
    if kind == "simulated":
        try:
            agreement = float(value)
        except ValueError:
            raise ValueError(f"simulated:AGREEMENT takes a number in 0..1, got {value!r}") from None
        if not 0 <= agreement <= 1:
            raise ValueError(f"simulated:AGREEMENT takes a number in 0..1, got {value!r}")
        options = {"preference": preference, "agreement": agreement, "seed": seed}
        return JudgeCreate(
            name="simulated judge",
            backend="simulated",
            model="simulated",
            options=options,
            agreement_floor=None,
        )
    if kind == "hf" and value:
        return JudgeCreate(
            name="local judge", backend="hf", model=value, method="logprob", agreement_floor=None
        )
    raise ValueError(f"--judge takes simulated:AGREEMENT or hf:PATH, got {spec!r}")


def loop_judge(session: Session, project_id: int, settings: LoopSettings) -> int:
    """The project's judge for settings.judge (created, or updated to it), with the project
    set to train on judge rankings only (with settings.judge_weight: on people's and the
    judge's, the judge's at that weight); its id."""
    from app.judges import service as judges
    from app.judges.schemas import JudgeCreate, JudgeUpdate

    assert settings.judge is not None
    form = judge_form(settings.judge, preference=settings.preference, seed=settings.seed)
    project = session.get(Project, project_id)
    assert project is not None
    if settings.judge_weight is None:
        project.judge_only = True
    else:  # beside people: measured against them, so the floor can pause it
        project.judge_weight = settings.judge_weight
        form = form.model_copy(
            update={
                "overlap": "all",
                "agreement_floor": JudgeCreate.model_fields["agreement_floor"].default,
            }
        )
    for judge in judges.list_judges(session, project_id=project_id):
        if judge.name == form.name:  # an earlier run's: judge as this run says
            update = JudgeUpdate(
                backend=form.backend, model=form.model, method=form.method, options=form.options
            )
            if judge.state != "active":
                judges.resume_judge(session, judge_id=judge.id)
            return judges.update_judge(session, judge_id=judge.id, data=update).id
    return judges.create_judge(session, project_id=project_id, data=form, created_by_id=None).id


def run_loop(
    project_id: int,
    settings: LoopSettings,
    *,
    on_round: Callable[[RoundReport], None] | None = None,
) -> list[RoundReport]:
    """Round 0 measures the starting policy; each later round: rank, train, measure."""
    from worker.threads import configure_torch_threads
    from worker.training.evaluation import paired_bootstrap_interval

    configure_torch_threads(threads=settings.torch_threads)
    with session_scope() as session:
        logins = ensure_simulated_annotators(
            session, project_id=project_id, count=settings.annotators
        )
        judge_id = None if settings.judge is None else loop_judge(session, project_id, settings)
    preference = load_preference(settings.preference)
    reports: list[RoundReport] = []

    def report(item: RoundReport) -> None:
        reports.append(item)
        if on_round is not None:
            on_round(item)

    started = time.perf_counter()
    sample_current_version(project_id, seed=settings.seed)
    seconds = {"sampling": time.perf_counter() - started}
    started = time.perf_counter()
    first = measure_policy(
        project_id, _current_version_id(project_id), settings, seed=settings.seed + 10_000
    )
    seconds["measuring"] = time.perf_counter() - started
    report(RoundReport(0, "start", first, stage_seconds=seconds))
    measured = {first.version_number: first}
    with serve_in_thread() as url:

        def annotate(number: int) -> tuple[int, float | None]:
            """Rank every open task (the judge, with settings.judge); refit the ratings (the
            leaderboard) as the ratings job would; return the rankings submitted and the
            labels' ceiling so far."""
            from worker.jobs.ratings import recompute_if_dirty

            if judge_id is not None and settings.judge_weight is None:
                from worker.jobs.judging import run_judge

                judged = run_judge(judge_id)
                if judged.stopped not in ("no task", "max tasks"):
                    raise RuntimeError(f"the judge stopped: {judged.stopped} ({judged.reason})")
                return judged.ranked, labels_ceiling(project_id, preference)
            submitted = 0
            if judge_id is not None:
                # Beside people the judge goes first: a task people finish closes, and the
                # tasks both rank are what its agreement floor is measured on.
                from worker.jobs.judging import run_judge

                judged = run_judge(judge_id)  # a paused judge ranks nothing
                if judged.stopped not in ("no task", "max tasks", "paused"):
                    raise RuntimeError(f"the judge stopped: {judged.stopped} ({judged.reason})")
                submitted += judged.ranked
            ranked = run_annotators(
                url,
                logins,
                preference,
                project_id=project_id,
                noise=settings.noise,
                bias=settings.bias,
                seed=settings.seed * 100 + number,
                max_tasks=human_budget(),
            )
            if ranked.errors:
                raise RuntimeError("; ".join(ranked.errors))
            human_rankings[0] += ranked.submitted
            submitted += ranked.submitted
            recompute_if_dirty(project_id)  # the ratings job, which also checks judges' floor
            return submitted, labels_ceiling(project_id, preference)

        human_rankings = [0]

        def human_budget() -> int | None:
            """People's rankings this pass under settings.human_share (None: all)."""
            if settings.human_share >= 1:
                return None
            with session_scope(readonly=True) as session:
                slots = session.scalar(
                    select(func.coalesce(func.sum(RankingTask.required_annotations), 0)).where(
                        RankingTask.project_id == project_id
                    )
                )
            return max(0, math.ceil(settings.human_share * int(slots or 0)) - human_rankings[0])

        state = "start"
        for number in range(1, settings.rounds + 1):
            started = time.perf_counter()
            submitted, ceiling = annotate(number)
            annotate_seconds = time.perf_counter() - started
            parent = measured[_current_version_number(project_id)]
            round_id, seconds = _run_round(project_id, settings, number)
            with session_scope(readonly=True) as session:
                training_round = session.get(TrainingRound, round_id)
                assert training_round is not None
                metrics = dict(training_round.metrics)
                state, error = training_round.state.value, training_round.error
                candidate = session.scalar(
                    select(PolicyVersion.id).where(PolicyVersion.round_id == round_id)
                )
            started = time.perf_counter()
            score, change = parent, None
            if candidate is not None:  # a rejected one too: the figure says what training did
                score = measure_policy(project_id, candidate, settings, seed=settings.seed + 10_000)
                measured[score.version_number] = score
                change = paired_bootstrap_interval(parent.per_prompt, score.per_prompt, seed=number)
            seconds = {"annotating": annotate_seconds, **seconds}
            seconds["measuring"] = time.perf_counter() - started
            gate = metrics.get("gate") or {}
            rm = metrics.get("reward_model_summary") or {}
            candidate_metrics = (metrics.get("candidate") or {}).get("dpo") or {}
            report(
                RoundReport(
                    number,
                    state,
                    score,
                    change_interval=change,
                    parent_number=parent.version_number,
                    rankings=submitted,
                    label_ceiling=ceiling,
                    rm_accuracy=rm.get(
                        "heldout_accuracy", candidate_metrics.get("heldout_accuracy")
                    ),
                    kl=gate.get("kl"),
                    gate=gate,
                    stage_seconds=seconds,
                    error=error,
                )
            )
            if state == "failed":
                break
            if state != "done":  # no new version, so no new tasks: sample the current one again
                sample_current_version(project_id, seed=settings.seed * 100 + number)
        if settings.rank_last_version and state != "failed":
            annotate(settings.rounds + 1)
    return reports
