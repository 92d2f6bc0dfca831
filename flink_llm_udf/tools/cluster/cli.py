"""``flink-llm cluster start|stop|status``: the command line of :class:`StandaloneCluster`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..key_values import parse_key_values
from .errors import ClusterError
from .standalone import StandaloneCluster

__all__ = ["build_parser", "main"]

DESCRIPTION = "A standalone Flink cluster on this machine, run from the apache-flink wheel."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flink-llm cluster", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a JobManager and TaskManagers on 127.0.0.1")
    stop = sub.add_parser("stop", help="stop the cluster started from --workdir")
    status = sub.add_parser("status", help="show the REST API's overview")
    for p in (start, stop, status):
        p.add_argument("--workdir", default=".cluster", help="conf/, log/, pid/ live here (default .cluster)")
    start.add_argument("--taskmanagers", type=int, default=2, help="number of TaskManagers (default 2)")
    start.add_argument("--python", default=sys.executable, help="Python for the workers and the client")
    start.add_argument("--rest-port", type=int, default=8081)
    start.add_argument("--rpc-port", type=int, default=6123)
    start.add_argument("--prometheus-ports", default="9249-9260")
    start.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the TaskManagers")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    return parser


def _start(args: argparse.Namespace) -> int:
    try:
        overrides = dict(parse_key_values(args.set))
    except ValueError as exc:
        print(f"flink-llm cluster start: {exc}", file=sys.stderr)
        return 1
    cluster = StandaloneCluster(
        args.workdir,
        taskmanagers=args.taskmanagers,
        python=args.python,
        rest_port=args.rest_port,
        rpc_port=args.rpc_port,
        prometheus_ports=args.prometheus_ports,
        config=overrides,
        start_timeout=args.timeout,
    )
    seconds = cluster.start()
    print(f"Flink cluster up in {seconds:.1f} s: {cluster.taskmanagers} TaskManager(s)")
    print(f"  web UI / REST: {cluster.rest_url}")
    flink = cluster.flink_home / "bin" / "flink"
    print(f"  submit:        {flink} run -m {cluster.jobmanager_address} -py JOB.py")
    print(f"  logs:          {cluster.log_dir}")
    print(f"  stop:          flink-llm cluster stop --workdir {args.workdir}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    cluster = StandaloneCluster.from_workdir(args.workdir, stop_timeout=args.timeout)
    seconds = cluster.stop()
    print(f"Flink cluster in {cluster.workdir} stopped in {seconds:.1f} s")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = StandaloneCluster.from_workdir(args.workdir)
    overview = cluster.overview()
    print(f"{cluster.rest_url}: Flink {overview.get('flink-version')}")
    print(
        f"  TaskManagers {overview.get('taskmanagers')}, slots {overview.get('slots-available')}"
        f"/{overview.get('slots-total')} free"
    )
    print(
        f"  jobs running {overview.get('jobs-running')}, finished {overview.get('jobs-finished')}, "
        f"cancelled {overview.get('jobs-cancelled')}, failed {overview.get('jobs-failed')}"
    )
    for job in cluster.jobs():
        name = " ".join(job["name"].split())
        print(f"  {job['jid']}  {job['state']:<10} {name[:70]}{'...' if len(name) > 70 else ''}")
    return 0


_COMMANDS = {"start": _start, "stop": _stop, "status": _status}


def main(argv: Sequence[str] | None = None) -> int:
    """``flink-llm cluster start|stop|status``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ClusterError as exc:
        print(f"flink-llm cluster {args.command}: {exc}", file=sys.stderr)
        return 1
