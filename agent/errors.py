"""Errors a user can cause. The CLI prints these as one line, without a traceback."""


class RankactError(Exception):
    """Base for errors with a message meant for the user."""


class ModelLoadError(RankactError):
    """A model path, file or package could not be loaded."""


class BackendError(RankactError):
    """A backend failed to produce a completion (HTTP error, unreachable server, ...)."""
