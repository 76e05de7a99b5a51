"""Shared-prefix scoring: each context runs once, its choices are scored against it.

lm-eval scores a multiple-choice item as one sequence per choice (context + choice), so a
sequence-routed model pools the answer text into its decision and the context is recomputed
for every choice. Here, as a deployment runs, the routing decision is made on the context
alone and covers every choice of the item (a layer the context skips stays skipped for all
its choices), and the context is computed once per item.

The token split is lm-eval's: requests arrive as ``(key, context_tokens,
continuation_tokens)`` after ``_encode_pair`` and the empty-context (BOS) rule, and the
input is truncated from the left exactly as ``HFLM._loglikelihood_tokens`` does
(``(context + continuation)[-(max_length + 1):][:-1]``). When truncation cuts a context,
continuations of different lengths see different contexts; each distinct context is then
its own prefix. For a dense model the log-likelihoods equal the per-request ones up to
floating-point noise.

Two exact ways to run it. Packed (:mod:`.packed`, the default where the attention takes
a custom 4-D mask): one forward per batch of items, each row a context followed by all its
choices, a block-diagonal mask letting each choice see the context and itself only, and
MindSkip pooling over the context tokens alone. Cached (elsewhere, or ``pack=False``):
the contexts are prefilled, left-padded, with a KV cache (decisions stored there), a
one-token continuation is read off the prefill logits, and the cache is expanded to one
row per longer continuation (:func:`mindskip.surgery.select_cache_rows`), which then runs
teacher-forced on it. Real-token masks and positions make the decisions independent of the
batch either way.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .packed import packable, score_packed
from .signatures import decision_signatures

Request = tuple[Any, Sequence[int], Sequence[int]]
ROUTE_ON = ("prompt", "request")  # what a sequence-routed model decides on when scoring


@dataclass
class PrefixGroup:
    """One shared context and the requests (position, continuation tokens) scored on it."""

    context: tuple[int, ...]
    members: list[tuple[int, list[int]]] = field(default_factory=list)


def truncated_pair(
    context: Sequence[int], continuation: Sequence[int], max_length: int
) -> tuple[tuple[int, ...], list[int]]:
    """The (context, continuation) the model sees, truncated from the left as lm-eval does."""
    if not context or not continuation:
        raise ValueError("a log-likelihood request needs a non-empty context and continuation")
    if len(continuation) > max_length:
        raise ValueError(
            f"continuation of {len(continuation)} tokens exceeds max_length {max_length}"
        )
    window = (list(context) + list(continuation))[-(max_length + 1) :]
    return tuple(window[: len(window) - len(continuation)]), list(continuation)


def group_by_context(requests: Sequence[Request], max_length: int) -> list[PrefixGroup]:
    """Requests grouped by their (truncated) context, the longest item first: context
    plus all its continuations, the length of its packed row (lm-eval's ``Collator`` also
    sorts by length), so that a batch holds items of similar lengths."""
    groups: dict[tuple[int, ...], PrefixGroup] = {}
    for pos, (_, context, continuation) in enumerate(requests):
        prefix, cont = truncated_pair(context, continuation, max_length)
        groups.setdefault(prefix, PrefixGroup(prefix)).members.append((pos, cont))

    def length(g: PrefixGroup) -> int:
        return len(g.context) + sum(len(c) - 1 for _, c in g.members)

    return sorted(groups.values(), key=lambda g: (-length(g), g.context))


def request_input(context: Sequence[int], continuation: Sequence[int], max_length: int):
    """The token tuple lm-eval's per-request path feeds the model for this request."""
    return tuple((list(context) + list(continuation))[-(max_length + 1) :][:-1])


class SharedPrefixScorer:
    """Scores lm-eval's tokenised log-likelihood requests with one prefill per context.

    ``batch_size`` bounds the items (contexts) per forward. ``pack``: the packed path
    (None: wherever :func:`.packed.packable` allows it). On the cached path,
    ``cont_batch_size`` (default ``4 * batch_size``) bounds the continuation rows per
    forward; such a row holds its prefix's KV cache and logits for its own few tokens only,
    several times less memory than a per-request row.
    ``signatures`` maps a request position to its prefix's routing decisions
    (sequence-routed MindSkip models only), filled by :meth:`score`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_size: int,
        device: torch.device | str,
        cont_batch_size: int | None = None,
        pad_token_id: int = 0,
        softmax_dtype: torch.dtype | None = None,
        autocast_dtype: torch.dtype | None = None,
        pack: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.cont_batch_size = int(cont_batch_size or 4 * batch_size)
        self.device = torch.device(device)
        self.pad_token_id = int(pad_token_id)
        self.softmax_dtype = softmax_dtype
        self.autocast_dtype = autocast_dtype
        self.pack = pack
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_last = "logits_to_keep" in params
        self.signatures: dict[int, str] = {}
        self.prefills = 0
        self.forwards = 0

    # ------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def _no_grad(self) -> Iterator[None]:
        dtype = self.autocast_dtype
        with (
            torch.no_grad(),
            torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype is not None),
        ):
            yield

    def _forward(self, ids, mask, positions, cache, last_only: bool) -> torch.Tensor:
        kwargs = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            self._cache_kw: cache,
            "use_cache": True,
        }
        if last_only and self._keep_last:
            kwargs["logits_to_keep"] = 1
        self.forwards += 1
        with self._no_grad():
            logits = self.model(**kwargs).logits
        return logits[:, -1:] if last_only else logits

    def forward_rows(self, ids, mask, positions, keep: int) -> torch.Tensor:
        """Logits (B, keep, V) of the last ``keep`` positions; no cache."""
        kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        if self._keep_last:
            kwargs["logits_to_keep"] = keep
        self.forwards += 1
        with self._no_grad():
            logits = self.model(**kwargs, use_cache=False).logits
        return logits[:, -keep:]

    def _prefill(self, contexts: list[tuple[int, ...]]):
        """Left-padded prefill: (cache, log-probs of the next token (B, V), padding mask)."""
        from transformers import DynamicCache

        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for r, c in enumerate(contexts):
            ids[r, width - len(c) :] = torch.tensor(c, dtype=torch.long)
            mask[r, width - len(c) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(ids, mask, positions, cache, last_only=True)[:, -1]
        self.prefills += 1
        return cache, F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype), mask

    # ------------------------------------------------------------------ scoring
    def score(
        self,
        requests: Sequence[Request],
        max_length: int,
        on_result: Callable[[int, tuple[float, bool]], None] | None = None,
    ) -> list[tuple[float, bool]]:
        """``(log-likelihood, is_greedy)`` per request, in request order."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        self.signatures = {}
        groups = group_by_context(requests, max_length)
        for start in range(0, len(groups), self.batch_size):
            chunk = groups[start : start + self.batch_size]
            for pos, answer in self._score_chunk(chunk):
                results[pos] = answer
                if on_result is not None:
                    on_result(pos, answer)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # pragma: no cover - a bug guard
            raise RuntimeError(f"shared-prefix scoring left requests {missing[:5]} unscored")
        return results  # type: ignore[return-value]

    def _score_chunk(self, chunk: list[PrefixGroup]) -> Iterator[tuple[int, tuple[float, bool]]]:
        row = max(len(g.context) for g in chunk)
        row += max(sum(len(c) - 1 for _, c in g.members) for g in chunk)
        impl = getattr(self.model.config, "_attn_implementation", None)
        if self.pack and impl not in ("sdpa", "eager"):
            raise ValueError(f"packed scoring needs sdpa or eager attention, not {impl!r}")
        if packable(self.model, row) if self.pack is None else self.pack:
            yield from score_packed(self, chunk)
            return
        cache, last, mask = self._prefill([g.context for g in chunk])
        sigs = decision_signatures(self.model)
        best = last.argmax(-1).tolist()  # greedy next token after each prefix
        singles: list[tuple[int, int, list[int]]] = []  # (prefix row, request, tokens)
        rows: list[tuple[int, int, list[int]]] = []
        for b, group in enumerate(chunk):
            for pos, cont in group.members:
                if sigs is not None:
                    self.signatures[pos] = sigs[b]
                (singles if len(cont) == 1 else rows).append((b, pos, cont))
        if singles:  # one-token continuations: read off the prefill logits
            b_idx = torch.tensor([b for b, _, _ in singles], device=self.device)
            tokens = torch.tensor([c[0] for _, _, c in singles], device=self.device)
            for (b, pos, cont), lp in zip(singles, last[b_idx, tokens].tolist(), strict=True):
                yield pos, (float(lp), best[b] == cont[0])
        if not rows:
            return
        rows.sort(key=lambda r: -len(r[2]))  # similar lengths share a forward
        step = self.cont_batch_size
        for start in range(0, len(rows), step):
            yield from self._score_rows(rows[start : start + step], cache, last, mask, best)

    def _score_rows(self, rows, cache, last, prefix_mask, best: list[int]):
        """Teacher-forced continuations (all but their last token) on the expanded cache."""
        from mindskip.surgery import select_cache_rows

        index = torch.tensor([b for b, _, _ in rows], dtype=torch.long, device=self.device)
        width = max(len(cont) - 1 for _, _, cont in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        targets = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, _, cont) in enumerate(rows):
            ids[r, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
            targets[r, : len(cont) - 1] = torch.tensor(cont[1:], dtype=torch.long)
        lengths = torch.tensor([len(cont) - 1 for _, _, cont in rows])
        real = (torch.arange(width)[None, :] < lengths[:, None]).to(self.device)
        ids, targets = ids.to(self.device), targets.to(self.device)
        pmask = prefix_mask.index_select(0, index)
        mask = torch.cat([pmask, real.long()], dim=1)
        positions = pmask.sum(-1, keepdim=True) + torch.arange(width, device=self.device)
        rows_cache = select_cache_rows(self.model, cache, index)
        logits = self._forward(ids, mask, positions, rows_cache, last_only=False)
        logp = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        first = torch.tensor([cont[0] for _, _, cont in rows], device=self.device)
        steps = logp.gather(-1, targets[..., None]).squeeze(-1).float().masked_fill(~real, 0.0)
        totals = (last[index, first].float() + steps.sum(-1)).tolist()
        greedy = ((logp.argmax(-1) == targets) | ~real).all(-1).tolist()
        for (b, pos, cont), total, g in zip(rows, totals, greedy, strict=True):
            yield pos, (float(total), bool(g) and best[b] == cont[0])
