"""``python -m bench``: the data-plane benchmark, in-process and over loopback, plus cold-start imports.

Exits 1 only when ``stream::set`` or ``stream::get`` needs more than one DynamoDB request per call
(a hard product target, and deterministic); timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.fake_aws import install_fake_env


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--iterations", type=int, default=None, help="calls per operation (default: 300 in-process, 200 server)"
    )
    parser.add_argument("--mode", choices=("all", "in-process", "server"), default="all", help="which moto to use")
    parser.add_argument("--skip-imports", action="store_true", help="do not measure cold-start import cost")
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    install_fake_env()  # before anything can create a boto3 client

    from bench import cold_start, data_plane, report
    from bench.scenarios import REQUEST_TARGETS

    modes = [mode for name, mode in data_plane.MODES.items() if args.mode in ("all", name)]
    results = [data_plane.run_mode(mode, args.iterations or mode.default_iterations) for mode in modes]
    imports = None if args.skip_imports else cold_start.measure()
    checks = report.check_targets(results, REQUEST_TARGETS)
    print(report.render(results, checks, imports))
    print(f"\nfigures written to {report.write_json(results, checks, imports)}")
    return 0 if all(check.met for check in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
