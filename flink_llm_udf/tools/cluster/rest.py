"""A client of a running Flink cluster's REST endpoint: job status over HTTP, submission with ``flink run``.

``flink run -m HOST:PORT`` submits through the same REST endpoint, so one address serves both.
Nothing here imports pyflink: the client costs no JVM in this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .environment import clean_environ, find_flink_home, without_secrets
from .errors import ClusterError, last_lines

__all__ = ["TERMINAL_JOB_STATES", "ClusterClient", "SubmitResult"]

#: Job states a job does not leave again.
TERMINAL_JOB_STATES = frozenset({"FINISHED", "FAILED", "CANCELED", "SUSPENDED"})
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What ``flink run`` did: the job it submitted (if any) and its exit status and output."""

    job_id: str | None
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> SubmitResult:
        """Return self, or raise :class:`ClusterError` with the output's tail if ``flink run`` failed."""
        if self.returncode != 0:
            raise ClusterError(
                f"flink run exited with {self.returncode}:\n{last_lines(self.stdout + self.stderr, 40)}"
            )
        return self


class ClusterClient:
    """The REST endpoint of a Flink cluster on 127.0.0.1:``rest_port``, and ``flink run`` against it.

    ``python`` is the client's and the job's Python (default: this interpreter); ``flink_home``
    the distribution whose ``bin/flink`` submits (default: the wheel's); ``env`` is added to the
    environment of ``flink run`` (which Flink writes into its logs: no secrets).
    """

    def __init__(
        self,
        rest_port: int = 8081,
        *,
        python: str | os.PathLike[str] | None = None,
        flink_home: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.rest_port = rest_port
        self.python = str(python or sys.executable)
        self.flink_home = Path(flink_home) if flink_home else find_flink_home()
        self.extra_env = dict(env or {})

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<rest_port>``: the REST API and the web UI."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def jobmanager_address(self) -> str:
        """``127.0.0.1:<rest_port>``, the value of ``flink run -m``."""
        return f"127.0.0.1:{self.rest_port}"

    def flink_env(self) -> dict[str, str]:
        """The environment for Flink scripts: this process's, cleaned, plus ``env``, without secrets."""
        # Also drops FLINK_HOME & co.: pointing elsewhere, they would mix two distributions.
        env = clean_environ()
        env.update(self.extra_env)
        return without_secrets(env)

    # ------------------------------------------------------------------ REST
    def rest(self, path: str, *, method: str = "GET", timeout: float = 5.0) -> Any:
        """GET (or PATCH, ...) ``path`` on the REST API; the decoded JSON."""
        request = urllib.request.Request(self.rest_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ClusterError(f"{method} {self.rest_url}{path} failed: {exc}") from exc
        return json.loads(body) if body else None

    def overview(self) -> dict[str, Any]:
        """``/overview``: TaskManagers, slots, jobs by state, Flink version."""
        return self.rest("/overview")

    def job(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<id>``: name, state, vertices."""
        return self.rest(f"/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        """``/jobs/overview``: every job the cluster knows, newest first."""
        return self.rest("/jobs/overview").get("jobs", [])

    def cancel_job(self, job_id: str) -> None:
        """Ask the cluster to cancel a job (returns at once; wait with :meth:`wait_for_job`)."""
        self.rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")

    def wait_for_job(
        self,
        job_id: str,
        states: Iterable[str] = ("FINISHED",),
        timeout: float = 120.0,
        poll: float = 0.5,
    ) -> str:
        """Poll until the job is in one of ``states``; return that state.

        Raises :class:`ClusterError` on timeout, or when the job reaches a terminal state that
        was not asked for (with the root exception's first lines for a failed job).
        """
        wanted = {s.upper() for s in states}
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self.job(job_id)["state"]
            if state in wanted:
                return state
            if state in TERMINAL_JOB_STATES:
                raise ClusterError(
                    f"job {job_id} ended {state}, not {sorted(wanted)}{self.job_failure(job_id)}"
                )
            time.sleep(poll)
        raise ClusterError(f"job {job_id} still {state} after {timeout} s (waiting for {sorted(wanted)})")

    def job_failure(self, job_id: str) -> str:
        """``":\\n"`` and the first lines of the job's root exception, or ``""`` if it has none."""
        try:
            root = self.rest(f"/jobs/{job_id}/exceptions").get("root-exception") or ""
        except ClusterError:
            return ""
        return ":\n" + "\n".join(root.splitlines()[:15]) if root else ""

    # ------------------------------------------------------------------ flink run
    def submit_python(
        self,
        script: str | os.PathLike[str] | None,
        args: Sequence[str] = (),
        *,
        module: str | None = None,
        pyfiles: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        detached: bool = False,
        timeout: float = 300.0,
        flink_args: Sequence[str] = (),
    ) -> SubmitResult:
        """Run ``bin/flink run -m 127.0.0.1:<rest_port> [-d] -py script [-pyfs ...] args``.

        ``module`` runs ``-pym module`` instead of a script. ``pyfiles`` become ``-pyfs`` (shipped
        to every Python worker and put on its path). Attached runs return when the job ends;
        ``detached`` ones once it is submitted. The job id is parsed from the client's output
        (None if it printed none). ``timeout`` bounds the whole client run.
        """
        command = [str(self.flink_home / "bin" / "flink"), "run", "-m", self.jobmanager_address]
        if detached:
            command.append("-d")
        command += ["-pyclientexec", self.python, *flink_args]
        files = [str(Path(f).resolve()) for f in pyfiles]
        if files:
            command += ["-pyfs", ",".join(files)]
        if module:
            command += ["-pym", module]
        elif script is not None:
            command += ["-py", str(Path(script).resolve())]
        else:
            raise ValueError("submit_python needs a script or a module")
        command += list(args)
        run_env = self.flink_env()
        run_env.update(env or {})
        began = time.monotonic()
        try:
            done = subprocess.run(
                command, env=run_env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"flink run did not finish within {timeout} s: {command}") from exc
        output = done.stdout + done.stderr
        ids = _JOB_ID.findall(output)
        return SubmitResult(
            job_id=ids[-1] if ids else None,
            returncode=done.returncode,
            stdout=done.stdout,
            stderr=done.stderr,
            seconds=time.monotonic() - began,
        )
