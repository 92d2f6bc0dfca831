"""How one kind of call is made: the request spec, body encoder, prompt template and output check.

A function's own configuration is one plan; per-call options and structured output make others,
built once per distinct (options, output) and reused, so a constant SQL argument costs nothing
per row.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._call_options import CallOptions
from ._engine_settings import EngineSettings
from ._errors import InvalidReplyError
from ._provider import TASK_CHAT, OpenAICompatProvider
from ._structured import (
    InvalidOutputError,
    OutputValidator,
    classification_schema,
    parse_labels,
    response_format_json_schema,
    schema_from_argument,
    schema_instruction,
)
from ._templates import PromptTemplate
from ._wire import BodyTemplates, CallSpec, chat_value, resolve_call, single_embedding

__all__ = ["CallPlan", "OutputSpec", "PlanCache", "build_plan", "output_spec"]

Parse = Callable[[Any], tuple[Any, tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Structured output a call asks for: a JSON schema (canonical text, so it can key a plan).

    With ``label`` the row's value is the object's ``label`` (classification), else the object.
    """

    schema_json: str
    name: str = "row"
    label: bool = False
    #: raises ``ValueError`` / ``TypeError`` / ``ArithmeticError`` for a valid reply the caller
    #: still cannot hold (a Flink ROW: a date that is no date, 300 in a TINYINT); not part of
    #: equality, since equal schemas come from equal types
    check: Callable[[Any], object] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        schema: Mapping[str, Any],
        name: str = "row",
        *,
        label: bool = False,
        check: Callable[[Any], object] | None = None,
    ) -> OutputSpec:
        # property order kept (models answer in the order shown); equal input, equal text
        return cls(json.dumps(schema, separators=(",", ":"), ensure_ascii=False), name, label, check)

    @property
    def schema(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.schema_json)
        return loaded


def output_spec(
    schema: str | Mapping[str, Any] | None = None, labels: str | Sequence[str] | None = None
) -> OutputSpec | None:
    """Structured output from a schema (a Flink ROW type string, JSON-schema text or mapping) or
    from classification labels (the value is then one of them); None for neither."""
    if schema is not None and labels is not None:
        raise ValueError("give a schema or labels, not both")
    if labels is not None:
        return OutputSpec.of(classification_schema(parse_labels(labels)), "label", label=True)
    if schema is None:
        return None
    return OutputSpec.of(schema_from_argument(schema) if isinstance(schema, str) else dict(schema))


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything that differs between kinds of calls of one engine."""

    spec: CallSpec
    bodies: BodyTemplates
    template: PromptTemplate | None = None
    output: OutputSpec | None = None
    validator: OutputValidator | None = None
    #: the request asks for ``json_schema`` (an ``auto`` plan falls back if the server refuses)
    asks_json_schema: bool = False
    fallback_allowed: bool = False
    invalid_output_retries: int = 0
    model: str | None = None

    def parser(self) -> Parse:
        """A reply parser for one row: checks structured output, counting that row's invalid replies."""
        if self.spec.task != TASK_CHAT:
            return single_embedding
        validator, output = self.validator, self.output
        if validator is None or output is None:
            return chat_value
        allowed = self.invalid_output_retries
        invalid = 0

        def parse(payload: Any) -> tuple[Any, tuple[str, ...]]:
            nonlocal invalid
            content, choices = chat_value(payload)
            try:
                value = validator.parse(content)
                if output.check is not None:
                    try:
                        output.check(value)
                    except (ValueError, TypeError, ArithmeticError, KeyError) as exc:
                        raise InvalidOutputError(f"the reply does not fit the result type: {exc}") from None
            except InvalidOutputError as exc:
                invalid += 1
                raise InvalidReplyError(str(exc), retryable=invalid <= allowed) from None
            except Exception as exc:  # the schema itself cannot be checked (e.g. a $ref to nowhere)
                raise InvalidReplyError(f"the schema cannot be checked: {exc}", retryable=False) from None
            return (value["label"] if output.label else value), choices

        return parse


def build_plan(
    provider: OpenAICompatProvider,
    settings: EngineSettings,
    options: CallOptions | None,
    output: OutputSpec | None,
    *,
    json_schema_refused: bool,
    environ: Mapping[str, str] | None,
) -> CallPlan:
    """The plan for calls with ``options`` and ``output`` on ``provider`` and ``settings``."""
    if options is not None:
        if options.provider_changes():
            provider = provider.replace(**options.provider_changes())
        if options.settings:
            settings = dataclasses.replace(settings, **dict(options.settings))
    model = None if options is None else options.model
    text = settings.prompt_template
    template = None if text is None else PromptTemplate.parse(text)
    if output is None:
        spec = resolve_call(provider, environ)
        return CallPlan(spec, BodyTemplates(spec), template, model=model)
    mode = settings.structured_output
    schema = output.schema
    json_object = mode == "json_object" or (mode == "auto" and json_schema_refused)
    if json_object:
        prompt = "\n\n".join(p for p in (provider.system_prompt, schema_instruction(schema)) if p)
        provider = provider.replace(system_prompt=prompt, response_format="json_object")
    spec = resolve_call(provider, environ)
    if not json_object:
        body = {**spec.base_body, "response_format": response_format_json_schema(schema, output.name)}
        spec = dataclasses.replace(spec, base_body=body)
    return CallPlan(
        spec,
        BodyTemplates(spec),
        template,
        output,
        OutputValidator(schema),
        asks_json_schema=not json_object,
        fallback_allowed=mode == "auto",
        invalid_output_retries=settings.invalid_output_retries,
        model=model,
    )


class PlanCache:
    """Plans by (options, output), least recently used first out: per-row options stay bounded."""

    def __init__(self, max_plans: int = 256) -> None:
        self._plans: OrderedDict[tuple[CallOptions | None, OutputSpec | None], CallPlan] = OrderedDict()
        self._max = max_plans

    def get(
        self, key: tuple[CallOptions | None, OutputSpec | None], build: Callable[[], CallPlan]
    ) -> CallPlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = build()
            if len(self._plans) > self._max:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def clear(self) -> None:
        self._plans.clear()
