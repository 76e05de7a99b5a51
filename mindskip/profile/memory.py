"""Memory without bias: what one variant's call needs, whatever was measured before it.

A :class:`Meter` spans the memory pass of a regime. Before each variant it frees what
earlier calls left (their outputs and caches are dropped, ``gc`` runs) and marks the bytes
still alive (the *baseline*); after the call, *working* bytes are the peak since that mark
minus the baseline, and ``peak_mem_bytes`` is the weights plus the working bytes. So the
number does not depend on the order variants are measured in, and no variant pays for
another's cache.

- CUDA: ``torch.cuda.memory_allocated`` / ``max_memory_allocated`` (peak stats reset at
  each mark).
- CPU (no allocator statistics): :class:`PeakTensorBytes`, a dispatch mode that counts the
  bytes of tensor storages created while it is active, live and at peak (it does not see
  scratch memory inside fused kernels). The same mode counts the aten ops dispatched
  (``aten_ops``): routing overhead that timing noise on a shared machine hides shows up
  there exactly. Compiled calls are not traced (dynamo does not trace under a Python
  dispatch mode): on CPU they report no memory (-1), on CUDA no op count.
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..stats import reset_routing_stats
from .timing import Call
from .variants import Variant

Attempt = Callable[[Variant, Callable[[], Any]], Any]  # runs a call; None when it failed


class PeakTensorBytes(TorchDispatchMode):
    """Live and peak bytes of the tensor storages created while active, and aten ops."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = self.peak = self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            key = t.untyped_storage().data_ptr()
            entry = self.live.get(key)
            if entry is None:
                if key == 0 or key in inputs:  # a view of something made before the call
                    continue
                entry = self.live[key] = [t.untyped_storage().nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self.live[key]

    def forget(self, t: torch.Tensor) -> None:
        """Stop counting ``t``'s storage: the profiler keeps it, not the variant."""
        entry = self.live.pop(t.untyped_storage().data_ptr(), None)
        if entry is not None:
            self.current -= entry[0]


@dataclass(frozen=True)
class Footprint:
    """One variant's call: bytes (-1: not measured), aten ops (-1: not counted), tokens."""

    peak: int  # weights + work
    work: int  # peak bytes above the baseline during the call
    baseline: int  # bytes that earlier calls left alive at the mark (0: nothing leaked)
    kv: int  # keys and values stored in the call's cache (-1: no cache)
    ops: int
    toks: torch.Tensor | None


NOT_MEASURED = Footprint(-1, -1, -1, -1, -1, None)


def kv_cache_bytes(cache: Any) -> int:
    """Bytes of keys and values actually stored (allocated) in a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if getattr(layer, "is_initialized", True) and isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def param_bytes(model: nn.Module) -> int:
    seen: dict[int, int] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


class Meter:
    """Baseline-relative peak bytes over one memory pass (see the module docstring)."""

    def __init__(self, device: torch.device, tracker: PeakTensorBytes | None) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.tracker = tracker
        self.base = self.ops0 = 0

    def mark(self) -> None:
        """Free what earlier calls left, then take the baseline and restart the peak."""
        gc.collect()  # outputs of earlier calls sit in reference cycles (caches, hooks)
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.tracker is not None:
            self.tracker.peak = self.tracker.current
            self.base = self.tracker.current
        self.ops0 = self.tracker.ops if self.tracker is not None else 0

    def read(self) -> tuple[int, int, int]:
        """(work, baseline, ops) since the last :meth:`mark`; -1 for what is not measured."""
        ops = self.tracker.ops - self.ops0 if self.tracker is not None else -1
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base, self.base, ops
        if self.tracker is not None:
            return self.tracker.peak - self.base, self.base, ops
        return -1, -1, ops

    def keep(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """A tensor the profiler keeps after the call (tokens), not counted as alive."""
        if t is None:
            return None
        if self.cuda:
            return t.cpu()
        if self.tracker is not None:
            self.tracker.forget(t)
        return t


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Everything alive now is exempt from collection while the pass runs (``gc.freeze``),
    so that freeing a call's cyclic garbage before each mark scans only what calls made."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def meter(device: torch.device, traced: bool) -> Iterator[Meter]:
    """A :class:`Meter` for one memory pass; ``traced``: run the dispatch tracker."""
    with _frozen_heap():
        if not traced:
            yield Meter(device, None)
            return
        tracker = PeakTensorBytes()
        with tracker:
            yield Meter(device, tracker)


def measure(m: Meter, call: Callable[[], Call], weights: int) -> Footprint:
    """Bytes, ops, tokens and KV bytes of one untimed call; its cache is dropped."""
    m.mark()
    _, toks, cache = call()
    work, base, ops = m.read()
    kv = kv_cache_bytes(cache) if cache is not None else -1
    del cache
    return Footprint(weights + work if work >= 0 else -1, work, base, kv, ops, m.keep(toks))


def memory_pass(
    device: torch.device,
    variants: Sequence[Variant],
    call: Callable[[Variant], Call],
    attempt: Attempt,
    weights: int,
    traced: bool = True,
    release: Callable[[Variant], None] | None = None,
) -> dict[str, Footprint]:
    """One untimed call per variant, in the given order, each from a clean baseline: the
    previous call's outputs and cache are gone and its router statistics reset.
    ``release(v)`` runs before each baseline: it drops what the variant holds from earlier
    calls (a pooled cache), so that the call allocates, and counts, its own."""
    feet: dict[str, Footprint] = {}
    with meter(device, traced) as m:
        for v in variants:
            if release is not None:
                release(v)
            got = attempt(v, lambda v=v: measure(m, lambda: call(v), weights))
            feet[v.key] = got if got is not None else NOT_MEASURED
            reset_routing_stats(v.model)  # the call's router statistics are not kept alive
    return feet
