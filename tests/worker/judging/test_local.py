"""The 'hf' backend on the tiny model: log-prob scoring ranks; a model that cannot write the
answer format is retried, then refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from worker.judging import clear_cache, make_judge
from worker.judging.local import LocalJudge
from worker.judging.prompt import render_single
from worker.judging.spec import JudgeInput, JudgeSpec, MalformedOutput
from worker.judging.throughput import measure
from worker.training.prompts import fit_prompt_ids

ITEM = JudgeInput(
    prompt="How do I keep a plant healthy?",
    samples=[
        (11, "Water it when the soil is dry and give it light."),
        (12, "bad bad bad"),
        (13, "Plants like the sun, please help them grow."),
        (14, "Water it."),
    ],
    guidelines="Prefer helpful, kind answers.",
)


def spec(model: Path, method: str = "logprob", **overrides: object) -> JudgeSpec:
    values: dict[str, object] = {
        "backend": "hf",
        "model": str(model),
        "method": method,
        "prompt_template": "",
        "principles": ["Be helpful", "Be kind"],
        "max_attempts": 2,
        "options": {"max_new_tokens": 16},
    }
    values.update(overrides)
    return JudgeSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def judge(tiny_model_dir: Path) -> LocalJudge:
    made = make_judge(spec(tiny_model_dir))
    assert isinstance(made, LocalJudge)
    return made


def test_logprob_ranks_every_sample_once_in_one_attempt(judge: LocalJudge) -> None:
    verdict = judge.judge(ITEM)
    ranked = [sid for group in verdict.groups for sid in group]
    assert sorted(ranked) == [11, 12, 13, 14]
    assert verdict.attempts == 1
    assert verdict.harmful == {}
    assert verdict.raw is not None
    assert verdict.raw.startswith("log P(Yes) - log P(No)")


def test_logprob_order_follows_the_yes_margins_and_ignores_the_order_shown(
    judge: LocalJudge,
) -> None:
    margins = judge.yes_margins([render_single(judge.spec, ITEM, t) for _, t in ITEM.samples])
    by_margin = [
        sid for _, sid in sorted(zip(margins, [11, 12, 13, 14], strict=True), reverse=True)
    ]
    verdict = judge.judge(ITEM)
    assert [sid for group in verdict.groups for sid in group] == by_margin
    shown_reversed = JudgeInput(ITEM.prompt, ITEM.samples[::-1], ITEM.guidelines)
    assert judge.judge(shown_reversed).groups == verdict.groups  # each sample is scored alone


def test_batched_scores_equal_one_prompt_at_a_time(judge: LocalJudge) -> None:
    prompts = [render_single(judge.spec, ITEM, t) for _, t in ITEM.samples]
    batched = judge.yes_margins(prompts)  # right-padded rows of different lengths
    alone = [judge.yes_margins([p])[0] for p in prompts]
    assert batched == pytest.approx(alone, abs=1e-4)


def test_the_one_token_shortcut_scores_like_the_general_path(judge: LocalJudge) -> None:
    single = copy.copy(judge)  # answers of one token each take the one-forward-pass path
    single.yes, single.no = [judge.yes[0]], [judge.tokenizer.eos_token_id]
    prompts = [render_single(judge.spec, ITEM, t) for _, t in ITEM.samples]
    shortcut = single.yes_margins(prompts)
    rows = [fit_prompt_ids(judge.tokenizer, p, None) for p in prompts]
    yes = judge._continuation_logps([ids + single.yes for ids in rows], 1)
    no = judge._continuation_logps([ids + single.no for ids in rows], 1)
    assert [y - n for y, n in zip(yes, no, strict=True)] == pytest.approx(shortcut, abs=1e-4)


def test_harm_flags_are_a_subset_of_the_samples_with_reasons(tiny_model_dir: Path) -> None:
    verdict = make_judge(spec(tiny_model_dir, flag_harm=True)).judge(ITEM)
    assert set(verdict.harmful) <= {11, 12, 13, 14}
    assert all(verdict.harmful.values())


def test_listwise_on_a_model_that_cannot_write_the_format_is_malformed_after_max_attempts(
    tiny_model_dir: Path,
) -> None:
    judge = make_judge(spec(tiny_model_dir, "listwise", max_attempts=2))
    with pytest.raises(MalformedOutput, match="after 2 attempts") as caught:
        judge.judge(ITEM)
    assert caught.value.attempts == 2


def test_local_models_are_loaded_once(tiny_model_dir: Path, judge: LocalJudge) -> None:
    again = make_judge(spec(tiny_model_dir, "listwise"))
    assert isinstance(again, LocalJudge)
    assert again.model is judge.model
    clear_cache()
    fresh = make_judge(spec(tiny_model_dir))
    assert isinstance(fresh, LocalJudge)
    assert fresh.model is not judge.model


def test_throughput_counts_rankings_per_second(judge: LocalJudge) -> None:
    assert measure(judge, [ITEM, ITEM]) > 0
