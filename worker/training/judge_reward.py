"""The reward as "score these (prompt, answers) groups": one protocol whether a trained reward
model or a model judge scores (docs/training-notes.md §Critic-free rounds, "A judge as the
reward").

The policy stages (ppo.py, critic_free.py) take a flat `ScoreFn(prompts, responses)` whose rows
are group-major (a prompt's K answers side by side; PPO: K = 1); `flat` turns a `GroupScorer`
into one, and `per_answer` turns a reward model's ScoreFn into a GroupScorer, so neither side
knows which it has. A judge scores a group in one of two ways:

- per answer, where its method gives each answer a score (a local model's logprob method:
  log P(Yes) − log P(No), in nats, kept as it is);
- from its ordering of the group otherwise (listwise, pairwise, the simulated judge): each
  answer's Borda score, (answers below it − answers above it) / (K − 1), standardised within
  the group to zero mean and unit spread, as a reward model's normalised scores are. A fully
  tied group scores 0 everywhere. Offsets between groups do not matter to RLOO and GRPO (each
  answer's baseline is its own group); a group of one has nothing to rank, so PPO takes only
  judges that score answers (app/rounds/judge_reward.py refuses the others at round start).

A judge whose answer for a group stays malformed after its retries scores that group 0 (no
advantage, nothing learnt from it) and the group is counted in `JudgeReward.malformed`; an
unavailable endpoint (EndpointUnavailable) fails the stage.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.judging.spec import Judge, JudgeInput, MalformedOutput
from worker.training.ppo import ScoreFn
from worker.training.prompts import Prompt

Group = tuple[Prompt, Sequence[str]]
"""One prompt and its answers."""


class GroupScorer(Protocol):
    """Scores each answer of each group: one list per group, in the group's order."""

    def __call__(self, groups: Sequence[Group]) -> list[list[float]]: ...


class AnswerScorer(Protocol):
    """A judge that also scores answers one by one (worker.judging.local.LocalJudge)."""

    def score_answers(self, item: JudgeInput) -> list[float]: ...


def per_answer(score_fn: ScoreFn) -> GroupScorer:
    """A reward model's ScoreFn as a GroupScorer: every answer scored on its own, in one call."""

    def score_groups(groups: Sequence[Group]) -> list[list[float]]:
        prompts = [prompt for prompt, answers in groups for _ in answers]
        scores = score_fn(prompts, [answer for _, answers in groups for answer in answers])
        return _split(scores, [len(answers) for _, answers in groups])

    return score_groups


def flat(score_groups: GroupScorer, group_size: int) -> ScoreFn:
    """A GroupScorer as the stages' ScoreFn: consecutive runs of `group_size` rows (the same
    prompt each) are one group."""

    def score_fn(prompts: list[Prompt], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses) or len(prompts) % group_size:
            raise ValueError(
                f"{len(responses)} responses to {len(prompts)} prompts do not make groups of "
                f"{group_size}"
            )
        groups: list[Group] = []
        for start in range(0, len(prompts), group_size):
            prompt = prompts[start]
            if any(p != prompt for p in prompts[start : start + group_size]):
                raise ValueError("a group's rows must share one prompt (group-major rows)")
            groups.append((prompt, responses[start : start + group_size]))
        return [score for group in score_groups(groups) for score in group]

    return score_fn


def versus(
    score_groups: GroupScorer,
    prompts: Sequence[Prompt],
    new: Sequence[str],
    old: Sequence[str],
    *,
    samples_per_prompt: int,
) -> tuple[list[float], list[float]]:
    """The gate's scores of two versions' answers (each prompt's `samples_per_prompt` rows side
    by side): each prompt's new and old answers in ONE group, so a judge that ranks compares
    them with each other; a scorer per answer gives what scoring each apart would."""
    n = samples_per_prompt
    groups = [(prompts[i], [*new[i : i + n], *old[i : i + n]]) for i in range(0, len(prompts), n)]
    new_scores: list[float] = []
    old_scores: list[float] = []
    for scores in score_groups(groups):
        half = len(scores) // 2
        new_scores += scores[:half]
        old_scores += scores[half:]
    return new_scores, old_scores


def rank_scores(order: Sequence[Sequence[int]], ids: Sequence[int]) -> list[float]:
    """`ids`' scores from an ordering (best first, ties share an inner list): Borda scores
    (answers below − answers above) / (K − 1), then standardised to zero mean and unit
    (population) spread within the group; all 0 when everything ties."""
    place = {answer: rank for rank, tied in enumerate(order) for answer in tied}
    if set(place) != set(ids):
        raise ValueError("the ordering does not hold exactly the group's answers")
    k = len(ids)
    if k < 2:
        return [0.0] * k
    borda = [
        (sum(place[j] > place[i] for j in ids) - sum(place[j] < place[i] for j in ids)) / (k - 1)
        for i in ids
    ]  # already mean 0: every strict pair adds +1 to one answer and -1 to the other
    spread = statistics.pstdev(borda)
    return [b / spread if spread > 0 else 0.0 for b in borda]


@dataclass
class JudgeReward:
    """A model judge as a GroupScorer: per answer when it scores answers (`scores_answers`),
    else from its ordering of each group (`rank_scores`)."""

    judge: Judge
    guidelines: str
    """The project's guidelines, shown to the judge as when it ranks tasks."""
    scores_answers: bool
    """The judge's method gives a score per answer (app.rounds.judge_reward.scores_answers)."""
    malformed: int = field(default=0)
    """Groups scored 0 because the judge's answer stayed malformed after its retries."""
    groups: int = field(default=0)
    """Groups scored so far."""

    def __call__(self, groups: Sequence[Group]) -> list[list[float]]:
        return [self._one(prompt, answers) for prompt, answers in groups]

    def _one(self, prompt: Prompt, answers: Sequence[str]) -> list[float]:
        self.groups += 1
        item = JudgeInput(
            prompt=prompt_text(prompt),
            samples=list(enumerate(answers)),
            guidelines=self.guidelines,
        )
        if self.scores_answers:
            scorer: AnswerScorer = self.judge  # type: ignore[assignment]
            return [float(score) for score in scorer.score_answers(item)]
        try:
            verdict = self.judge.judge(item)
        except MalformedOutput:
            self.malformed += 1
            return [0.0] * len(answers)
        return rank_scores(verdict.groups, [i for i, _ in item.samples])


def prompt_text(prompt: Prompt) -> str:
    """A prompt as a judge reads it: a conversation flattened as the judging queue does."""
    from app.projects.service import flatten_conversation

    return prompt if isinstance(prompt, str) else flatten_conversation(prompt)


def _split(values: Sequence[float], sizes: Sequence[int]) -> list[list[float]]:
    out: list[list[float]] = []
    start = 0
    for size in sizes:
        out.append(list(values[start : start + size]))
        start += size
    return out
