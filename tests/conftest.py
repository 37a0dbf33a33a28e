"""Load this repository's root as the package `celery_tasks`, whatever the folder is called."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if "celery_tasks" not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        "celery_tasks", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["celery_tasks"] = module
    spec.loader.exec_module(module)
