"""The ``flink-llm`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``main(argv) -> int``; they are imported
lazily so ``flink-llm simulator`` starts without importing PyFlink.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulator": ("flink_llm_udf.simulator", "run the OpenAI-compatible simulator on loopback"),
    "cluster": ("flink_llm_udf.tools.cluster", "start/stop a local standalone Flink cluster from the wheel"),
    "sql": ("flink_llm_udf.tools.sql_file", "run a .sql file statement by statement through the Table API"),
    "bench": ("flink_llm_udf.tools.bench", "benchmark every entry point against the simulator"),
    "demo": ("flink_llm_udf.tools.demo", "run the sample job against the simulator and print a summary"),
}


def _usage() -> str:
    lines = ["usage: flink-llm SUBCOMMAND [options]", "", "subcommands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines.append("\n`flink-llm SUBCOMMAND --help` shows a subcommand's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"flink-llm: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
