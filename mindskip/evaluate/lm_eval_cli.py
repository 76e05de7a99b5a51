"""lm-eval's own command line, with the ``mindskip`` model registered.

lm-eval 0.4.x finds models only in its registry: it reads no plugins or entry points for
models (upstream issues EleutherAI/lm-evaluation-harness#1457, #1621, #3282), so a plain
``lm_eval --model mindskip`` cannot see a model defined outside lm-eval. This wrapper
imports the registration (:class:`mindskip.evaluate.hflm.MindSkipLM`, registered as
``mindskip``) and hands every argument to lm-eval's ``cli_evaluate`` unchanged::

    python -m mindskip.evaluate.lm_eval_cli --model mindskip \\
        --model_args pretrained=embedded,routers=results/routers/<run>,route_on=prompt \\
        --tasks piqa_embedded --include_path results/assets/tasks --device cpu

``mindskip-lm-eval`` (a console script of the package) is the same command. From Python,
``import mindskip`` registers the model for
``lm_eval.simple_evaluate(model="mindskip", model_args=...)`` (:mod:`.registration`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run lm-eval's CLI (``argv`` defaults to the process arguments)."""
    from lm_eval.__main__ import cli_evaluate

    from . import hflm  # noqa: F401  (registers the "mindskip" model)

    if argv is not None:  # lm-eval parses sys.argv itself
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
