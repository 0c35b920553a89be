"""The one place where the appliance's offline stance is set: every library that could reach a hub is told not to.

Imported (and applied) by `appliance/__init__.py`, so any use of the package runs offline. A library that still
tries to download fails with its own "offline mode" error instead of waiting on a network that is not there.
"""
from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",            # huggingface_hub: no downloads, no metadata calls
    "TRANSFORMERS_OFFLINE": "1",      # transformers: local files only
    "HF_DATASETS_OFFLINE": "1",       # datasets (used by training backends)
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",              # unstructured and others: no telemetry
    "SCARF_NO_ANALYTICS": "1",        # unstructured's Scarf telemetry
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no progress bars in CLI output and logs
    "TRANSFORMERS_VERBOSITY": "error",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",   # unstructured's advertising line on stdout
}


def enforce_offline() -> dict[str, str]:
    """Force the offline variables into this process's environment (a user cannot switch them back on)."""
    os.environ.update(OFFLINE_ENV)
    return dict(OFFLINE_ENV)
