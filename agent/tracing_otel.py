"""The spans of one agent run, and the SDK set-up behind `RANKACT_OTEL` / `--trace`.

Imported only once tracing is on (`rankact.agent.tracing`). `traced_core` wraps a run's core, the
generator of requests and events every driver shares, and reads the spans off what passes:

    invoke_agent rankact                     the run
    └── react_step                           one per step (StepStart .. next StepStart / Done)
        ├── chat {model}                     a Chat request (unguided runs)
        ├── text_completion {model}          a Continue or Score request (guided decoding)
        └── execute_tool {tool}              a ToolCall

Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), plus
`rankact.trajectory.id` on every span, so a span leads to the stored trajectory. Errors are
recorded on the span they happen in (status ERROR, an `exception` event, `error.type`): a
failed LLM call on its LLM span, a failed tool on its tool span, and every error event the
loop emits (parse, validation, tool, timeout, backend) on its step span.

Content (tool arguments, results and error text, and validation messages, which echo the
arguments) is recorded only with content capture on; with it off a tool error keeps its type
and kind. Every text attribute is cut to the observation bound
(`rankact.tools.limits`): a tool can return or raise megabytes.

Every span is started with an explicit parent context, never the implicit current span:
`run_batch` advances many runs from one thread while their tools run in others, and each run
must still get its own tree under the context that was current when it started.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from typing import IO, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rankact.agent import events as ev
from rankact.agent.errors import TracingError
from rankact.agent.llm import Completion
from rankact.agent.requests import Chat, Continue, Score, ToolCall, ToolCalls
from rankact.tools.limits import MAX_OBSERVATION_CHARS, bounded

TRAJECTORY_ID = "rankact.trajectory.id"
AGENT_NAME = "rankact"
# The GenAI conventions leave recording prompts, arguments and results off by default (they
# may hold personal data); this is the variable the OpenTelemetry GenAI instrumentations use.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Backends that run in this process: their LLM spans are INTERNAL, a server's are CLIENT.
_IN_PROCESS = {"transformers", "ctranslate2", "scripted"}
# The exception type an error event stands for (the loop reports kind and message only).
_ERROR_TYPES = {"parse": "ParseError", "validation": "ToolArgumentError", "tool": "ToolError",
                "timeout": "TimeoutError", "unknown_tool": "UnknownToolError", "backend": "BackendError"}
# Error kinds whose message is content: a tool's own error text, or argument values echoed by
# validation. The others are the parser's or the loop's own phrases (a tool name at most).
_CONTENT_KINDS = {"tool", "validation"}
# Exporters with no attribute limit of their own set (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT) get this.
_ATTRIBUTE_LIMIT = 4 * MAX_OBSERVATION_CHARS


def make_tracer(provider: Any = None) -> trace.Tracer:
    try:
        from importlib.metadata import version

        rankact_version = version("rankact")
    except Exception:  # noqa: BLE001 - running from a source tree
        rankact_version = None
    return trace.get_tracer("rankact.agent", rankact_version, tracer_provider=provider)


def global_sdk_provider() -> Any:
    """The global provider if the application (or `opentelemetry-instrument`) set a real one."""
    provider = trace.get_tracer_provider()
    return None if isinstance(provider, trace.ProxyTracerProvider) else provider


def sdk_provider(exporter: str, *, out: IO[str] | None = None) -> Any:
    """An SDK TracerProvider exporting to `exporter`, made the global one if none is set (so
    other instrumented libraries in the process join the same traces)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "rankact"}))
    provider = TracerProvider(resource=resource, span_limits=_span_limits())  # sampler: OTEL_TRACES_SAMPLER
    if exporter == "console":
        # One JSON object per line, written as each span ends: greppable, and a file of them loads as JSONL.
        console = ConsoleSpanExporter(out=out or sys.stderr,
                                      formatter=lambda span: span.to_json(indent=None) + os.linesep)
        provider.add_span_processor(SimpleSpanProcessor(console))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    if global_sdk_provider() is None:
        trace.set_tracer_provider(provider)
    return provider


def _span_limits() -> Any:
    """The SDK's limits from OTEL_*_LIMIT variables, with attribute values bounded where none is set
    (the SDK's own default is no bound: one attribute could carry a whole tool output)."""
    from opentelemetry.sdk.trace import SpanLimits

    names = ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    if any(os.environ.get(name) for name in names):
        return SpanLimits()
    return SpanLimits(max_attribute_length=_ATTRIBUTE_LIMIT, max_span_attribute_length=_ATTRIBUTE_LIMIT)


def _otlp_exporter() -> Any:
    """The OTLP exporter installed (HTTP first, then gRPC); it reads OTEL_EXPORTER_OTLP_*."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingError("the otlp exporter needs: pip install opentelemetry-exporter-otlp-proto-http") from exc
    return OTLPSpanExporter()


def traced_core(tracer: trace.Tracer, core: Generator[Any, Any, None], agent: Any,
                trajectory_id: str) -> Generator[Any, Any, None]:
    """`core`, item for item and answer for answer, with the run's spans around it."""
    spans = _RunSpans(tracer, agent, trajectory_id)
    value = None
    try:
        while True:
            try:
                item = core.send(value)
            except StopIteration:
                return
            spans.saw(item)
            value = yield item
            if isinstance(item, (Chat, Continue, Score, ToolCall)):
                spans.answered(item, value)
    except GeneratorExit:  # the driver stopped early (e.g. `run` returns at Done)
        core.close()
        raise
    except BaseException as exc:  # a bug in the loop: it ends the run
        spans.failed(exc)
        raise
    finally:
        spans.end_all()


def _capture_content() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class _RunSpans:
    def __init__(self, tracer: trace.Tracer, agent: Any, trajectory_id: str) -> None:
        self.tracer = tracer
        info = agent.llm.info
        self.model = info.name
        self.llm_kind = SpanKind.INTERNAL if info.backend in _IN_PROCESS else SpanKind.CLIENT
        self.common = {TRAJECTORY_ID: trajectory_id}
        self.llm_attributes = {"gen_ai.request.model": info.name, "gen_ai.provider.name": info.backend}
        self.capture = _capture_content()
        self.step_index = -1
        self.step: Span | None = None
        self.call: Span | None = None  # the LLM or tool span waiting for its answer
        self.batch: list[Span] = []  # a native turn's concurrent tool calls, one span each
        # The caller's context (a request handler's span, say), read once, when the run starts.
        self.run = tracer.start_span(
            f"invoke_agent {AGENT_NAME}", context=otel_context.get_current(), kind=SpanKind.INTERNAL,
            attributes={**self.common, **self.llm_attributes, "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": AGENT_NAME, "rankact.agent.guided": bool(agent.guided),
                        "rankact.agent.max_steps": agent.max_steps})

    def _start(self, name: str, attributes: dict, kind: SpanKind = SpanKind.INTERNAL) -> Span:
        parent = self.step if self.step is not None else self.run
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent), kind=kind,
                                      attributes={**self.common, **attributes})

    # ---- what the core yields -------------------------------------------------------
    def saw(self, item: Any) -> None:
        if isinstance(item, Chat | Continue | Score):
            self.call = self._start_llm(item)
        elif isinstance(item, ToolCalls):  # several calls at once: each is its own tool span
            self.batch = [self._start_tool(call) for call in item.calls]
        elif isinstance(item, ToolCall):
            self.call = self._start_tool(item)
        elif isinstance(item, ev.StepStart):
            self._end_step()
            self.step_index = item.index
            self.step = self._start("react_step", {"rankact.step.index": item.index,
                                                   "rankact.step.forced_answer": item.forced_answer})
        elif isinstance(item, ev.Action) and self.step is not None:
            self.step.set_attribute("rankact.step.action", item.tool)
        elif isinstance(item, ev.FinalAnswer) and self.step is not None:
            self.step.set_attribute("rankact.step.final_answer", True)
        elif isinstance(item, ev.Error) and self.step is not None:
            message = item.message if self.capture or item.kind not in _CONTENT_KINDS else None
            _record(self.step, _ERROR_TYPES.get(item.kind, item.kind), message, item.kind)
        elif isinstance(item, ev.Done):
            self._finish_run(item.trajectory)

    def _start_llm(self, request: Chat | Continue | Score) -> Span:
        operation = "chat" if isinstance(request, Chat) else "text_completion"
        attributes = {**self.llm_attributes, "gen_ai.operation.name": operation,
                      "rankact.llm.primitive": type(request).__name__.lower()}
        if isinstance(request, Score):
            attributes["rankact.llm.options"] = len(request.options)
        else:
            config = request.config
            attributes.update({"gen_ai.request.max_tokens": config.max_new_tokens,
                               "gen_ai.request.temperature": config.temperature,
                               "gen_ai.request.top_p": config.top_p})
            if config.seed is not None:
                attributes["gen_ai.request.seed"] = config.seed
            if config.stop:
                attributes["gen_ai.request.stop_sequences"] = list(config.stop)
        return self._start(f"{operation} {self.model}", attributes, self.llm_kind)

    def _start_tool(self, call: ToolCall) -> Span:
        tool = call.tool
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool.name,
                      "gen_ai.tool.type": "function",
                      # ReAct text has no call ids: the trajectory and step make one, unique per trace.
                      "gen_ai.tool.call.id": f"{self.common[TRAJECTORY_ID]}-{self.step_index}"}
        if getattr(tool, "description", ""):
            attributes["gen_ai.tool.description"] = bounded(tool.description)
        if self.capture:
            args = call.args
            attributes["gen_ai.tool.call.arguments"] = bounded(
                args.model_dump_json() if hasattr(args, "model_dump_json") else json.dumps(args, default=str))
        return self._start(f"execute_tool {tool.name}", attributes)

    # ---- the answers the driver sends back ------------------------------------------
    def answered(self, request: Any, value: Any) -> None:
        if isinstance(request, ToolCalls):
            spans, self.batch = self.batch, []
            for call, span, result in zip(request.calls, spans, value, strict=False):
                self._end_call(span, call, result)
            return
        span, self.call = self.call, None
        if span is not None:
            self._end_call(span, request, value)

    def _end_call(self, span: Span, request: Any, value: Any) -> None:
        if isinstance(value, BaseException):
            # A tool's error text is content (it may echo arguments or data); an LLM call's is not.
            _record_exception(span, value, with_message=self.capture or not isinstance(request, ToolCall))
        elif isinstance(value, Completion):
            prompt_ids = len(request.ids) if isinstance(request, Continue) else 0
            span.set_attributes({
                "gen_ai.usage.input_tokens": value.prompt_tokens or prompt_ids,
                "gen_ai.usage.output_tokens": value.completion_tokens or len(value.token_ids or []),
                "gen_ai.response.finish_reasons": [value.finish_reason],
                "gen_ai.response.model": self.model})
        elif isinstance(request, Score):  # one forward over prompt + options, counted as the decoder does
            span.set_attributes({"gen_ai.usage.input_tokens": len(request.ids) * len(request.options),
                                 "gen_ai.usage.output_tokens": 0})
        elif isinstance(request, ToolCall) and self.capture and hasattr(value, "text"):
            span.set_attribute("gen_ai.tool.call.result", bounded(value.text))
        span.end()

    # ---- endings ----------------------------------------------------------------------
    def _finish_run(self, trajectory: Any) -> None:
        self._end_step()
        usage = trajectory.usage
        self.run.set_attributes({
            "rankact.trajectory.status": trajectory.status, "rankact.trajectory.steps": len(trajectory.steps),
            "rankact.trajectory.llm_calls": usage.llm_calls,
            "gen_ai.usage.input_tokens": usage.prompt_tokens, "gen_ai.usage.output_tokens": usage.completion_tokens})
        if trajectory.status == "error":
            message = bounded(str(trajectory.metadata.get("error") or "the run ended with an error"))
            self.run.set_status(Status(StatusCode.ERROR, message))
            self.run.set_attribute("error.type", "backend" if "error" in trajectory.metadata else "parse")
        self.run.end()

    def failed(self, exc: BaseException) -> None:
        for span in (self.call, *self.batch, self.step, self.run):
            if span is not None and span.is_recording():
                _record_exception(span, exc, with_message=True)  # a bug of ours, not content

    def _end_step(self) -> None:
        if self.step is not None:
            self.step.end()
            self.step = None

    def end_all(self) -> None:
        """End whatever is still open (a run stopped early or ended by a bug); no-op after Done."""
        for span in (self.call, *self.batch, self.step, self.run):
            if span is not None and span.is_recording():
                span.end()
        self.call = self.step = None
        self.batch = []


def _record(span: Span, exception_type: str, message: str | None, kind: str) -> None:
    """An error the loop reported as an event (it has the kind and message, not the exception);
    `message` None: content capture is off and the message is content."""
    if message is None:
        span.add_event("exception", {"exception.type": exception_type})
        span.set_status(Status(StatusCode.ERROR, f"{kind} error"))
    else:
        message = bounded(message)
        span.add_event("exception", {"exception.type": exception_type, "exception.message": message})
        span.set_status(Status(StatusCode.ERROR, f"{kind} error: {message}"))
    span.set_attribute("error.type", kind)


def _record_exception(span: Span, exc: BaseException, *, with_message: bool) -> None:
    """`exc` on `span`: its type always; its message and traceback (which repeats the message)
    only `with_message`, and bounded."""
    kind = type(exc).__name__
    if with_message:
        import traceback

        message = bounded(str(exc) or kind)
        stack = bounded("".join(traceback.format_exception(exc)), 4 * MAX_OBSERVATION_CHARS)
        span.record_exception(exc, attributes={"exception.message": message, "exception.stacktrace": stack})
        span.set_status(Status(StatusCode.ERROR, message))
    else:
        span.add_event("exception", {"exception.type": kind})
        span.set_status(Status(StatusCode.ERROR, kind))
    span.set_attribute("error.type", kind)
