"""The Hugging Face Hub as the environment sees it: switched off, or reachable.

One home for both checks (models and evaluation datasets read them the same way).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

_TRUE = ("1", "true", "yes", "on")


def hub_offline(datasets: bool = False) -> bool:
    """Whether the Hub is switched off for models (``HF_HUB_OFFLINE``,
    ``TRANSFORMERS_OFFLINE``) or, with ``datasets``, for datasets too
    (``HF_DATASETS_OFFLINE``), read from the environment at call time."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *(("HF_DATASETS_OFFLINE",) * datasets))
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in names)


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers (any HTTP status counts) within ``timeout`` s."""
    url = hub_endpoint() + "/api/datasets?limit=1"
    req = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):  # URLError, timeouts and refused connections
        return False
