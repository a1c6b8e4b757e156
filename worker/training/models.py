"""Loading tokenizers and causal LMs the same way for a hub id and a local directory.

Every trainer (sampling, reward model, PPO) goes through these functions so that device,
dtype, dropout and padding are decided once: CUDA in bf16 (fp16 where bf16 is missing)
when a GPU is present, CPU float32 otherwise; dropout off (training notes §PPO 5);
a pad token distinct from EOS (§PPO 2); one LoRA setting (`lora_config`). Nothing here
downloads unless given a hub id.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import AbstractContextManager
from typing import Any, Literal, cast

import torch
from peft import LoraConfig, PeftModel
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D

from worker.training.prompts import encode_prompt as encode_prompt
from worker.training.prompts import format_prompt as format_prompt
from worker.training.prompts import sync_context

Quantization = Literal[None, "4bit", "8bit"]

DEFAULT_PAD_TOKEN = "<|pad|>"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_device() -> str:
    """The device training should use: the first CUDA GPU when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map "auto" to bf16/fp16 on CUDA and float32 elsewhere; accept explicit names too."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def _hub_token(token: str | None) -> str | None:
    """The token to send, or None: an empty or blank one (HF_TOKEN= in .env) is no token.

    huggingface_hub sends any string it is given as `Authorization: Bearer <token>`, and an
    empty one makes a header that HTTP clients refuse before the request leaves."""
    for candidate in (token, os.environ.get("HF_TOKEN")):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return None


def load_tokenizer(
    name_or_path: str, *, trust_remote_code: bool = False, token: str | None = None
) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a hub id or a local directory (HF_TOKEN is used when set)."""
    return AutoTokenizer.from_pretrained(
        str(name_or_path), trust_remote_code=trust_remote_code, token=_hub_token(token)
    )


def _zero_dropout(config: Any) -> None:
    """Set every dropout probability in a config to 0: dropout makes log-probs noisy."""
    for key, value in list(vars(config).items()):
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, 0.0)
    for sub in ("text_config", "decoder"):
        nested = getattr(config, sub, None)
        if nested is not None and nested is not config and hasattr(nested, "__dict__"):
            _zero_dropout(nested)


def _quantization_config(quantization: Quantization, dtype: torch.dtype) -> Any:
    if quantization not in ("4bit", "8bit"):
        raise ValueError(f"quantization must be None, '4bit' or '8bit', got {quantization!r}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            f"{quantization} loading needs the bitsandbytes package and a CUDA GPU: "
            "pip install bitsandbytes (or load without quantization)"
        )
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_causal_lm(
    name_or_path: str,
    *,
    device: str | None = None,
    dtype: str = "auto",
    quantization: Quantization = None,
    trust_remote_code: bool = False,
    token: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM in eval mode with dropout 0, on `device` (default: `pick_device()`).

    4/8-bit loading goes through bitsandbytes and needs CUDA; it fails with a clear
    message when either is missing instead of silently loading full precision.
    """
    device = device or pick_device()
    torch_dtype = resolve_dtype(dtype, device)
    hub_token = _hub_token(token)
    config = AutoConfig.from_pretrained(
        str(name_or_path), trust_remote_code=trust_remote_code, token=hub_token
    )
    _zero_dropout(config)
    kwargs: dict[str, Any] = {}
    if quantization is not None:
        if not device.startswith("cuda"):
            raise RuntimeError(f"{quantization} quantization needs a CUDA device, got {device!r}")
        kwargs["quantization_config"] = _quantization_config(quantization, torch_dtype)
        kwargs["device_map"] = {"": torch.device(device).index or 0}
    elif device.startswith("cuda"):
        kwargs["device_map"] = {"": torch.device(device).index or 0}  # load straight to the GPU
    model = AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        config=config,
        dtype=torch_dtype,
        trust_remote_code=trust_remote_code,
        token=hub_token,
        **kwargs,
    )
    if "device_map" not in kwargs:
        move_to(model, device)
    model.eval()
    return model


def move_to(model: torch.nn.Module, device: str | torch.device) -> None:
    """model.to(device) in place; transformers' typing of `to` rejects a plain device."""
    cast(Any, model).to(device)


def base_model_of(lm: PeftModel) -> PreTrainedModel:
    """The wrapped transformers model (peft types it as `Tensor | Module`)."""
    return cast(PreTrainedModel, lm.get_base_model())


def input_vocab_size(model: PreTrainedModel) -> int:
    """Rows of the input embedding (the model's typing leaves it `Tensor | Module`)."""
    return int(cast(torch.nn.Embedding, model.get_input_embeddings()).num_embeddings)


def ensure_pad_token(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel | None = None,
    *,
    pad_token: str = DEFAULT_PAD_TOKEN,
) -> int:
    """Give the tokenizer a pad token distinct from EOS and return its id.

    With pad == EOS, masking "everything after the first EOS" also masks real EOS tokens
    (training notes §PPO 2). When a token is added, the model's embeddings grow to
    match; the new row only ever sits under a zero attention mask. Given the model, the
    tokenizer's model_max_length also drops to the model's context (`prompts.sync_context`).
    """
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos:
        tokenizer.add_special_tokens({"pad_token": pad_token})
    if model is not None:
        sync_context(tokenizer, model)
        if input_vocab_size(model) < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token_id


def lora_config(
    base: PreTrainedModel,
    *,
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | str | None,
    task_type: str | None = None,
) -> LoraConfig:
    """One LoRA setting for every trainer, right for the base's layer kind.

    GPT-2-style models store their linear weights transposed (`Conv1D`); peft must be told
    (fan_in_fan_out), or it guesses and warns on every run.
    """
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or "all-linear",
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in base.modules()),
        bias="none",
        task_type=task_type,
    )


def forked_rng(device: torch.device) -> AbstractContextManager[Any]:
    """`torch.random.fork_rng` over the CPU's generator and, on CUDA, `device`'s: seeding or
    drawing inside leaves the caller's random state as it was."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])
