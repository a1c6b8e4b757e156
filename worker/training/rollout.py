"""One batch of episodes: what a policy-gradient update needs from its rollout.

Apart from worker/training/ppo.py (which makes them) so worker/training/shards.py can gather
and deal them across processes without importing the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from worker.training.prompts import FittedPrompt


@dataclass
class Rollout:
    """One batch of episodes and everything PPO needs from them (no gradients)."""

    input_ids: Tensor  # (B, T) left-padded prompt, response, pad after its end
    attention_mask: Tensor  # (B, T)
    response_mask: Tensor  # (B, R) real response tokens, the ending (EOS, stop string) included
    has_eos: Tensor  # (B,) the response ended: EOS, end-of-turn token or stop string
    logprobs: Tensor  # (B, R) policy, temperature-scaled
    ref_logprobs: Tensor  # (B, R) reference (adapter disabled), temperature-scaled
    values: Tensor  # (B, R)
    entropy: Tensor  # (B, R)
    responses: list[str]
    prompts: list[FittedPrompt]  # as the policy read them: shortened when they did not fit

    @property
    def n_response(self) -> int:
        return self.response_mask.shape[1]
