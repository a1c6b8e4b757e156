"""bench/rlaif.py's endpoint: the 'openai' backend against the loopback simulated judge.

The full --quick benchmark runs the loop several times (minutes); here only the piece its
throughput figure rests on: a real HTTP round trip whose ranking is the simulated judge's.
"""

from __future__ import annotations

from bench._rlaif_server import answers_in, serve
from worker.judging import make_judge
from worker.judging.prompt import render_prompt
from worker.judging.simulated import SimulatedJudge
from worker.judging.spec import JudgeInput, JudgeSpec

ITEM = JudgeInput(
    prompt="Say something.",
    samples=[(11, "one two"), (12, "one two three four five six"), (13, "one\n\ntwo three four")],
    guidelines="Longer is better.",
)


def _spec(**values: object) -> JudgeSpec:
    base: dict[str, object] = {
        "backend": "simulated",
        "model": "simulated",
        "method": "listwise",
        "prompt_template": "",
        "principles": [],
        "options": {"preference": "length:30", "agreement": 1.0, "seed": 0},
    }
    base.update(values)
    return JudgeSpec(**base)  # type: ignore[arg-type]


def test_answers_are_read_back_from_the_default_prompt_in_label_order() -> None:
    prompt = render_prompt(_spec(), ITEM)
    assert answers_in(prompt) == [text for _, text in ITEM.samples]


def test_endpoint_judge_ranks_by_the_simulated_preference_over_http() -> None:
    with serve(SimulatedJudge.from_spec(_spec())) as url:
        judge = make_judge(_spec(backend="openai", base_url=url, api_key="k", options={}))
        verdict = judge.judge(ITEM)
    assert verdict.groups == [[12], [13], [11]]
