"""Held-out accuracy grades the reward model on people's rankings only when a judge's train
beside them: judge labels must not grade the promotion gate."""

from __future__ import annotations

from worker.training.loop import split_by_prompt
from worker.training.reward_model import RankingExample, split_heldout


def _examples(prompts: int, *, human: bool) -> list[RankingExample]:
    return [
        RankingExample(f"prompt {i}", ["a", "b"], [0, 1], human=human) for i in range(prompts)
    ]


def test_beside_a_judge_only_peoples_rankings_are_held_out() -> None:
    people = _examples(20, human=True)
    judge = _examples(40, human=False)  # the same 20 prompts and 20 of its own

    train, heldout = split_heldout([*people, *judge], heldout_fraction=0.25, seed=0)

    assert len(heldout) == 5
    assert all(e.human for e in heldout)
    held = {e.prompt for e in heldout}
    assert not held & {e.prompt for e in train}  # the judge's ranking of a held prompt dropped
    assert len(train) == 15 + 35
    assert any(not e.human for e in train)


def test_people_alone_or_a_judge_alone_split_as_before() -> None:
    for examples in (_examples(20, human=True), _examples(20, human=False)):
        assert split_heldout(examples, heldout_fraction=0.2, seed=3) == split_by_prompt(
            examples, heldout_fraction=0.2, seed=3
        )
