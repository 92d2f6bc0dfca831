"""Run a ``.sql`` file statement by statement through PyFlink's ``TableEnvironment``.

The apache-flink wheel has no ``sql-client.sh`` that works (it lacks the SQL gateway), so
``flink-llm sql`` stands in for it::

    flink-llm sql -f job.sql [--set key=value ...]                 # local mini-cluster, this process
    flink-llm sql -f job.sql --cluster [--jobmanager 127.0.0.1:8081] [--detached]

* Statements are split at ``;`` outside single-quoted strings, backquoted identifiers, ``--``
  line comments and ``/* */`` comments; ``EXECUTE STATEMENT SET BEGIN ... END;`` stays one
  statement, and the sql-client's ``BEGIN STATEMENT SET; ... END;`` is run as one statement set.
* ``SET 'key' = 'value';`` sets a table option (``t_env.get_config().set``), ``SET;`` lists the
  ones this file set, ``RESET 'key';`` / ``RESET;`` removes them again. Python functions do not
  see table options, only job parameters: ``SET 'ai.model' = '...';`` (any ``ai.*`` key) is also
  merged into ``pipeline.global-job-parameters``, quoted the way Flink parses it.
* Everything else goes to ``TableEnvironment.execute_sql`` in streaming mode. ``INSERT`` and
  statement sets wait for their job to end (unless ``--detached``), ``SELECT`` prints at most
  ``--max-rows`` rows and then cancels its job.
* ``--cluster`` re-runs this module as ``bin/flink run -m HOST:PORT -pym flink_llm_udf.tools.sql_file``,
  so the statements run as jobs on that cluster. Python UDFs named in ``CREATE FUNCTION ...
  LANGUAGE PYTHON`` must be importable by the cluster's Python workers: installed in their
  environment, or shipped with ``SET 'python.files' = '...';`` (or ``--pyfiles``).

A failing statement stops the run; the message names the statement's number, line and first line.

Modules, one job each: ``statements`` (the lexer: statements, SET/RESET, statement kinds),
``execute`` (:class:`StatementExecutor` and :func:`run_file`: statements through the Table
API), ``submit`` (the ``bin/flink run`` command and environment for ``--cluster``) and ``cli``
(the command line; ``__main__`` runs it).
"""

from __future__ import annotations

from .cli import main
from .execute import (
    JOB_PARAMETER_PREFIX,
    JOB_PARAMETERS,
    SqlRunnerError,
    StatementExecutor,
    job_parameters,
    python_files_import_paths,
    run_file,
)
from .statements import Statement, parse_set, split_statements, statement_kind
from .submit import client_conf_dir, cluster_command, cluster_env

__all__ = [
    "JOB_PARAMETERS",
    "JOB_PARAMETER_PREFIX",
    "SqlRunnerError",
    "Statement",
    "StatementExecutor",
    "client_conf_dir",
    "cluster_command",
    "cluster_env",
    "job_parameters",
    "main",
    "parse_set",
    "python_files_import_paths",
    "run_file",
    "split_statements",
    "statement_kind",
]
