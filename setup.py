"""Packaging beyond pyproject.toml: the wheel carries the core stack (template.yaml, the Lambda handler modules
of functions/, and the example app that ``iii-stream new`` builds on) as package data under ``iii_stream/_stack``,
so ``iii-stream local``, ``iii-stream package`` and ``iii-stream new`` work from an installed package. The handler
modules are data there, never top-level modules of site-packages."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithStack(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        stack = Path(self.build_lib) / "iii_stream" / "_stack"
        (stack / "functions").mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "template.yaml", stack / "template.yaml")
        for handler in [*sorted((ROOT / "functions").glob("*.py")), ROOT / "functions" / "requirements.txt"]:
            shutil.copy2(handler, stack / "functions" / handler.name)
        # The example app: ``iii-stream new`` writes its code into every new project.
        (stack / "examples" / "todo").mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "examples" / "todo" / "app.py", stack / "examples" / "todo" / "app.py")


setup(cmdclass={"build_py": BuildWithStack})
