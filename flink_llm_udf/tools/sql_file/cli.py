"""``flink-llm sql -f FILE [--cluster]``: the command line of the SQL-file runner."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..key_values import parse_key_values
from .execute import SqlRunnerError, run_file
from .submit import client_conf_dir, cluster_command, cluster_env

__all__ = ["build_parser", "main"]

DESCRIPTION = "Run a ``.sql`` file statement by statement through PyFlink's ``TableEnvironment``."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flink-llm sql", description=DESCRIPTION)
    parser.add_argument("-f", "--file", required=True, help="the .sql file to run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a table option, before the file's SETs",
    )
    parser.add_argument("--max-rows", type=int, default=100, help="rows a SELECT prints (default 100)")
    parser.add_argument("--detached", action="store_true", help="do not wait for INSERT jobs to finish")
    cluster = parser.add_argument_group(
        "cluster", "run the file as jobs on a running cluster (bin/flink run)"
    )
    cluster.add_argument(
        "--cluster", action="store_true", help="submit to a cluster instead of running locally"
    )
    cluster.add_argument(
        "--jobmanager", help="HOST:PORT of its REST API (default: from the conf dir, else 127.0.0.1:8081)"
    )
    cluster.add_argument(
        "--workdir",
        default=".cluster",
        help="working dir of `flink-llm cluster start`; its conf/ is used if present",
    )
    cluster.add_argument(
        "--conf-dir", help="Flink conf dir for the client (default: $FLINK_CONF_DIR, else WORKDIR/conf)"
    )
    cluster.add_argument(
        "--pyexec", help="Python of the workers (default: python.executable of the conf dir)"
    )
    cluster.add_argument(
        "--pyfiles", default="", help="comma-separated files/dirs shipped to the workers (-pyfs)"
    )
    cluster.add_argument("--timeout", type=float, default=None, help="seconds before flink run is killed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``flink-llm sql``; 0 when every statement succeeded, 1 at the first failure, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not Path(args.file).is_file():
        parser.error(f"no such file: {args.file}")
    try:
        options = parse_key_values(args.set)
    except ValueError as exc:
        print(f"flink-llm sql: {args.file}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.cluster:
            conf_dir = client_conf_dir(args)
            command = cluster_command(args, conf_dir)
            try:
                done = subprocess.run(command, env=cluster_env(conf_dir), timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"flink-llm sql: flink run did not finish within {args.timeout} s", file=sys.stderr)
                return 1
            return 0 if done.returncode == 0 else 1
        run_file(args.file, options=options, wait=not args.detached, max_rows=args.max_rows)
    except SqlRunnerError as exc:
        print(f"flink-llm sql: {args.file}: {exc}", file=sys.stderr)
        return 1
    return 0
