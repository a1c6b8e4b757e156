"""The evaluating stage counts the held-out prompts its generation shortened to fit, as every
stage does: distinct prompts, though the gate samples each several times."""

from __future__ import annotations

from pathlib import Path

from app.rounds.gate import repeat_prompts
from tests.worker.test_conversation_fit import CONVERSATION, QUESTION
from tests.worker.test_long_prompts import load
from worker.jobs.rounds import gate_prompt_cuts
from worker.training.evaluation import sample_once


def test_the_gate_counts_an_over_long_conversation_once(tiny_model_dir: Path) -> None:
    model, tokenizer = load(tiny_model_dir)
    prompts = repeat_prompts([CONVERSATION, QUESTION], 3)

    samples = sample_once(model, tokenizer, prompts, temperature=1.0, max_new_tokens=8, seed=0)

    assert gate_prompt_cuts(prompts, samples) == {
        "prompts_turns_dropped": 1,
        "prompts_truncated": 0,
    }
