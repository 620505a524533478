"""``make validate``: prove template.yaml every way that needs no AWS account.

cfn-lint on the template, the SAM translator (offline), cfn-lint on its output, then our own checks:
handlers import, every setting the code reads is set, each function's IAM policy grants exactly the
access its code uses (and no wildcard where a narrower resource exists), the tables the tests and the
local service create are the template's, the outputs are there, the registrations are well formed, and
the translated template creates a stack in moto whose tables have the declared keys and indexes.

``python -m infra.validate [TEMPLATE]`` prints one line per check and exits 1 on any failure.
``CodeUri`` paths are read against the project root, so a copy of the template anywhere validates the same code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iii_stream.infra.deploy_checks import CHECKS, NEEDS_TRANSLATION, Context, Failed, Skipped
from iii_stream.infra.stack import TEMPLATE_PATH
from iii_stream.infra.template import load_template


@dataclass
class Check:
    """One check's outcome: its problems (none when it passed), a summary, its duration."""

    name: str
    problems: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0
    skipped: str = ""

    def line(self) -> str:
        """``ok``/``FAIL``/``SKIP``, the name, the time and a summary; then one line per problem."""
        if self.skipped:
            state, summary = "SKIP", self.skipped
        elif self.problems:
            state, summary = "FAIL", f"{len(self.problems)} problem(s)"
        else:
            state, summary = "ok", self.detail
        text = f"{state:<4}  {self.name:<20} {self.seconds:5.2f} s  {summary}"
        return "\n".join([text, *(f"        - {problem}" for problem in self.problems)])


@dataclass
class Report:
    """Every check that ran, in order; ok when none found a problem."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not self.failed()

    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.problems]

    def problems(self, name: str) -> list[str]:
        return next(check.problems for check in self.checks if check.name == name)

    def all_problems(self) -> list[str]:
        return [problem for check in self.checks for problem in check.problems]


def validate(
    path: Path = TEMPLATE_PATH, only: set[str] | None = None, echo: Callable[[str], None] | None = None
) -> Report:
    """Run the checks (all, or the names in ``only``) on a template; ``echo`` gets each check's line."""
    ctx = Context(path)
    checks: list[Check] = []
    try:
        ctx.raw = load_template(path)
        if not isinstance(ctx.raw, dict) or not isinstance(ctx.raw.get("Resources"), dict):
            raise ValueError("no Resources mapping")
    except Exception as exc:
        check = Check("parse", [f"{path}: {type(exc).__name__}: {exc}"])
        if echo:
            echo(check.line())
        return Report([check])
    wanted = None if only is None else only | ({"sam translate"} if only & NEEDS_TRANSLATION else set())
    for name, run in CHECKS:
        if wanted is not None and name not in wanted:
            continue
        check = Check(name)
        started = time.perf_counter()
        try:
            check.detail = run(ctx)
        except Failed as failed:
            check.problems = failed.problems
        except Skipped as skipped:
            check.skipped = str(skipped)
        check.seconds = time.perf_counter() - started
        checks.append(check)
        if echo:
            echo(check.line())
    return Report(checks)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else TEMPLATE_PATH
    started = time.perf_counter()
    report = validate(path, echo=print)
    verdict = "valid" if report.ok else f"INVALID ({len(report.failed())} check(s) failed)"
    print(f"{path.name}: {verdict} in {time.perf_counter() - started:.1f} s")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
