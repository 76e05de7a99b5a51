"""The ``mindskip`` model in lm-eval's registry, without importing lm-eval.

lm-eval 0.4 finds a model by name in ``lm_eval.api.registry.model_registry``, which also
takes lazy placeholders (``"module:object"``, imported on first lookup); it fills that
registry with its own models' placeholders when ``lm_eval.models`` is first imported
(``get_model`` imports it when the registry is empty). :func:`register_lazily`, called by
``import mindskip``, adds the placeholder ``mindskip`` -> :class:`.hflm.MindSkipLM` at that
moment: now if ``lm_eval.models`` is loaded already, else from a one-shot finder on
``sys.meta_path`` that runs right after ``lm_eval.models`` executes. So::

    import lm_eval
    import mindskip

    lm_eval.simple_evaluate(model="mindskip", model_args=..., tasks=...)

works, while ``import mindskip`` itself imports neither lm-eval nor torch (only the lookup
imports :mod:`.hflm`, whose ``@register_model`` then replaces the placeholder by the class).
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

NAME = "mindskip"
TARGET = "mindskip.evaluate.hflm:MindSkipLM"
WATCHED = "lm_eval.models"  # lm-eval registers its own models when this executes


def register_now() -> None:
    """Register the placeholder (imports ``lm_eval.api.registry``); a no-op when the name
    is taken (by the placeholder or the class)."""
    from lm_eval.api.registry import model_registry

    if NAME not in model_registry:
        model_registry.register(NAME, target=TARGET)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds :data:`WATCHED` with the other finders and registers right after it executes."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != WATCHED:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # one shot
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            register_now()

        loader.exec_module = exec_module  # this module's own loader instance only
        return spec


def register_lazily() -> None:
    """Register now if lm-eval's models are loaded, else when they are (see the module
    docstring). Idempotent."""
    if WATCHED in sys.modules:
        register_now()
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
