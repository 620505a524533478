"""``python -m bench``: the data-plane benchmark (in-process and over loopback), cold-start imports, and the
broadcast of one change to 10,000 subscribers.

Exits 1 when ``stream::set`` or ``stream::get`` needs more than one DynamoDB request per call, or when a
broadcast does not post exactly once to every subscriber or makes a Scan (hard, deterministic targets);
timings, the broadcast's 5 s target included, are reported, never asserted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.fake_aws import install_fake_env

MODES = ("all", "in-process", "server", "broadcast", "local", "dispatch")


def _concurrencies(raw: str) -> list[int]:
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive whole numbers, not {raw!r}")
    return values


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--iterations", type=int, default=None, help="calls per operation (default: 300 in-process, 200 server)"
    )
    parser.add_argument(
        "--mode", choices=MODES, default="all", help="which moto to use for the data plane, or the broadcast only"
    )
    parser.add_argument("--skip-imports", action="store_true", help="do not measure cold-start import cost")
    parser.add_argument("--subscribers", type=int, default=10_000, help="broadcast: subscribers of the group")
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[64, 128, 256],
        help="broadcast: BROADCAST_CONCURRENCY values, one run each (default: 64,128,256)",
    )
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.subscribers < 1:
        parser.error("--subscribers must be at least 1")
    return args


def _data_plane(args: argparse.Namespace) -> bool:
    from bench import cold_start, data_plane, report
    from bench.scenarios import REQUEST_TARGETS

    modes = [mode for name, mode in data_plane.MODES.items() if args.mode in ("all", name)]
    results = [data_plane.run_mode(mode, args.iterations or mode.default_iterations) for mode in modes]
    imports = None if args.skip_imports else cold_start.measure()
    checks = report.check_targets(results, REQUEST_TARGETS)
    print(report.render(results, checks, imports))
    print(f"\nfigures written to {report.write_json(results, checks, imports)}")
    return all(check.met for check in checks)


def _broadcast(args: argparse.Namespace) -> bool:
    from bench import broadcast

    result = broadcast.run(args.concurrency, args.subscribers)
    print(broadcast.render(result))
    print(f"\nfigures written to {broadcast.write_json(result)}")
    return result.complete


def _local(args: argparse.Namespace) -> bool:
    from bench import local_latency

    figures = local_latency.run()
    print(local_latency.render(figures))
    print(f"\nfigures written to {local_latency.write_json(figures)}")
    return True


def _dispatch() -> bool:
    from bench import dispatch

    figures = dispatch.run()
    print(dispatch.render(figures))
    print(f"\nfigures written to {dispatch.write_json(figures)}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    install_fake_env()  # before anything can create a boto3 client

    ok = True
    if args.mode in ("all", "dispatch"):
        _dispatch()
        if args.mode == "dispatch":
            return 0
        print()
    if args.mode in ("all", "local"):
        ok = _local(args)
        if args.mode == "local":
            return 0
        print()
    if args.mode != "broadcast":
        ok = _data_plane(args) and ok
    if args.mode in ("all", "broadcast"):
        if args.mode == "all":
            print()
        ok = _broadcast(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
