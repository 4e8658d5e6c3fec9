"""Opt-in OpenTelemetry traces of agent runs: the switch, and a no-op when it is off.

Off (the default) a run pays one environment lookup and nothing here imports
`opentelemetry`: `traced` hands the run's core back untouched. On, `rankact.agent.tracing_otel`
wraps the core and turns what it yields into spans (one per run, step, LLM call and tool
call, with the GenAI semantic-convention attributes). The core is the one loop `run`,
`stream`, `arun`, `astream` and `run_batch` share, so every driver is traced by this one seam.

Switch it on, any of:
- from code: `rankact.agent.tracing.instrument(tracer_provider)`; without a provider, the global one
  (what the application or `opentelemetry-instrument` configured);
- `RANKACT_OTEL=console|otlp|1`: rankact sets up the SDK itself (`1`: the exporter
  `OTEL_TRACES_EXPORTER` names, default otlp; a global SDK provider already set is used as
  is). The standard `OTEL_*` variables (service name, resource, sampler, OTLP endpoint and
  headers, batch sizes) apply as the SDK reads them;
- the command line: `rankact ask ... --trace console|otlp`.
Needs the `otel` extra (`pip install 'rankact[otel]'`; OTLP also the exporter package).
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Generator
from typing import IO, Any

from rankact.agent.errors import TracingError

ENV = "RANKACT_OTEL"
EXPORTERS = ("console", "otlp")
_OFF = {"", "0", "false", "off", "no", "none"}
_ON = {"1", "true", "on", "yes"}

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_env_seen: str | None = None  # the RANKACT_OTEL value already acted on (set up, or warned about)
_env_lock = threading.Lock()  # runs starting together in several threads set up the SDK once


def instrument(tracer_provider: Any = None) -> None:
    """Trace every run from now on, into `tracer_provider` (default: the global provider)."""
    global _tracer
    try:
        from rankact.agent.tracing_otel import make_tracer
    except ImportError as exc:
        raise TracingError(f"tracing needs the otel extra: pip install 'rankact[otel]' ({exc})") from exc
    _tracer = make_tracer(tracer_provider)


def uninstrument() -> None:
    """Stop tracing (spans already started still end)."""
    global _tracer
    _tracer = None


def is_on() -> bool:
    return _current_tracer() is not None


def configure(exporter: str, *, out: IO[str] | None = None) -> None:
    """Set up the OpenTelemetry SDK with `exporter` (console | otlp; `1` and friends: the one
    `OTEL_TRACES_EXPORTER` names; `0`, `off`: tracing off) and trace every run into it. `out`: where console spans go
    (default stderr), one JSON object per line. Raises TracingError for a bad value or a
    missing package."""
    name = exporter.strip().lower()
    if name in _OFF:
        uninstrument()
        return
    if name in _ON:
        name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower() or "otlp"
        reuse_global = True
    else:
        reuse_global = False
    if name not in EXPORTERS:
        raise TracingError(f"unknown trace exporter {exporter!r}: use one of {', '.join(EXPORTERS)}")
    try:
        from rankact.agent.tracing_otel import global_sdk_provider, sdk_provider
    except ImportError as exc:
        raise TracingError(f"tracing needs the otel extra: pip install 'rankact[otel]' ({exc})") from exc
    provider = global_sdk_provider() if reuse_global else None
    instrument(provider or sdk_provider(name, out=out))


def traced(core: Generator[Any, Any, None], agent: Any, trajectory_id: str) -> Generator[Any, Any, None]:
    """`core` itself when tracing is off, else the same generator with spans around it."""
    tracer = _current_tracer()
    if tracer is None:
        return core
    from rankact.agent.tracing_otel import traced_core

    return traced_core(tracer, core, agent, trajectory_id)


def _current_tracer() -> Any:
    """The tracer, setting it up from RANKACT_OTEL the first time a run sees the variable set.
    A bad value or a missing package warns once and leaves tracing off: telemetry must never
    stop the application it observes."""
    global _env_seen
    if _tracer is not None:
        return _tracer
    value = os.environ.get(ENV, "")
    if value.strip().lower() in _OFF or value == _env_seen:
        return None
    with _env_lock:
        if value != _env_seen:
            _env_seen = value
            try:
                configure(value)
            except TracingError as exc:
                warnings.warn(f"{ENV}={value!r}: tracing stays off: {exc}", RuntimeWarning, stacklevel=4)
    return _tracer
