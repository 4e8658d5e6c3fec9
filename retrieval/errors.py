"""Errors the retrieval package raises. `retrieval` imports nothing of ours, so callers
(the CLI) translate these into their own user-facing errors."""


class RetrievalError(Exception):
    """Base: something a user can cause (bad index folder, wrong embedder, unknown id)."""


class IndexFormatError(RetrievalError):
    """The folder is not a retrieval index, or it is damaged or of another format version."""


class EmbedderMismatchError(RetrievalError):
    """The index was built with another embedder than the one given to load it."""


class DocumentError(RetrievalError):
    """Adding an existing document id, updating or deleting an unknown one."""
