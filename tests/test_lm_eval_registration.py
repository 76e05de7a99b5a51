"""``import mindskip`` registers the ``mindskip`` model with lm-eval, lazily: each case runs
in a fresh interpreter, since registration depends on what was imported before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# what lm_eval.simple_evaluate(model="mindskip", ...) calls (lm_eval.evaluator imports the
# registry, and get_model imports lm_eval.models when the registry is empty)
LOOKUP = """
from lm_eval.api.registry import get_model
assert get_model("mindskip").__name__ == "MindSkipLM", get_model("mindskip")
assert get_model("hf").__name__ == "HFLM"  # lm-eval's own models are still found
print("ok")
"""


@pytest.mark.parametrize("first", ["mindskip", "mindskip.evaluate"])
def test_import_registers_without_importing_lm_eval_or_torch(first):
    code = f"import sys, {first}\n"
    code += "assert 'lm_eval' not in sys.modules and 'torch' not in sys.modules\n"
    assert run(code + "import lm_eval\n" + LOOKUP).strip() == "ok"


def test_registers_when_lm_eval_models_were_loaded_first():
    assert run("import lm_eval.models, mindskip\n" + LOOKUP).strip() == "ok"
