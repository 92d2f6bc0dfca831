"""The baseline: a general (row-at-a-time) Python UDF doing one blocking request per row.

This is what a first attempt looks like: stdlib ``urllib``, no connection reuse, no
concurrency. Its throughput is about ``1 / latency`` whatever the concurrency setting.
"""

from __future__ import annotations

import json
import urllib.request

from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, UserDefinedScalarFunctionWrapper, udf


class NaiveCompletion(ScalarFunction):
    """STRING -> STRING: POST one chat completion per row and wait for it."""

    def __init__(self, url: str, model: str, timeout_s: float = 60.0) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s

    def eval(self, text: str | None) -> str | None:
        if text is None:
            return None
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": text}]}).encode(
            "utf-8"
        )
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read())
        return payload["choices"][0]["message"]["content"]


def naive_complete_udf(base_url: str, model: str) -> UserDefinedScalarFunctionWrapper:
    """The baseline UDF for ``base_url`` (an OpenAI base URL ending in ``/v1``)."""
    return udf(
        NaiveCompletion(base_url.rstrip("/") + "/chat/completions", model), result_type=DataTypes.STRING()
    )
