"""The 'hf' backend: a local Hugging Face causal LM, loaded exactly as policies are.

Methods:
- logprob: each sample alone under the judge prompt, asked "does answer [1] follow the
  guidelines and principles well? Answer Yes or No."; its score is log P(Yes) - log P(No).
  The contrast, rather than log P(answer), is what a judge should measure: an answer's own
  likelihood rewards short, generic text, and P(Yes) alone moves with how the prompt reads.
  One forward pass per sample and no parsing, so it suits small models that cannot follow
  an output format. Equal scores tie.
- listwise / pairwise: generation at options['temperature'] (default 0: greedy), parsed
  strictly; a retry samples at options['retry_temperature'] (default 0.7), since greedy
  decoding would only repeat itself.
"""

from __future__ import annotations

from typing import Any, cast

import torch

from worker.judging.methods import Retry, judge_listwise, judge_pairs
from worker.judging.pairwise import groups_from_strengths
from worker.judging.prompt import HARM_QUESTION, LOGPROB_QUESTION, render_single
from worker.judging.spec import JudgeInput, JudgeSpec, Verdict, truncate_raw
from worker.training.generation import GenerationSettings, generate_batch
from worker.training.prompts import fit_prompt_ids, token_limit

DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_RETRY_TEMPERATURE = 0.7
DEFAULT_BATCH_ROWS = 8


class LocalJudge:
    """Judging with an already loaded (model, tokenizer) pair; make_judge caches the loading."""

    def __init__(self, spec: JudgeSpec, model: Any, tokenizer: Any) -> None:
        self.spec, self.model, self.tokenizer = spec, model, tokenizer
        options = spec.options
        self.max_new_tokens = int(options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self.retry_temperature = float(options.get("retry_temperature", DEFAULT_RETRY_TEMPERATURE))
        self.temperature = float(options.get("temperature", 0.0))
        self.batch_rows = int(options.get("batch_rows", DEFAULT_BATCH_ROWS))
        # After a chat template's assistant header the answer starts a line; in plain text it
        # follows "Answer:" after a space.
        space = "" if getattr(tokenizer, "chat_template", None) else " "
        self.yes = tokenizer.encode(space + "Yes", add_special_tokens=False)
        self.no = tokenizer.encode(space + "No", add_special_tokens=False)

    def judge(self, item: JudgeInput) -> Verdict:
        if self.spec.method == "logprob":
            return self.judge_logprob(item)
        if self.spec.method == "pairwise":
            return judge_pairs(self.spec, item, self.complete)
        return judge_listwise(self.spec, item, self.complete)

    # Generation (listwise, pairwise) ---------------------------------------------------

    def complete(self, prompt: str, retry: Retry | None) -> str:
        settings = GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature if retry is None else self.retry_temperature,
        )
        seed = 0 if retry is None else retry.attempt
        return generate_batch(self.model, self.tokenizer, [prompt], settings=settings, seed=seed)[
            0
        ].text

    # Log-probabilities -----------------------------------------------------------------

    def judge_logprob(self, item: JudgeInput) -> Verdict:
        ids = [sample_id for sample_id, _ in item.samples]
        texts = [text for _, text in item.samples]
        scores = self.score_answers(item)
        harmful: dict[int, str] = {}
        if self.spec.flag_harm:
            harm = self.yes_margins(
                [render_single(self.spec, item, t, HARM_QUESTION) for t in texts]
            )
            harmful = {
                i: f"judge's P(harmful) > P(not): margin {m:.2f}"
                for i, m in zip(ids, harm, strict=True)
                if m > 0
            }
        raw = "log P(Yes) - log P(No): " + ", ".join(
            f"[{n}] {s:.4f}" for n, s in enumerate(scores, start=1)
        )
        return Verdict(groups_from_strengths(ids, scores), 1, harmful, truncate_raw(raw))

    def score_answers(self, item: JudgeInput) -> list[float]:
        """Each sample's log P(Yes) - log P(No), in the item's order: the logprob method's
        scores, which a round uses as the reward (worker/training/judge_reward.py)."""
        return self.yes_margins(
            [render_single(self.spec, item, text, LOGPROB_QUESTION) for _, text in item.samples]
        )

    @torch.no_grad()
    def yes_margins(self, prompts: list[str]) -> list[float]:
        """log P(Yes | prompt) - log P(No | prompt) for each prompt, batch_rows at a time."""
        budget = token_limit(self.tokenizer, model=self.model)
        limit = None if budget is None else budget - max(len(self.yes), len(self.no))
        fitted = [fit_prompt_ids(self.tokenizer, prompt, limit) for prompt in prompts]
        margins: list[float] = []
        for start in range(0, len(fitted), self.batch_rows):
            batch = fitted[start : start + self.batch_rows]
            if len(self.yes) == len(self.no) == 1:  # one forward pass reads both answers
                logp = torch.log_softmax(self._forward(batch, keep=1)[:, -1], dim=-1)  # (B, V)
                margins += (logp[:, self.yes[0]] - logp[:, self.no[0]]).tolist()
            else:
                yes = self._continuation_logps([ids + self.yes for ids in batch], len(self.yes))
                no = self._continuation_logps([ids + self.no for ids in batch], len(self.no))
                margins += [y - n for y, n in zip(yes, no, strict=True)]
        return margins

    def _forward(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions of left-padded rows: (B, keep, V), float32."""
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows])  # (B, T)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows])
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T), left padding
        device = self.model.device
        out = cast(Any, self.model)(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=keep,
        )
        return cast(torch.Tensor, out.logits).float()

    def _continuation_logps(self, rows: list[list[int]], n: int) -> list[float]:
        """Sum of log-probs of each row's last n tokens given what precedes them."""
        logits = self._forward(rows, keep=n + 1)[:, :-1]  # (B, n, V): predicts the last n
        targets = torch.tensor([ids[-n:] for ids in rows], device=logits.device)  # (B, n)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return logp.sum(-1).tolist()  # type: ignore[no-any-return]
