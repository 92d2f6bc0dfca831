"""The tools behind the ``flink-llm`` command: CLI, demo, SQL-file runner, standalone cluster, bench.

Each tool is a module or subpackage with a ``main(argv) -> int``; ``cli`` dispatches to them.
They use the client core and the Flink adapters; nothing in the core imports them.
"""

from __future__ import annotations

from pathlib import Path

import flink_llm_udf

#: The directory that holds the ``flink_llm_udf`` package: a checkout's root (with ``jobs/``)
#: or site-packages. Child processes get it on PYTHONPATH so they import this same package.
PACKAGE_PARENT = Path(flink_llm_udf.__file__).resolve().parents[1]
