"""The error tree. Every error a user can cause derives from `RankactError`; the command
line prints any of them as one line (`error: ...`, exit status 2), never a traceback.

    RankactError
    ├── ModelLoadError        a model path, file or package that cannot be loaded (agent.llm)
    ├── BackendError          a backend could not produce a completion: HTTP error, no server (agent.llm)
    │   └── MalformedReply    a reply that arrived but makes no sense (agent.llm.openai_http; its
    │                         endpoint is benched and a pool tries another)
    ├── EndpointsFailed, ReplyTooLarge   a pool's transport signals, also httpx.TransportError
    │                         (agent.llm.endpoint_pool; the backend words them as a BackendError)
    ├── ParseError            model output that is not a valid ReAct step (agent.parser; the
    │                         loop turns it into an observation with a hint)
    ├── AgentSetupError       a bad index folder, a tool that is not available (agent.build)
    ├── TracingError          tracing asked for but not possible: unknown exporter, the otel
    │                         extra not installed (agent.tracing)
    └── ...                   the layers above add their branches (task files, the store,
                              pair files, datasets, the demo, command-line values), each
                              drawn in that layer's own errors module

    ToolError (tools.base)    a tool call failed; the loop turns it into an observation
    ├── ToolArgumentError     arguments that do not validate against the tool's schema
    ├── ToolTimeoutError      the tool ran past its timeout
    └── ToolExecutionError    the tool raised: HttpGetRefused, FileAccessRefused, CalculatorError,
                              MCPConnectionError (an MCP server that cannot start or be reached,
                              or died: one line at `--mcp`, an observation mid-run; tools.mcp)

    RetrievalError (retrieval.errors)
    ├── IndexFormatError      not an index folder, damaged, or another format version
    ├── EmbedderMismatchError the index was built with another embedder
    └── DocumentError         adding an existing id, updating or deleting an unknown one

`tools` and `retrieval` sit below this package and import nothing of ours (the arrows
point one way), so their two bases cannot inherit from `RankactError`. They are the
other members of `user_errors()`, what every boundary that meets a person catches:
`rankact.agent.build.load_index` turns retrieval errors into `AgentSetupError`, the loop turns tool
errors into observations, and the CLI prints any of the three as one line.
"""
from __future__ import annotations


class RankactError(Exception):
    """Base for errors with a message meant for the user."""


class ModelLoadError(RankactError):
    """A model path, file or package could not be loaded."""


class BackendError(RankactError):
    """A backend failed to produce a completion (HTTP error, unreachable server, ...)."""


class ServerUnreachable(BackendError):
    """No HTTP answer came back after the retries (refused, reset, timed out): an outage."""


class TokenIdsUnsupported(BackendError):
    """The server answered, but returns no token ids: token-in/token-out cannot run on it."""


class TracingError(RankactError):
    """OpenTelemetry tracing was asked for but cannot be set up (agent.tracing)."""


def user_errors() -> tuple[type[Exception], ...]:
    """What a boundary that meets a person catches (the CLI): `RankactError` and the two bases
    of the layers below. Imported on call, so importing this module stays free."""
    from rankact.retrieval.errors import RetrievalError
    from rankact.tools.base import ToolError

    return (RankactError, RetrievalError, ToolError)
