"""``flink-llm sql --cluster``: the ``bin/flink run`` command that runs a ``.sql`` file as cluster jobs.

``flink run -pym flink_llm_udf.tools.sql_file`` re-runs this tool inside the Flink client, whose
``TableEnvironment`` then submits each statement's job to the cluster. The client reads the
cluster's conf dir: ``--conf-dir``, ``$FLINK_CONF_DIR``, or the working directory of
``flink-llm cluster start``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from flink_llm_udf.tools import PACKAGE_PARENT

from ..cluster.environment import IDENT, clean_environ, find_flink_home
from ..cluster.flink_config import read_conf_dir

__all__ = ["SQL_FILE_MODULE", "client_conf_dir", "cluster_command", "cluster_env"]

#: What ``flink run -pym`` runs: this package's ``__main__``.
SQL_FILE_MODULE = "flink_llm_udf.tools.sql_file"


def client_conf_dir(args: argparse.Namespace) -> Path | None:
    """The conf dir ``flink run`` should read: --conf-dir, $FLINK_CONF_DIR, or the local cluster's."""
    if args.conf_dir:
        return Path(args.conf_dir).resolve()
    if os.environ.get("FLINK_CONF_DIR"):
        return Path(os.environ["FLINK_CONF_DIR"]).resolve()
    candidate = Path(args.workdir) / "conf"
    return candidate.resolve() if (candidate / "config.yaml").is_file() else None


def cluster_command(args: argparse.Namespace, conf_dir: Path | None = None) -> list[str]:
    """The ``bin/flink run`` command that re-runs this tool with ``args.file`` on a cluster.

    A job's Python workers use the *client's* ``python.executable`` (Flink's default is plain
    ``python``), so without a conf dir that names one, this interpreter is passed as ``-pyexec``.
    """
    config = read_conf_dir(conf_dir)
    jobmanager = args.jobmanager
    if jobmanager is None:
        host = config.get("rest.address", "127.0.0.1")
        jobmanager = f"{host}:{config.get('rest.port', 8081)}"
    command = [str(find_flink_home() / "bin" / "flink"), "run", "-m", jobmanager]
    command += ["-pyclientexec", sys.executable]
    pyexec = args.pyexec or (None if config.get("python.executable") else sys.executable)
    if pyexec:
        command += ["-pyexec", pyexec]
    if args.pyfiles:
        files = ",".join(str(Path(f).resolve()) for f in args.pyfiles.split(",") if f)
        command += ["-pyfs", files]
    # Long options only: `flink run` stops parsing its own options at the first unknown one.
    command += ["-pym", SQL_FILE_MODULE, "--file", str(Path(args.file).resolve())]
    command += ["--max-rows", str(args.max_rows)]
    for item in args.set:
        command += ["--set", item]
    if args.detached:
        command.append("--detached")
    return command


def cluster_env(conf_dir: Path | None) -> dict[str, str]:
    """Environment of ``flink run``: its conf and log dirs, and this package on the client's path."""
    env = clean_environ()  # never inherit a local PyFlink run's loopback address (PYFLINK_PROCESS_VARIABLES)
    if conf_dir is not None:
        env["FLINK_CONF_DIR"] = str(conf_dir)
        sibling_log = conf_dir.parent / "log"
        if sibling_log.is_dir():  # a `flink-llm cluster` workdir: client logs beside the daemons'
            env.setdefault("FLINK_LOG_DIR", str(sibling_log))
    env.setdefault("FLINK_LOG_DIR", str(Path(tempfile.gettempdir()) / "flink-llm-log"))
    env.setdefault("FLINK_IDENT_STRING", IDENT)  # names the client log; $USER may be unset
    package_root = str(PACKAGE_PARENT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env
