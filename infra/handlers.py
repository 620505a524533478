"""Import Lambda handlers by their template name (``module.function``), from functions/ as Lambda does."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from iii_stream.infra.stack import FUNCTIONS_DIR


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """``"stream_functions.handler"`` -> the callable, importing from the SAM CodeUri (functions/)."""
    module_name, _, attribute = spec.rpartition(".")
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]
