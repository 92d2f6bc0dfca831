"""A standalone Flink cluster on this machine, run from the apache-flink wheel.

The wheel ships a complete Flink distribution in ``site-packages/pyflink`` (``bin/``, ``lib/``,
``opt/``, ``plugins/``). :class:`StandaloneCluster` starts one JobManager and N TaskManagers
from it with the wheel's own ``bin/jobmanager.sh start`` / ``bin/taskmanager.sh start`` (no ssh,
unlike ``start-cluster.sh``), and keeps everything it writes in a working directory::

    <workdir>/conf/     config.yaml generated from flink_llm_udf/tools/cluster/conf/config.yaml + overrides,
                        the wheel's log4j/logback files, masters, workers
    <workdir>/log/      FLINK_LOG_DIR: one .log and .out per process
    <workdir>/pid/      FLINK_PID_DIR: the daemons' PID files
    <workdir>/plugins/  FLINK_PLUGINS_DIR: only the Prometheus reporter

so nothing is written into site-packages. All Flink addresses are 127.0.0.1. Two things still
listen on every interface and cannot be moved by configuration: the Prometheus reporter's HTTP
server and PyFlink's Python-worker plumbing (Beam gRPC servers) while a Python job runs.

Command line (``flink-llm cluster ...``)::

    flink-llm cluster start  [--workdir .cluster] [--taskmanagers 2] [--python PATH]
                             [--rest-port 8081] [--rpc-port 6123] [--set key=value ...]
    flink-llm cluster status [--workdir .cluster]
    flink-llm cluster stop   [--workdir .cluster]

Python API (tests, benchmarks)::

    with StandaloneCluster(tmp_path / "cluster", rest_port=18081, rpc_port=16123) as cluster:
        result = cluster.submit_python("job.py", ["--out", str(out)])
        cluster.wait_for_job(result.job_id, {"FINISHED"}, timeout=60)

Modules, one job each: ``standalone`` (:class:`StandaloneCluster`: start, watch, stop),
``rest`` (:class:`ClusterClient`: the REST API and ``flink run``), ``flink_config`` (the
configuration a cluster is started with), ``environment`` (the distribution and the
environment of Flink processes), ``processes`` (``/proc``, ports, signals), ``errors``
(:class:`ClusterError`) and ``cli`` (the command line).

Nothing here imports pyflink: starting and stopping a cluster costs no JVM in this process.
"""

from __future__ import annotations

from .cli import main
from .environment import IDENT, PYFLINK_PROCESS_VARIABLES, SECRET_VARIABLES, clean_environ, find_flink_home
from .errors import ClusterError
from .flink_config import CONFIG_PATH, flatten_config
from .rest import ClusterClient, SubmitResult
from .standalone import StandaloneCluster

__all__ = [
    "CONFIG_PATH",
    "IDENT",
    "PYFLINK_PROCESS_VARIABLES",
    "SECRET_VARIABLES",
    "ClusterClient",
    "ClusterError",
    "StandaloneCluster",
    "SubmitResult",
    "clean_environ",
    "find_flink_home",
    "flatten_config",
    "main",
]
