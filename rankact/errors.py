"""The error tree's root. Every error a user can cause derives from `RankactError`; the command
line prints any of them as one line (`error: ...`, exit status 2), never a traceback. Each layer
declares its branch in its own errors module; this module imports nothing, so the lowest layers
(`rankact.tools`, `rankact.retrieval`) can derive from it without naming a layer above them.

    RankactError
    ├── ToolError (rankact.tools.base)          a tool call failed; the loop turns it into an observation
    │   ├── ToolArgumentError                   arguments that do not validate against the tool's schema
    │   ├── ToolTimeoutError                    the tool ran past its timeout
    │   └── ToolExecutionError                  the tool raised: HttpGetRefused, FileAccessRefused,
    │                                           CalculatorError, MCPConnectionError (rankact.tools.mcp)
    ├── RetrievalError (rankact.retrieval.errors)
    │   ├── IndexFormatError                    not an index folder, damaged, or another format version
    │   ├── EmbedderMismatchError               the index was built with another embedder
    │   └── DocumentError                       adding an existing id, updating or deleting an unknown one
    ├── the agent's branch (rankact.agent.errors): ModelLoadError, BackendError (ServerUnreachable,
    │   TokenIdsUnsupported), TracingError; ParseError (rankact.agent.parser), AgentSetupError
    │   (rankact.agent.build)
    └── the alignment branch (rankact.alignment.errors): task files, datasets, pair files,
        demonstrations, the store, collection, output files, the recorder, command-line values
"""
from __future__ import annotations

__all__ = ["RankactError"]


class RankactError(Exception):
    """Base for errors with a message meant for the user."""
