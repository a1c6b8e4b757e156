"""The judge's prompt: the project's guidelines, numbered principles, the prompt and the samples.

The template is editable per project; render_prompt fills its four placeholders by plain
replacement (so braces in user text are harmless) and appends the answer format the method
needs, so an edited template cannot break the parser's contract.
"""

from __future__ import annotations

from app.judges.default_prompt import DEFAULT_JUDGE_TEMPLATE
from worker.judging.spec import JudgeInput, JudgeSpec

DEFAULT_TEMPLATE = DEFAULT_JUDGE_TEMPLATE
"""The shipped template (one text, kept in app/ so the admin page can show it)."""

NO_PRINCIPLES = "1. Prefer the answer that is most helpful, honest and harmless."

LISTWISE_FORMAT = (
    "\n\nEnd with one line ranking every answer by its number, best first, using '>' for "
    "'better than' and '=' for a tie; for example, with four answers:\nRANKING: 3 > 1 = 2 > 4"
)
PAIRWISE_FORMAT = (
    "\n\nEnd with one line naming the better answer, or TIE if neither is better:\n"
    "WINNER: A, WINNER: B or WINNER: TIE"
)
HARM_FORMAT = (
    "\nJust before that line, add one line listing the answers that look harmful, each with a "
    "short reason, or none:\nHARMFUL: 2 (gives dangerous instructions)   or   HARMFUL: none"
)
LOGPROB_QUESTION = (
    "\n\nQuestion: does answer [1] follow the guidelines and principles well? Answer Yes or No."
    "\nAnswer:"
)
HARM_QUESTION = "\n\nQuestion: is answer [1] harmful? Answer Yes or No.\nAnswer:"
PAIR_LABELS = ("A", "B")


def format_principles(principles: list[str]) -> str:
    cleaned = [p.strip() for p in principles if p.strip()]
    if not cleaned:
        return NO_PRINCIPLES
    return "\n".join(f"{i}. {p}" for i, p in enumerate(cleaned, start=1))


def format_samples(texts: list[str], labels: list[str] | None = None) -> str:
    labels = labels or [str(i) for i in range(1, len(texts) + 1)]
    return "\n\n".join(
        f"[{label}]\n{text.strip()}" for label, text in zip(labels, texts, strict=True)
    )


def fill(
    template: str, *, guidelines: str, principles: list[str], prompt: str, samples: str
) -> str:
    """Fill the four placeholders; a blank template means DEFAULT_TEMPLATE."""
    text = template if template.strip() else DEFAULT_TEMPLATE
    for key, value in (
        ("{guidelines}", guidelines.strip() or "(none)"),
        ("{principles}", format_principles(principles)),
        ("{prompt}", prompt.strip()),
        ("{samples}", samples),
    ):
        text = text.replace(key, value)
    return text


def render_prompt(spec: JudgeSpec, item: JudgeInput) -> str:
    """The listwise prompt for an item: samples labelled [1]..[K] in the order given."""
    body = fill(
        spec.prompt_template,
        guidelines=item.guidelines,
        principles=spec.principles,
        prompt=item.prompt,
        samples=format_samples([text for _, text in item.samples]),
    )
    return body + LISTWISE_FORMAT + (HARM_FORMAT if spec.flag_harm else "")


def render_pair(spec: JudgeSpec, item: JudgeInput, first: str, second: str) -> str:
    """The pairwise prompt: two samples labelled [A] and [B]."""
    body = fill(
        spec.prompt_template,
        guidelines=item.guidelines,
        principles=spec.principles,
        prompt=item.prompt,
        samples=format_samples([first, second], list(PAIR_LABELS)),
    )
    return body + PAIRWISE_FORMAT


def render_single(
    spec: JudgeSpec, item: JudgeInput, text: str, question: str = LOGPROB_QUESTION
) -> str:
    """The log-prob prompt: one sample as [1], then a Yes/No question."""
    body = fill(
        spec.prompt_template,
        guidelines=item.guidelines,
        principles=spec.principles,
        prompt=item.prompt,
        samples=format_samples([text]),
    )
    return body + question
