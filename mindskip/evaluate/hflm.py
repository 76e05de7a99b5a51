"""lm-eval glue: an HFLM that passes the padding mask, and a per-document few-shot sampler.

**Padding.** ``HFLM._loglikelihood_tokens`` right-pads a batch with
``pad_and_concat(..., padding_side="right")`` and calls ``self.model(inps)`` with no
attention mask. A stock causal LM does not care (padding comes after every real token),
but MindSkip's sequence routing pools the layer input over the tokens that the 2-D
attention mask marks as real; with no mask it pools over padding too, and a sequence's
decision then depends on which other sequences share its batch. :class:`MaskedHFLM`
records the real lengths that ``pad_and_concat`` sees and builds the mask in
``_model_call``. Generation already passes a (left-padded) mask.

**Few-shot.** lm-eval's default sampler draws every item's examples from one
``random.Random`` per task, so an item's examples depend on the items drawn before it,
hence on how documents are split over processes. :class:`DocSeededSampler` seeds a fresh
generator from (fewshot seed, the document's content) for each item.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lm_eval.api import samplers
from lm_eval.models import huggingface as _hf
from lm_eval.models.huggingface import HFLM

_PAD_FN = "pad_and_concat"
if not hasattr(_hf, _PAD_FN):  # pragma: no cover - guards an lm-eval refactor
    raise ImportError(
        f"lm_eval.models.huggingface has no {_PAD_FN}; MaskedHFLM must be updated for "
        "this lm-eval version"
    )


class MaskedHFLM(HFLM):
    """``HFLM`` whose log-likelihood forward passes carry the real-token attention mask.

    Build it like ``HFLM``: ``MaskedHFLM(pretrained=model, tokenizer=tok, batch_size=8)``.
    ``forward_calls`` and ``masked_calls`` count model calls (a check that masks are used).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_lengths: list[list[int]] = []
        self.forward_calls = 0
        self.masked_calls = 0

    @contextlib.contextmanager
    def _recording_padding(self) -> Iterator[None]:
        original = getattr(_hf, _PAD_FN)
        pending = self._pending_lengths

        def recording(max_length: int, tensors: list[torch.Tensor], padding_side="right"):
            if padding_side == "right":
                pending.append([int(t.shape[-1]) for t in tensors])
            return original(max_length, tensors, padding_side=padding_side)

        setattr(_hf, _PAD_FN, recording)
        try:
            yield
        finally:
            setattr(_hf, _PAD_FN, original)
            pending.clear()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        with self._recording_padding():
            return super()._loglikelihood_tokens(
                requests, disable_tqdm=disable_tqdm, override_bs=override_bs
            )

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        self.forward_calls += 1
        if attn_mask is not None or labels is not None or not self._pending_lengths:
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        lengths = self._pending_lengths.pop(0)
        if len(lengths) != inps.shape[0] or max(lengths) > inps.shape[1]:
            raise RuntimeError(
                f"MaskedHFLM: recorded lengths {lengths} do not fit the batch "
                f"{tuple(inps.shape)}; lm-eval's batching changed, update MaskedHFLM"
            )
        positions = torch.arange(inps.shape[1], device=inps.device)
        mask = (positions[None, :] < torch.tensor(lengths, device=inps.device)[:, None]).long()
        self.masked_calls += 1
        dtype = self.mixed_precision_dtype
        with (
            torch.no_grad(),
            torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype is not None),
        ):
            return self.model(input_ids=inps, attention_mask=mask).logits


# --------------------------------------------------------------------------- few-shot
def _doc_key(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, default=str, ensure_ascii=False).encode()


class DocSeededSampler(samplers.ContextSampler):
    """Few-shot examples drawn with ``Random(sha256(seed, document))`` for each item.

    An item's examples depend only on the seed and the item itself: not on the other
    items, their order, the item limit, the batch size or the number of processes.
    The item itself is never among its own examples.
    """

    def __init__(self, df: Sequence[dict[str, Any]] | None = None, *, rnd=None, **kwargs):
        super().__init__(df, rnd=rnd, **kwargs)
        self.seed = rnd

    def set_rnd(self, rnd: int | None):
        self.seed = rnd
        return super().set_rnd(rnd)

    def sample(self, n: int, eval_doc=None, df=None, **kwargs):
        if n == 0:
            return []
        if df:
            self.df = df
        pool = self.fewshot_docs()
        digest = hashlib.sha256(str(self.seed).encode() + b"\0" + _doc_key(eval_doc)).digest()
        rnd = random.Random(int.from_bytes(digest[:8], "big"))
        drawn = rnd.sample(pool, min(len(pool), n + 1))
        chosen = [d for d in drawn if eval_doc is None or d != eval_doc][:n]
        if len(chosen) < n:
            raise ValueError(f"few-shot pool has {len(pool)} documents, {n} were requested")
        return chosen


def use_doc_seeded_fewshot(task: Any) -> bool:
    """Swap a task's default (shared-generator) sampler for :class:`DocSeededSampler`.

    Samplers with a fixed order (``first_n``) are left alone. Returns whether it swapped.
    """
    old = getattr(task, "sampler", None)
    if old is None or type(old) is not samplers.ContextSampler:
        return False
    new = DocSeededSampler(old.df, rnd=None, fewshot_indices=old.fewshot_indices)
    new._loaded = old._loaded
    task.sampler = new
    return True
