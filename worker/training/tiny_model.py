"""A tiny GPT-2 trained in seconds on a shipped corpus, saved exactly like a hub model.

Tests, benchmarks and demos need a causal LM that loads through the same
`from_pretrained` path as a real checkpoint, without downloading anything. This module
trains a byte-level BPE tokenizer and a 2-layer GPT-2 on `data/tiny_corpus.txt`
(original "User: ...\\nAssistant: ..." dialogues and short paragraphs) and writes both
with `save_pretrained`.

It also builds synthetic rankings with a known rule, so reward-model code can be checked
against a right answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from worker.training.models import move_to

CORPUS_PATH = Path(__file__).parent / "data" / "tiny_corpus.txt"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# The dialogue format the corpus uses; `models.format_prompt` falls back to the same one.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '\n' }}"
    "{% else %}{{ message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def corpus_documents(path: Path = CORPUS_PATH) -> list[str]:
    """Split the corpus into documents (blank-line separated) so each can end with EOS."""
    text = path.read_text(encoding="utf-8")
    return [doc.strip() for doc in text.split("\n\n") if doc.strip()]


def train_tokenizer(documents: list[str], *, vocab_size: int = 1500) -> PreTrainedTokenizerFast:
    """Byte-level BPE (as GPT-2) with EOS doubling as BOS and a pad token distinct from EOS."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(documents, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(
    out_dir: Path,
    *,
    steps: int = 400,
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 96,
    n_head: int = 4,
    vocab_size: int = 1500,
    block_size: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    device: str = "cpu",
    threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the tokenizer and a small GPT-2 on the corpus, save both to `out_dir`.

    Deterministic under `seed` on a given machine. The default 400 steps give word-like
    samples; tests use 20-100. Nearly all the time is the steps (the tokenizer and the save
    take under a second): about 0.14 s of one core each, a minute of CPU in all, which a busy
    machine stretches (7 minutes measured on 2 cores shared with other jobs). `threads`: torch
    threads for the steps on the CPU (None: torch's setting); one, as the matrices are too
    small to split and on a shared machine a second thread's spin-waits made the build cost
    4x the CPU time (measured). `device` ("cuda") makes larger shapes affordable, e.g. for
    benchmarks on a GPU.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    documents = corpus_documents()
    tokenizer = train_tokenizer(documents, vocab_size=vocab_size)

    # One token stream: doc <eos> doc <eos> ...
    eos_id = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in documents:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        stream.append(eos_id)
    data = torch.tensor(stream, dtype=torch.long)  # (N,)

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=tokenizer.model_max_length,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]), _torch_threads(threads if device == "cpu" else None):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
        move_to(model, device)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(steps, 1))
        )
        model.train()
        for step in range(steps):
            starts = torch.randint(
                0, len(data) - block_size - 1, (batch_size,), generator=generator
            )
            window = torch.stack([data[s : s + block_size + 1] for s in starts.tolist()])
            window = window.to(device)  # (B, T + 1)
            inputs, targets = window[:, :-1], window[:, 1:]  # (B, T), (B, T)
            logits = model(input_ids=inputs).logits  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress(step + 1, steps)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.bos_token_id = eos_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# Synthetic rankings ----------------------------------------------------------------------

MARKER = "wonderful"
_FILLER = (
    "the garden river morning bread friend quiet light small green walk book city tea warm "
    "rain table window music road school simple story water stone field slow bright"
).split()
_TOPICS = (
    "a walk in the park, a rainy day, breakfast, an old friend, the sea, a new book, "
    "a train ride, the first snow, a small garden, a busy market, a quiet library, music"
).split(", ")


def synthetic_rankings(
    n_prompts: int, *, k: int = 4, seed: int = 0, noise: float = 0.1, max_markers: int = 5
) -> list[tuple[str, list[str], list[int]]]:
    """Rankings whose true rule is "more copies of MARKER is better", with label noise.

    Each prompt gets `k` responses of 12-16 words, a random number of which
    (0..max_markers) are MARKER;
    responses with equal counts share a tie group (0 = best). With probability `noise`
    two adjacent groups swap, as a careless annotator might. Returns (prompt, responses,
    groups) tuples, kept free of reward-model types so any trainer can use them.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    rng = random.Random(seed)
    rankings = []
    for i in range(n_prompts):
        prompt = f"Write a few words about {rng.choice(_TOPICS)} (note {i})."
        counts = [rng.randint(0, max_markers) for _ in range(k)]
        responses = []
        for count in counts:
            # Markers replace filler words, so length says nothing about the rank.
            words = rng.choices(_FILLER, k=rng.randint(12, 16))
            for position in rng.sample(range(len(words)), count):
                words[position] = MARKER
            responses.append(" ".join(words) + ".")
        distinct = sorted(set(counts), reverse=True)
        groups = [distinct.index(c) for c in counts]
        if len(distinct) > 1 and rng.random() < noise:
            g = rng.randrange(len(distinct) - 1)
            groups = [g + 1 if x == g else g if x == g + 1 else x for x in groups]
        rankings.append((prompt, responses, groups))
    return rankings
