"""Loading, padding and prompt formatting, on the tiny model saved like a hub checkpoint."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from worker.training.models import (
    encode_prompt,
    ensure_pad_token,
    format_prompt,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    pick_device,
    resolve_dtype,
)
from worker.training.tiny_model import corpus_documents, make_tiny_model, synthetic_rankings


def test_tiny_model_loads_through_the_hub_loading_path(tiny_model_dir: Path) -> None:
    model = load_causal_lm(str(tiny_model_dir), device="cpu")
    tokenizer = load_tokenizer(str(tiny_model_dir))

    assert isinstance(model, PreTrainedModel)
    assert model.config.n_layer == 2
    assert not model.training
    assert model.dtype == torch.float32
    ids = tokenizer("User: Hi\nAssistant:", return_tensors="pt")
    logits = model(**ids).logits  # (1, T, V)
    assert logits.shape == (1, ids["input_ids"].shape[1], model.config.vocab_size)
    assert tokenizer.decode(ids["input_ids"][0]) == "User: Hi\nAssistant:"


def test_tiny_model_pad_token_is_distinct_from_eos(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))

    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_load_causal_lm_turns_dropout_off(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "with_dropout"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
    (copy / "config.json").write_text(json.dumps(config))

    model = load_causal_lm(str(copy), device="cpu")

    assert (model.config.resid_pdrop, model.config.embd_pdrop, model.config.attn_pdrop) == (0, 0, 0)
    ids = torch.tensor([[5, 6, 7, 8]])
    model.train()  # even in train mode, two passes agree when every dropout is 0
    assert torch.equal(model(ids).logits, model(ids).logits)


def test_lora_config_knows_gpt2_conv1d_weights_are_transposed(tiny_model_dir: Path) -> None:
    gpt2 = load_causal_lm(str(tiny_model_dir), device="cpu")
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=4,
        )
    )  # fmt: skip
    gpt2_lora = lora_config(gpt2, r=4, alpha=8, dropout=0.0, target_modules=None)
    llama_lora = lora_config(llama, r=4, alpha=8, dropout=0.0, target_modules=None)

    assert gpt2_lora.fan_in_fan_out is True
    assert llama_lora.fan_in_fan_out is False
    assert gpt2_lora.target_modules == llama_lora.target_modules == "all-linear"
    with warnings.catch_warnings():
        # peft warns (UserWarning) when it has to correct fan_in_fan_out itself.
        warnings.filterwarnings("error", message=".*fan_in_fan_out.*")
        wrapped = get_peft_model(gpt2, gpt2_lora)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():  # a fresh adapter (B = 0) leaves the outputs unchanged
        with wrapped.disable_adapter():
            before = wrapped(input_ids=ids).logits
        after = wrapped(input_ids=ids).logits
    torch.testing.assert_close(after, before)


def test_resolve_dtype_is_float32_on_cpu_and_rejects_unknown_names() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", "cpu")


def test_pick_device_matches_cuda_availability() -> None:
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available(),
    reason="quantized loading would succeed here",
)
def test_quantized_loading_fails_clearly_without_bitsandbytes_or_cuda(
    tiny_model_dir: Path,
) -> None:
    with pytest.raises(RuntimeError, match="4bit"):
        load_causal_lm(str(tiny_model_dir), quantization="4bit")


def test_ensure_pad_token_adds_a_new_pad_and_grows_the_embeddings(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir), device="cpu")
    tokenizer.pad_token = None
    n_before = len(tokenizer)

    pad_id = ensure_pad_token(tokenizer, model, pad_token="<|new_pad|>")

    assert pad_id == n_before
    assert pad_id != tokenizer.eos_token_id
    assert model.get_input_embeddings().num_embeddings == n_before + 1
    assert model.config.pad_token_id == pad_id


def test_ensure_pad_token_replaces_a_pad_equal_to_eos(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.pad_token = tokenizer.eos_token

    pad_id = ensure_pad_token(tokenizer)

    assert pad_id != tokenizer.eos_token_id
    assert tokenizer.pad_token == "<|pad|>"


def test_ensure_pad_token_keeps_an_existing_distinct_pad(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    n_before = len(tokenizer)

    assert ensure_pad_token(tokenizer) == tokenizer.convert_tokens_to_ids("<|pad|>")
    assert len(tokenizer) == n_before


def test_format_prompt_wraps_plain_text_as_one_user_turn(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))

    assert format_prompt(tokenizer, "Why is the sky blue?") == (
        "User: Why is the sky blue?\nAssistant:"
    )


HI_HELLO_WHY = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Why?"},
]


def test_format_prompt_renders_a_conversation_up_to_the_reply(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    conversation = [{"role": "system", "content": "Be brief."}, *HI_HELLO_WHY]

    assert format_prompt(tokenizer, conversation) == (
        "Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Why?\nAssistant:"
    )


def test_format_prompt_falls_back_to_the_documented_template(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    conversation = HI_HELLO_WHY
    with_template = format_prompt(tokenizer, conversation)
    tokenizer.chat_template = None

    assert format_prompt(tokenizer, conversation) == with_template
    assert format_prompt(tokenizer, "Hi") == "User: Hi\nAssistant:"


def test_format_prompt_uses_a_custom_chat_template(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )

    assert format_prompt(tokenizer, "Hi") == "<user>Hi<assistant>"


def test_format_prompt_rejects_a_message_without_role(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))

    with pytest.raises(ValueError, match="role"):
        format_prompt(tokenizer, [{"content": "Hi"}])


def test_encode_prompt_does_not_double_a_bos_already_in_the_text(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    text = tokenizer.bos_token + "User: Hi\nAssistant:"

    ids = encode_prompt(tokenizer, text)

    assert ids.count(tokenizer.bos_token_id) == 1


def test_make_tiny_model_is_deterministic_under_its_seed(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a", steps=3, seed=7)
    b = make_tiny_model(tmp_path / "b", steps=3, seed=7)
    c = make_tiny_model(tmp_path / "c", steps=3, seed=8)

    wa, wb, wc = (load_file(d / "model.safetensors") for d in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_tiny_model_reports_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    make_tiny_model(
        tmp_path / "m", steps=2, progress=lambda step, total: seen.append((step, total))
    )

    assert seen == [(1, 2), (2, 2)]


def test_corpus_is_shipped_and_in_the_dialogue_style() -> None:
    documents = corpus_documents()

    assert 30_000 <= sum(len(d) for d in documents) <= 80_000
    assert sum(d.startswith("User: ") and "\nAssistant: " in d for d in documents) > 100


def test_synthetic_rankings_put_more_markers_first_without_noise() -> None:
    for _prompt, responses, groups in synthetic_rankings(20, k=5, noise=0.0):
        counts = [r.count("wonderful") for r in responses]
        for i in range(5):
            for j in range(5):
                if groups[i] < groups[j]:
                    assert counts[i] > counts[j]
                if groups[i] == groups[j]:
                    assert counts[i] == counts[j]
