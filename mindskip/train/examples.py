"""Training examples: format and encode Alpaca records, collate, and batch them.

- :func:`format_record` / :func:`encode_record`: the chat template when the tokenizer has
  one (else a plain ``### Instruction`` template), labels on the response tokens only.
- :func:`collate`: right padding through the tokenizer's ``pad``; labels padded with
  ``-100`` (right padding keeps every real token at the position it has alone, so a
  sequence scores the same in any batch).
- :func:`step_loader`: a ``DataLoader`` whose items are optimizer steps: a seeded shuffle
  (``torch.randperm`` with the run's generator, the order of the first release), each
  global batch sorted by length and cut into micro-batches (less padding; the order inside
  a sum does not change a gradient).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from ..data.generate import plain_prompt, user_message

IGNORE_INDEX = -100

Example = dict[str, Any]


def authors_format(tokenizer: Any, record: dict[str, Any]) -> tuple[str, str]:
    """The authors' text format (both releases): ``<|user|>``, the user message, then
    ``<|assistant|>`` on lines of their own; the response is the output, EOS, a newline.
    No chat template: the markers are plain text to the tokenizer."""
    prompt = "<|user|>\n" + user_message(record).strip() + "\n<|assistant|>\n"
    return prompt, record["output"].strip() + (tokenizer.eos_token or "") + "\n"


def format_record(
    tokenizer: Any, record: dict[str, Any], template: str = "chat"
) -> tuple[str, str]:
    """``(prompt, response)`` texts of one record; the loss is on ``response`` only.

    With a chat template: user = instruction + "\\n\\n" + input (input only when non-empty),
    assistant = output; the response is the template's text after the generation prompt
    (the output and the template's end-of-turn). Without one: a plain
    ``### Instruction / ### Input / ### Response`` prompt and output + EOS.
    ``template="authors"``: :func:`authors_format`.
    """
    if template == "authors":
        return authors_format(tokenizer, record)
    output = record["output"]
    if getattr(tokenizer, "chat_template", None):
        turns = [{"role": "user", "content": user_message(record)}]
        prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*turns, {"role": "assistant", "content": output}], tokenize=False
        )
        if not full.startswith(prompt):  # templates that rewrite the generation prompt
            cut = full.rfind(output)
            if cut < 0:
                raise ValueError("the chat template does not reproduce the output text")
            prompt = full[:cut]
        return prompt, full[len(prompt) :]
    return plain_prompt(record), output + (tokenizer.eos_token or "")


def encode_record(
    tokenizer: Any, record: dict[str, Any], max_length: int, template: str = "chat"
) -> Example | None:
    """Token ids and labels (``-100`` outside the response), truncated to ``max_length``.

    Prompt and response are tokenized separately, so the label boundary is exact. None when
    truncation leaves no response token.
    """
    prompt, response = format_record(tokenizer, record, template)
    chat = template == "chat" and bool(getattr(tokenizer, "chat_template", None))
    p = tokenizer(prompt, add_special_tokens=not chat)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = (p + r)[:max_length]
    labels = ([IGNORE_INDEX] * len(p) + r)[:max_length]
    if all(t == IGNORE_INDEX for t in labels[1:]):
        return None
    return {"input_ids": ids, "labels": labels, "truncated": len(p) + len(r) > max_length}


def encode_records(
    tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, template: str = "chat"
) -> list[Example]:
    """:func:`encode_record` of each record, dropping those with no response token left."""
    encoded = (encode_record(tokenizer, r, max_length, template) for r in records)
    return [e for e in encoded if e]


def records_sha256(records: Sequence[dict[str, Any]]) -> str:
    """sha256 of the records as canonical JSON lines of instruction/input/output."""
    h = hashlib.sha256()
    for r in records:
        row = {k: r.get(k) or "" for k in ("instruction", "input", "output")}
        h.update((json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return h.hexdigest()


def response_tokens(example: Example) -> int:
    """Tokens that carry the LM loss (labels after the first position)."""
    return sum(t != IGNORE_INDEX for t in example["labels"][1:])


def collate(
    examples: Sequence[Example], tokenizer: Any, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors on ``device``."""
    batch = tokenizer.pad(
        [{"input_ids": e["input_ids"]} for e in examples],
        padding=True,
        padding_side="right",
        return_attention_mask=True,
        return_tensors="pt",
    )
    labels = pad_sequence(
        [torch.tensor(e["labels"]) for e in examples],
        batch_first=True,
        padding_value=IGNORE_INDEX,
    )
    out = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": labels,
    }
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def by_length(examples: Sequence[Example]) -> list[Example]:
    """Sorted by length (stable), so that a batch pads as little as possible."""
    return sorted(examples, key=lambda e: len(e["input_ids"]))


@dataclass
class StepBatch:
    """One optimizer step: its micro-batches (collated) and its loss normalisers."""

    micro: list[dict[str, torch.Tensor]]
    sequences: int
    response_tokens: int
    real_tokens: int


class _StepCollator:
    def __init__(self, tokenizer: Any, micro_batch: int, device: torch.device) -> None:
        self.tokenizer, self.micro_batch, self.device = tokenizer, micro_batch, device

    def __call__(self, examples: list[Example]) -> StepBatch:
        ordered = by_length(examples)
        micro = [
            collate(ordered[i : i + self.micro_batch], self.tokenizer, self.device)
            for i in range(0, len(ordered), self.micro_batch)
        ]
        return StepBatch(
            micro=micro,
            sequences=len(ordered),
            response_tokens=sum(response_tokens(e) for e in ordered),
            real_tokens=sum(len(e["input_ids"]) for e in ordered),
        )


def step_loader(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    global_batch: int,
    micro_batch: int,
    device: torch.device,
    generator: torch.Generator | None,
) -> DataLoader:
    """Optimizer steps over ``examples``: shuffled with ``generator`` (None: in order), one
    :class:`StepBatch` of ``global_batch`` sequences (the last may be smaller) per item."""
    return DataLoader(
        list(examples),
        batch_size=global_batch,
        shuffle=generator is not None,
        generator=generator,
        collate_fn=_StepCollator(tokenizer, micro_batch, device),
    )


def eval_loader(
    examples: Sequence[Example], tokenizer: Any, batch_size: int, device: torch.device
) -> DataLoader:
    """Length-sorted batches for validation (no shuffle)."""
    return DataLoader(
        by_length(examples),
        batch_size=batch_size,
        collate_fn=lambda b: collate(b, tokenizer, device),
    )
