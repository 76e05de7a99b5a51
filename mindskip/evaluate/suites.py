"""Evaluation suites: which lm-eval tasks, with which few-shot count, metric and item limit.

Two suites:

* ``paper``: the paper's nine lm-eval built-in tasks with its few-shot counts and metrics
  (``eval_settings.csv``). They need the Hugging Face hub or a pre-filled cache;
  :func:`check_suite_available` fails in well under a second when neither is there.
* ``embedded``: the same tasks (and a few more that a 135M model scores above chance) as
  local task files written by :mod:`mindskip.data.tasks`: lm-eval's own definitions on
  data from pinned registry packages. They run with no hub at all.

This module imports neither torch nor lm_eval, so a job can check a suite before it loads
a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hub import hub_endpoint, hub_offline, hub_reachable

SUBSETS = ("spread", "first")
DEFAULT_TASKS_DIR = Path("results/assets/tasks")
DEFAULT_EMBEDDED_LIMIT = 100


class SuiteUnavailableError(RuntimeError):
    """A suite's data cannot be reached (no hub, no cache, or missing local task files)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite, and how it is scored.

    Attributes:
        task: lm-eval task (or group) name, e.g. ``"arc_challenge"`` or
            ``"arc_challenge_embedded"``.
        num_fewshot: few-shot examples per item.
        metric: the metric reported (``acc``, ``acc_norm``, ``exact_match``).
        label: short display name (the paper's name where there is one).
        limit: items scored per (leaf) task; ``None`` scores all of them.
        subset: how ``limit`` picks items: ``"spread"`` (a seeded hash order of the
            document indices, so N items come from the whole file and the first N of a
            larger limit are the same items), or ``"first"`` (the first N in file order,
            as lm-eval's own ``--limit``).
        filter: lm-eval filter whose value is reported (``"none"`` for multiple choice;
            GSM8K has ``"strict-match"`` and ``"flexible-extract"``).
        chance: chance level, for tasks whose items do not give it (generation). For
            multiple choice it is computed from the scored items (mean of 1/choices).
        datasets: hub datasets the task reads, as ``"org/name"``; checked before running.
        note: why this metric / few-shot count was chosen.
    """

    task: str
    num_fewshot: int
    metric: str
    label: str = ""
    limit: int | None = None
    subset: str = "spread"
    filter: str = "none"
    chance: float | None = None
    datasets: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.num_fewshot < 0:
            raise ValueError(f"{self.task}: num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"{self.task}: limit must be >= 1 or None, got {self.limit}")
        if self.subset not in SUBSETS:
            raise ValueError(f"{self.task}: subset must be one of {SUBSETS}, got {self.subset!r}")
        object.__setattr__(self, "datasets", tuple(self.datasets))

    @property
    def metric_key(self) -> str:
        """The key lm-eval uses in its results, e.g. ``"acc_norm,none"``."""
        return f"{self.metric},{self.filter}"

    def replace(self, **changes: Any) -> TaskSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Suite:
    """A named list of tasks, and where their definitions live.

    ``include_path`` is a folder of local task YAML (``None`` for built-in tasks);
    ``needs_hub`` says the tasks download their data from the hub.
    """

    name: str
    tasks: tuple[TaskSpec, ...]
    include_path: str | None = None
    needs_hub: bool = False
    seed: int = 1234
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        names = [t.task for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.name!r} lists a task twice: {names}")
        if not names:
            raise ValueError(f"suite {self.name!r} has no tasks")

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(f"suite {self.name!r} has no task {name!r}")

    def with_limit(self, limit: int | None) -> Suite:
        """The same suite with one item limit for every task."""
        return dataclasses.replace(self, tasks=tuple(t.replace(limit=limit) for t in self.tasks))

    def select(self, tasks: Iterable[str]) -> Suite:
        """The same suite restricted to ``tasks`` (in the order given)."""
        return dataclasses.replace(self, tasks=tuple(self.task(t) for t in tasks))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = [dataclasses.asdict(t) | {"datasets": list(t.datasets)} for t in self.tasks]
        d["extra"] = dict(self.extra)
        return d


# --------------------------------------------------------------------------- paper
# eval_settings.csv: the paper's lm-eval task, few-shot count and metric, plus the hub
# datasets lm-eval 0.4.x reads for each (checked against lm-eval's index when it runs).
PAPER_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("arc_challenge", 25, "acc_norm", "ARC-C", datasets=("allenai/ai2_arc",)),
    TaskSpec("boolq", 0, "acc", "BoolQ", datasets=("aps/super_glue",)),
    TaskSpec("hellaswag", 10, "acc_norm", "HellaSwag", datasets=("Rowan/hellaswag",)),
    TaskSpec("mmlu", 5, "acc", "MMLU", datasets=("cais/mmlu",)),
    TaskSpec("openbookqa", 0, "acc_norm", "OBQA", datasets=("allenai/openbookqa",)),
    TaskSpec("piqa", 0, "acc_norm", "PIQA", datasets=("baber/piqa",)),
    TaskSpec("rte", 0, "acc", "RTE", datasets=("nyu-mll/glue",)),
    TaskSpec("winogrande", 5, "acc", "WinoGrande", datasets=("allenai/winogrande",)),
    TaskSpec(
        "gsm8k",
        5,
        "exact_match",
        "GSM8K",
        filter="strict-match",
        chance=0.0,
        datasets=("openai/gsm8k",),
    ),
)


def paper_suite(
    limit: int | None = None,
    tasks: Sequence[str] | None = None,
    num_fewshot: int | Mapping[str, int] | None = None,
) -> Suite:
    """The paper's tasks (``eval_settings.csv``) as lm-eval built-in tasks (needs a hub).

    ``limit`` applies per leaf task (for the ``mmlu`` group: per subject); ``num_fewshot``
    as in :func:`embedded_suite`.
    """
    suite = Suite("paper", PAPER_TASKS, include_path=None, needs_hub=True)
    if tasks is not None:
        suite = suite.select(tasks)
    if num_fewshot is not None:
        specs = tuple(t.replace(num_fewshot=_fewshot(t, num_fewshot)) for t in suite.tasks)
        suite = dataclasses.replace(suite, tasks=specs)
    return suite.with_limit(limit) if limit is not None else suite


# --------------------------------------------------------------------------- embedded
FewShot = int | Mapping[str, int] | None


def _embedded_spec(name: str) -> TaskSpec:
    """The spec of a local task: a catalog task (the paper's few-shot count and metric),
    or ``bb_<task>`` from a local BIG-bench folder (zero-shot, ``acc_norm``)."""
    from ..data.bigbench import BIGBENCH_PREFIX
    from ..data.tasks import lookup

    if name.startswith(BIGBENCH_PREFIX):
        return TaskSpec(name, 0, "acc_norm", f"{name[len(BIGBENCH_PREFIX) :]} (BB)")
    task = lookup(name)
    if name != task.name:
        raise ValueError(f"embedded tasks are named <lm-eval task>_embedded: {task.name!r}")
    gen = task.metric == "exact_match"
    note = "the paper's setting" if task.paper else "not in the paper; lm-eval's metric"
    return TaskSpec(
        task.name,
        task.paper_fewshot,
        task.metric,
        task.label,
        filter="strict-match" if gen else "none",
        chance=0.0 if gen else None,
        note=f"{note}: {task.paper_fewshot}-shot {task.metric}",
    )


def _fewshot(spec: TaskSpec, num_fewshot: FewShot) -> int:
    if num_fewshot is None:
        return spec.num_fewshot
    if isinstance(num_fewshot, int):
        return num_fewshot
    return int(num_fewshot.get(spec.task, spec.num_fewshot))


def embedded_suite(
    tasks_dir: str | Path = DEFAULT_TASKS_DIR,
    *,
    limit: int | None = DEFAULT_EMBEDDED_LIMIT,
    tasks: Sequence[str] | None = None,
    seed: int = 1234,
    num_fewshot: FewShot = None,
) -> Suite:
    """The offline suite over the task files in ``tasks_dir`` (``mindskip.data`` writes them).

    ``tasks`` are local task names (default: the paper's tasks but GSM8K); ``limit`` items
    per task, a seeded spread of the scored part. ``num_fewshot``: ``None`` keeps each
    task's paper setting; an integer sets every task; a mapping sets the tasks it names.
    """
    from ..data.tasks import CATALOG, PAPER_TASKS

    if tasks is None:
        tasks = [CATALOG[k].name for k in PAPER_TASKS if k != "gsm8k"]
    specs = []
    for name in tasks:
        try:
            spec = _embedded_spec(name)
        except KeyError as e:
            raise ValueError(f"unknown embedded task {name!r}: {e.args[0]}") from None
        specs.append(spec.replace(limit=limit, num_fewshot=_fewshot(spec, num_fewshot)))
    return Suite(
        "embedded",
        tuple(specs),
        include_path=str(Path(tasks_dir).resolve()),
        needs_hub=False,
        seed=seed,
    )


def get_suite(name: str, **kwargs: Any) -> Suite:
    """``"paper"`` or ``"embedded"``; keyword arguments go to the suite's builder."""
    builders = {"paper": paper_suite, "embedded": embedded_suite}
    if name not in builders:
        raise ValueError(f"unknown suite {name!r}; choose from {sorted(builders)}")
    return builders[name](**kwargs)


# --------------------------------------------------------------------------- availability
def _hf_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(os.environ.get("HF_HOME", default)).expanduser()


def _cache_dirs() -> tuple[Path, Path]:
    """(hub cache, datasets cache), read from the environment at call time."""
    home = _hf_home()
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    ds = os.environ.get("HF_DATASETS_CACHE")
    return (Path(hub) if hub else home / "hub"), (Path(ds) if ds else home / "datasets")


def dataset_cached(repo_id: str) -> bool:
    """Whether a hub dataset has a local copy (hub snapshot or ``datasets`` arrow cache).

    A quick check of folder names only; it cannot tell that every config is complete.
    """
    hub, ds = _cache_dirs()
    org, _, name = repo_id.partition("/")
    wanted = {
        f"datasets--{repo_id.replace('/', '--')}".lower(),
        f"{org}___{name}".lower() if name else repo_id.lower(),
        repo_id.replace("/", "--").lower(),
    }
    for root in (hub, ds):
        if root.is_dir() and any(p.name.lower() in wanted for p in root.iterdir()):
            return True
    return False


def _local_data_files(yaml_path: Path) -> list[str]:
    """The files a local task YAML names: its ``dataset_kwargs.data_files`` and the
    lm-eval YAML it includes by absolute path."""
    import yaml

    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:  # custom tags (!function): leave the check to lm-eval
        return []
    files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
    values = files.values() if isinstance(files, dict) else [files]
    include = cfg.get("include")
    out = [include] if isinstance(include, str) and Path(include).is_absolute() else []
    for v in values:
        out += [str(x) for x in (v if isinstance(v, list) else [v])]
    return out


def _task_yamls(root: Path, suite: Suite) -> list[Path]:
    """Each task's YAML, and for a group (``task:`` a list) its members' YAML too."""
    import yaml

    out = []
    for t in suite.tasks:
        path = root / f"{t.task}.yaml"
        out.append(path)
        try:
            cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        members = cfg.get("task") if "group" in cfg else None
        if isinstance(members, list):
            out += [root / f"{m}.yaml" for m in members if (root / f"{m}.yaml").is_file()]
    return out


def check_suite_available(suite: Suite, *, timeout: float = 3.0) -> None:
    """Raise :class:`SuiteUnavailableError` unless every task of ``suite`` can load its data.

    Local suites: the include folder and each task's YAML must exist. Hub suites: each
    dataset must be in the local cache, or the hub must be online (not ``HF_*_OFFLINE``)
    and reachable. Costs no model load, and at most ``timeout`` seconds of network.
    """
    if suite.include_path is not None:
        root = Path(suite.include_path)
        missing = [t.task for t in suite.tasks if not (root / f"{t.task}.yaml").is_file()]
        if not root.is_dir() or missing:
            raise SuiteUnavailableError(
                f"suite {suite.name!r}: task files missing in {root} "
                f"({'folder absent' if not root.is_dir() else missing}). "
                "Build them with `python -m mindskip.data prepare --out results/assets`."
            )
        absent = [p for y in _task_yamls(root, suite) for p in _local_data_files(y)]
        absent = [p for p in absent if not Path(p).is_file()]
        if absent:
            raise SuiteUnavailableError(
                f"suite {suite.name!r}: the task YAML in {root} name files that do not "
                f"exist ({absent[:3]}; task YAML holds absolute paths to the data and to "
                "lm-eval's own YAML, so a copied folder or a new lm-eval must be rebuilt). "
                "Run `python -m mindskip.data prepare --out results/assets`."
            )
    if not suite.needs_hub:
        return
    datasets = sorted({d for t in suite.tasks for d in t.datasets})
    missing = [d for d in datasets if not dataset_cached(d)]
    if not missing:
        return
    hub, ds = _cache_dirs()
    where = f"hub cache {hub}, datasets cache {ds}"
    tasks = [t.task for t in suite.tasks if set(t.datasets) & set(missing)]
    advice = (
        "Run where the Hugging Face hub is reachable, or pre-fill the cache (HF_HOME) on a "
        "machine with access, or use the offline suite 'embedded'."
    )
    if hub_offline(datasets=True):
        raise SuiteUnavailableError(
            f"suite {suite.name!r} needs hub datasets {missing} (tasks {tasks}), but "
            f"offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and they are not "
            f"in the local cache ({where}). {advice}"
        )
    if not hub_reachable(timeout):
        raise SuiteUnavailableError(
            f"suite {suite.name!r} needs hub datasets {missing} (tasks {tasks}), but the hub "
            f"({hub_endpoint()}) is not reachable and they are not in the local cache "
            f"({where}). {advice}"
        )


def subset_indices(
    n_docs: int, limit: int | None, *, how: str = "spread", seed: int = 1234, task: str = ""
) -> list[int] | None:
    """The document indices a ``limit`` selects, sorted; None means all documents.

    ``"first"``: ``0..limit-1``. ``"spread"``: documents ordered by
    ``sha256(f"{seed}:{task}:{index}")`` and the first ``limit`` taken, so the choice is
    fixed by (seed, task, index) alone, spread over the whole file, and nested (the items
    of limit 100 are among those of limit 200).
    """
    if limit is None or limit >= n_docs:
        return None
    if how == "first":
        return list(range(limit))
    if how != "spread":
        raise ValueError(f"subset must be one of {SUBSETS}, got {how!r}")

    def rank(i: int) -> bytes:
        return hashlib.sha256(f"{seed}:{task}:{i}".encode()).digest()

    return sorted(sorted(range(n_docs), key=rank)[:limit])
