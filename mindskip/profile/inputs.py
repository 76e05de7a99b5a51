"""The token ids a regime runs on: random ids, or real prompts batched as evaluation sees them.

- Random (``ProfileConfig.inputs == "random"``): ids drawn from ``seed``, no padding; one
  batch per regime, the same for every repeat (the calibration batch is drawn first, then
  one batch per grid entry, in grid order).
- Real prompts (a file of token-id lists, or ``prompts=`` to ``profile``): each prompt is
  **left-cut** to its last ``prompt_len`` tokens (the end holds the question and the answer
  cue; lm-eval truncates contexts the same way). Prompts are ordered by that length (ties
  in a seeded random order) and cut into consecutive groups of ``batch``, so a batch pads
  little; a batch is left-padded with an attention mask and position ids as ``generate``
  builds them. Repeat ``r`` of a regime takes one group, evenly spaced over the length
  order (cycling when there are more repeats than groups); every variant runs the same
  group in that repeat, so per-repeat ratios stay paired.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..files import ResultFileError, read_json, read_jsonl

TokenLists = list[list[int]]


@dataclass(frozen=True)
class Batch:
    """Left-padded token ids ``(B, W)`` and their mask (1 for real tokens); ``padded``
    is known when the batch is made (no device sync when a timed call asks)."""

    ids: torch.Tensor
    mask: torch.Tensor
    padded: bool

    @property
    def real_tokens(self) -> int:
        return int(self.mask.sum())

    def position_ids(self) -> torch.Tensor | None:
        """``generate``'s positions for left padding; None when nothing is padded."""
        if not self.padded:
            return None
        return (self.mask.long().cumsum(-1) - 1).masked_fill(self.mask == 0, 1)

    def forward_kwargs(self) -> dict[str, torch.Tensor]:
        """``attention_mask`` (and ``position_ids`` when padded) for a prefill forward."""
        kw = {"attention_mask": self.mask}
        pos = self.position_ids()
        if pos is not None:
            kw["position_ids"] = pos
        return kw


@dataclass(frozen=True)
class RegimeInputs:
    """One batch per timed repeat; warm-up runs the first, the memory pass the widest."""

    repeats: tuple[Batch, ...]
    label: str = "random"  # where the ids come from (the ``inputs`` column)

    @property
    def warm(self) -> Batch:
        return self.repeats[0]

    @property
    def memory(self) -> Batch:
        return max(self.repeats, key=lambda b: (b.ids.shape[1], b.real_tokens))

    @property
    def distinct(self) -> list[Batch]:
        seen: dict[int, Batch] = {}
        for b in self.repeats:
            seen.setdefault(id(b), b)
        return list(seen.values())

    @property
    def prompt_tokens(self) -> float:
        """Mean real prompt tokens per sequence over the repeats."""
        return sum(b.real_tokens / b.ids.shape[0] for b in self.repeats) / len(self.repeats)


def _as_ids(item: Any, where: str) -> list[int]:
    if isinstance(item, dict):
        item = item.get("input_ids")
    if isinstance(item, torch.Tensor):
        item = item.flatten().tolist()
    if not isinstance(item, list | tuple) or not item:
        raise ResultFileError(f"{where}: expected a non-empty list of token ids")
    if not all(isinstance(t, int) and t >= 0 for t in item):
        raise ResultFileError(f"{where}: token ids must be non-negative integers")
    return [int(t) for t in item]


def load_prompts(path: str | Path) -> TokenLists:
    """Token-id sequences from ``.jsonl`` or ``.jsonl.gz`` (one list, or
    ``{"input_ids": [...]}``, a line; the evaluation writes ``<suite>.prompts.jsonl.gz``),
    ``.json`` (a list of those) or ``.pt`` (a list of lists or 1-D tensors)."""
    path = Path(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        items: Any = read_jsonl(path, "prompt file")
    elif path.suffix == ".json":
        items = read_json(path, "prompt file")
    elif path.suffix == ".pt":
        if not path.is_file():
            raise ResultFileError(f"prompt file {path} does not exist")
        items = torch.load(path, weights_only=True)
        if isinstance(items, dict):
            items = items.get("input_ids")
    else:
        raise ResultFileError(f"prompt file {path}: use .jsonl(.gz), .json or .pt")
    if not isinstance(items, list | tuple) or not items:
        raise ResultFileError(f"prompt file {path} holds no token-id sequences")
    return [_as_ids(x, f"{path} item {i}") for i, x in enumerate(items)]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Batch:
    """One batch, left-padded to its longest sequence."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return Batch(ids.to(device), mask.to(device), padded=bool((mask == 0).any()))


def length_groups(seqs: TokenLists, batch: int, prompt_len: int, seed: int) -> list[TokenLists]:
    """Left-cut sequences in groups of ``batch`` of similar length (see the module doc).
    A last incomplete group is dropped; fewer sequences than ``batch`` are cycled."""
    cut = [s[-prompt_len:] for s in seqs]
    order = list(range(len(cut)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: len(cut[i]))  # stable: ties stay in the seeded order
    if len(order) < batch:
        return [[cut[order[i % len(order)]] for i in range(batch)]]
    return [[cut[i] for i in order[j : j + batch]] for j in range(0, len(order) - batch + 1, batch)]


def spread(n_groups: int, repeats: int) -> list[int]:
    """Group index per repeat: evenly spaced over the groups, cycling if repeats > groups."""
    if repeats >= n_groups:
        return [r % n_groups for r in range(repeats)]
    return [(2 * r + 1) * n_groups // (2 * repeats) for r in range(repeats)]


class RandomInputs:
    """Random token ids in ``[3, vocab)``, from one seeded generator."""

    label = "random"

    def __init__(self, vocab: int, seed: int, device: torch.device) -> None:
        self.vocab = vocab
        self.device = device
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed

    def _draw(self, batch: int, length: int) -> Batch:
        ids = torch.randint(3, self.vocab, (batch, length), generator=self.gen).to(self.device)
        return Batch(ids, torch.ones_like(ids), padded=False)

    def calibration(self, batch: int, prompt_len: int, repeats: int) -> list[Batch]:
        return [self._draw(batch, prompt_len)]

    def regime(self, batch: int, prompt_len: int, repeats: int) -> RegimeInputs:
        return RegimeInputs((self._draw(batch, prompt_len),) * repeats)

    def describe(self) -> str:
        return f"random token ids, seed {self.seed}, no padding"

    def digest(self) -> str | None:
        return None


class PromptInputs:
    """Real prompts (token-id lists), batched by length; see the module docstring."""

    def __init__(
        self, seqs: TokenLists, pad_id: int, seed: int, device: torch.device, label: str
    ) -> None:
        if not seqs:
            raise ValueError("prompts: need at least one token-id sequence")
        self.seqs = [list(map(int, s)) for s in seqs]
        self.pad_id, self.seed, self.device, self.label = pad_id, seed, device, label

    def regime(self, batch: int, prompt_len: int, repeats: int) -> RegimeInputs:
        groups = length_groups(self.seqs, batch, prompt_len, self.seed)
        made: dict[int, Batch] = {}
        for g in spread(len(groups), repeats):
            if g not in made:
                made[g] = left_pad(groups[g], self.pad_id, self.device)
        picks = spread(len(groups), repeats)
        return RegimeInputs(tuple(made[g] for g in picks), self.label)

    def calibration(self, batch: int, prompt_len: int, repeats: int) -> list[Batch]:
        """The distinct batches of the regime ``(batch, prompt_len)``."""
        return self.regime(batch, prompt_len, repeats).distinct

    def digest(self) -> str:
        """sha256 of the token-id lists (as compact JSON), whatever file they came from."""
        return hashlib.sha256(json.dumps(self.seqs, separators=(",", ":")).encode()).hexdigest()

    def describe(self) -> str:
        return (
            f"{len(self.seqs)} real prompts ({self.label}), left-cut to the last prompt_len "
            f"tokens, grouped by length (ties: seed {self.seed}), left-padded with an "
            "attention mask; one group per repeat, evenly spaced over the length order"
        )


Inputs = RandomInputs | PromptInputs
