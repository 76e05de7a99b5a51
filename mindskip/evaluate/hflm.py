"""lm-eval glue: an HFLM that passes the padding mask, and a per-document few-shot sampler.

**Padding.** ``HFLM._loglikelihood_tokens`` right-pads a batch with
``pad_and_concat(..., padding_side="right")`` and calls ``self.model(inps)`` with no
attention mask. A stock causal LM does not care (padding comes after every real token),
but MindSkip's sequence routing pools the layer input over the tokens that the 2-D
attention mask marks as real; with no mask it pools over padding too, and a sequence's
decision then depends on which other sequences share its batch. :class:`MaskedHFLM`
records the real lengths that ``pad_and_concat`` sees and builds the mask in
``_model_call``. Generation already passes a (left-padded) mask.

**Routing on the prompt.** :class:`MindSkipLM` (registered with lm-eval as ``mindskip``)
adds ``route_on``: ``"prompt"`` scores multiple-choice requests by prefilling each context
once and teacher-forcing every choice on its KV cache (:mod:`.shared_prefix`), so a
sequence-routed model decides on the prompt alone, as in generation; ``"request"`` keeps
lm-eval's one sequence per (context, continuation), the authors' setting.

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
from lm_eval.api.registry import register_model
from lm_eval.models import huggingface as _hf
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from .shared_prefix import ROUTE_ON, SharedPrefixScorer, request_input
from .signatures import decision_signatures

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


@register_model("mindskip")
class MindSkipLM(MaskedHFLM):
    """lm-eval's ``HFLM`` for MindSkip models, with ``route_on`` (see the module docstring).

    ``pretrained`` is a model object, a local folder, a hub id, or ``"embedded"`` (the
    converted SmolLM2 listed in ``<assets>/manifest.json``); ``routers`` a folder written by
    :func:`mindskip.save_routers`. ``dtype`` and ``device`` ``"auto"`` mean float32 on the
    CPU, bfloat16 on CUDA (as :func:`mindskip.modeling.load_model`). Every other keyword is
    ``HFLM``'s. Under ``route_on="prompt"``, ``pack_choices`` packs the choices of an item
    into one row after its context (default: where the attention takes a custom 4-D mask)
    and ``cont_batch_size`` sets the continuation rows per forward when they are not
    packed (default ``4 * batch_size``). ``decision_log`` maps each scored
    ``(context, continuation)`` to its sequence-routing decisions (``"1"``/``"0"`` per
    routed layer), for per-item logs.
    """

    def __init__(
        self,
        pretrained: Any = "embedded",
        routers: str | None = None,
        route_on: str = "prompt",
        dtype: Any = "auto",
        device: str | None = "auto",
        assets: str = "results/assets",
        cont_batch_size: int | None = None,
        pack_choices: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if route_on not in ROUTE_ON:
            raise ValueError(f"route_on must be one of {ROUTE_ON}, got {route_on!r}")
        if isinstance(pretrained, str):
            from mindskip.modeling import pick_device, resolve_dtype, resolve_model_source

            device = pick_device(device or "auto")
            pretrained = resolve_model_source(pretrained, assets)
            dtype = resolve_dtype(dtype, device)
        elif device == "auto":
            device = None  # HFLM takes the device of the model object
        super().__init__(pretrained=pretrained, dtype=dtype, device=device, **kwargs)
        if routers:
            from mindskip.checkpoint import load_routers

            load_routers(self._model, routers)
        self.route_on = route_on
        self.cont_batch_size = None if cont_batch_size is None else int(cont_batch_size)
        self.pack_choices = pack_choices
        self.routers = None if routers is None else str(routers)
        self.decision_log: dict[tuple[str, str], str | None] = {}
        self._scoring = False  # inside loglikelihood (not loglikelihood_rolling)
        self._contexts: dict[tuple[int, ...], None] = {}  # an ordered set
        self._row_decisions: dict[tuple[int, ...], str] = {}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._scoring = True
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._scoring = False

    def scored_contexts(self) -> list[list[int]]:
        """The token ids of every context scored so far, once each, in scoring order."""
        return [list(c) for c in self._contexts]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self._scoring:
            self._contexts.update((tuple(ctx), None) for _, ctx, _ in requests)
        if not self._scoring or self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        if self.route_on == "prompt":
            return self._shared_prefix_tokens(requests, disable_tqdm, override_bs)
        self._row_decisions = {}
        try:
            out = super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
            for key, ctx, cont in requests:
                if key is not None:
                    row = request_input(ctx, cont, self.max_length)
                    self.decision_log[tuple(key)] = self._row_decisions.get(row)
        finally:
            self._row_decisions = {}
        return out

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        lengths = self._pending_lengths[0] if self._pending_lengths else None
        logits = super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        sigs = decision_signatures(self._model) if self._scoring and lengths else None
        if sigs is not None and len(sigs) == inps.shape[0]:
            for r, n in enumerate(lengths):
                self._row_decisions[tuple(inps[r, :n].tolist())] = sigs[r]
        return logits

    def routes_per_item(self, samples: dict[str, list[dict[str, Any]]]) -> dict[tuple, int]:
        """``(task, doc_id, filter) -> number of distinct sequence-routing decisions among
        the item's requests``, from lm-eval's logged samples and :attr:`decision_log`
        (empty for dense or token-routed models)."""
        out = {}
        for name, rows in samples.items():
            for s in rows:
                sigs = [self.decision_log.get(tuple(a)) for a in s.get("arguments", [])]
                if sigs and all(isinstance(x, str) for x in sigs):
                    out[(name, int(s["doc_id"]), s.get("filter", "none"))] = len(set(sigs))
        return out

    def _shared_prefix_tokens(self, requests, disable_tqdm: bool, override_bs) -> list:
        bs = override_bs or self.batch_size
        if bs == "auto":
            bs = self._detect_batch_size()
        scorer = SharedPrefixScorer(
            self._model,
            batch_size=int(bs),
            cont_batch_size=self.cont_batch_size,
            device=self.device,
            pad_token_id=self.tokenizer.pad_token_id or 0,
            softmax_dtype=self.softmax_dtype,
            autocast_dtype=self.mixed_precision_dtype,
            pack=self.pack_choices,
        )
        pbar = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests (shared prefix)",
        )

        def done(pos: int, answer: tuple[float, bool]) -> None:
            key = requests[pos][0]
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
            pbar.update(1)

        try:
            results = scorer.score(requests, self.max_length, on_result=done)
        finally:
            pbar.close()
        self.forward_calls += scorer.forwards
        for pos, (key, _, _) in enumerate(requests):
            if key is not None:
                self.decision_log[tuple(key)] = scorer.signatures.get(pos)
        return results


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
