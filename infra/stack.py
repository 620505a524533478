"""Where the core stack is: ``template.yaml`` and the Lambda code root (``functions/``) beside it.

In a checkout they are the repository's own files. An installed package carries a copy as package data,
``iii_stream/_stack`` (written by setup.py), so ``iii-stream local`` and ``iii-stream package`` work outside
the repository too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import iii_stream

_CHECKOUT: Final = Path(__file__).resolve().parent.parent  # infra/.. (the link functions/iii_stream/infra resolved)
_PACKAGED: Final = Path(iii_stream.__file__).resolve().parent / "_stack"


def stack_root() -> Path:
    """The directory holding ``template.yaml`` and ``functions/``."""
    for root in (_CHECKOUT, _PACKAGED):
        if (root / "template.yaml").is_file() and (root / "functions").is_dir():
            return root
    raise FileNotFoundError(
        f"the iii-stream stack (template.yaml and functions/) is neither in {_CHECKOUT} nor in {_PACKAGED}: "
        "reinstall the package (pip install --force-reinstall iii-stream-aws)"
    )


STACK_ROOT: Final = stack_root()
TEMPLATE_PATH: Final = STACK_ROOT / "template.yaml"
FUNCTIONS_DIR: Final = STACK_ROOT / "functions"
EXAMPLE_DIR: Final = STACK_ROOT / "examples" / "todo"  # the example app, which ``iii-stream new`` builds on
