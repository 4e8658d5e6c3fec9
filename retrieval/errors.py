"""Errors the retrieval package raises: a branch of the error tree rooted in `rankact.errors`
(which imports nothing, so retrieval still names no layer above it)."""
from rankact.errors import RankactError


class RetrievalError(RankactError):
    """Base: something a user can cause (bad index folder, wrong embedder, unknown id)."""


class IndexFormatError(RetrievalError):
    """The folder is not a retrieval index, or it is damaged or of another format version."""


class EmbedderMismatchError(RetrievalError):
    """The index was built with another embedder than the one given to load it."""


class DocumentError(RetrievalError):
    """Adding an existing document id, updating or deleting an unknown one."""
