"""The agent layer's branch of the error tree (the root, `RankactError`, and the whole tree are
drawn in `rankact.errors`). Each is printed by the command line as one line.

    RankactError (rankact.errors)
    ├── ModelLoadError        a model path, file or package that cannot be loaded (rankact.agent.llm)
    ├── BackendError          a backend could not produce a completion: HTTP error, no server (rankact.agent.llm)
    │   ├── ServerUnreachable     no HTTP answer came back after the retries: an outage
    │   ├── TokenIdsUnsupported   the server answers but returns no token ids
    │   └── MalformedReply        a reply that arrived but makes no sense (rankact.agent.llm.openai_http;
    │                             its endpoint is benched and a pool tries another)
    ├── EndpointsFailed, ReplyTooLarge   a pool's transport signals, also httpx.TransportError
    │                         (rankact.agent.llm.endpoint_pool; the backend words them as a BackendError)
    ├── ParseError            model output that is not a valid ReAct step (rankact.agent.parser; the
    │                         loop turns it into an observation with a hint)
    ├── AgentSetupError       a bad index folder, a tool that is not available (rankact.agent.build)
    └── TracingError          tracing asked for but not possible: unknown exporter, the otel
                              extra not installed (rankact.agent.tracing)
"""
from __future__ import annotations

from rankact.errors import RankactError

__all__ = ["BackendError", "ModelLoadError", "RankactError", "ServerUnreachable", "TokenIdsUnsupported",
           "TracingError"]


class ModelLoadError(RankactError):
    """A model path, file or package could not be loaded."""


class BackendError(RankactError):
    """A backend failed to produce a completion (HTTP error, unreachable server, ...)."""


class ServerUnreachable(BackendError):
    """No HTTP answer came back after the retries (refused, reset, timed out): an outage."""


class TokenIdsUnsupported(BackendError):
    """The server answered, but returns no token ids: token-in/token-out cannot run on it."""


class TracingError(RankactError):
    """OpenTelemetry tracing was asked for but cannot be set up (rankact.agent.tracing)."""
