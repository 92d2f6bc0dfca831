"""Where the Flink distribution is, and the environment the Flink processes we start get.

The apache-flink wheel ships a complete Flink distribution in ``site-packages/pyflink``. Every
process started from it (daemons, ``flink run``) gets a copy of this process's environment
without what would mislead it: variables a local PyFlink run left behind, and API keys, which
Flink writes into its logs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from .errors import ClusterError

__all__ = [
    "IDENT",
    "PYFLINK_PROCESS_VARIABLES",
    "SECRET_VARIABLES",
    "clean_environ",
    "find_flink_home",
    "without_secrets",
]

logger = logging.getLogger(__name__)

#: ``FLINK_IDENT_STRING``: names the daemons' PID and log files (``flink-<ident>-taskexecutor.pid``)
#: and the client's log; fixed so that they do not depend on $USER, which CI may not set.
IDENT = "flink-llm"

#: Secrets that must not reach a Flink process's environment, which Flink logs.
SECRET_VARIABLES = ("OPENAI_API_KEY",)

#: Variables a local PyFlink run (mini-cluster, loopback worker) leaves in ``os.environ``.
#: Inherited by ``flink run``, PYTHON_LOOPBACK_SERVER_ADDRESS makes the *cluster's* Python
#: workers call back into that local process -- UDFs then silently run there -- so every
#: subprocess started here gets an environment without them.
PYFLINK_PROCESS_VARIABLES = frozenset(
    {
        "PYTHON_LOOPBACK_SERVER_ADDRESS",
        "PYFLINK_GATEWAY_DISABLED",
        "PYFLINK_GATEWAY_PORT",
        "_PYFLINK_CONN_INFO_PATH",
        "_PYTHON_WORKER_MEMORY_LIMIT",
        "_python_worker_execution_mode",
        "BOOT_LOG_DIR",
        "SEMI_PERSISTENT_DIRECTORY",
        "TABLE_LOCAL_TIME_ZONE",
        "FLINK_BIN_DIR",
        "FLINK_HOME",
        "FLINK_LIB_DIR",
        "FLINK_OPT_DIR",
        "FLINK_PLUGINS_DIR",
        "FLINK_CONF_DIR",
        "python",
    }
)


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without :data:`PYFLINK_PROCESS_VARIABLES`."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items() if key not in PYFLINK_PROCESS_VARIABLES}


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :data:`SECRET_VARIABLES` removed (in place), each removal logged by name."""
    for name in SECRET_VARIABLES:
        # Flink writes the Python workers' environment into its logs (field note 12).
        if env.pop(name, None) is not None:
            logger.warning(
                "%s is not passed to the cluster: Flink would write it into its logs; "
                "put the key in a file and set OPENAI_API_KEY_FILE instead",
                name,
            )
    return env


def find_flink_home() -> Path:
    """The Flink distribution inside the installed apache-flink wheel (``.../pyflink``)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("apache-flink is not installed in this Python environment")
    for location in spec.submodule_search_locations:
        home = Path(location)
        if (home / "bin" / "flink").exists() and any((home / "lib").glob("flink-dist*.jar")):
            return home
    raise ClusterError(f"no Flink distribution (bin/flink, lib/flink-dist*.jar) under {spec.origin}")
