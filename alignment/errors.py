"""The alignment layer's branch of the error tree (its root, `RankactError`, and the lower
layers' branches are drawn in `rankact.agent.errors`). Each is printed by the CLI as one line.

    RankactError (rankact.agent.errors)
    ├── TaskFileError         a task file that is missing or holds a line that is not a task
    ├── DatasetError          the shared evaluation data is missing or malformed
    ├── PairFileError         a pair file that is missing or holds a line that is not a pair
    ├── DemonstrationError    a demonstration that is malformed or that the agent cannot follow
    ├── NoTrainingSignal      the data leaves a trainer nothing to learn (no pairs, all ties)
    ├── InexactTokenIds       a policy trainer given trajectories without the model's exact ids
    ├── StoreError            the trajectory store refused an operation
    │   ├── NotFoundError         an unknown question, trajectory or annotator id
    │   ├── ConflictError         a write that clashes with what is stored
    │   │   ├── AlreadyStoredError    the same trajectory (same id, same content) is stored: an idempotent re-send
    │   │   └── QuestionClosedError   the question has rankings; post to the version it names
    │   ├── InvalidRankingError   a ranking that does not order exactly its question's trajectories
    │   ├── InvalidFeedbackError  an end user's vote on trajectories it cannot apply to
    │   ├── UnstorableValueError  a value no database of ours stores and reads back (a date before
    │   │                         1970 or in the future, a value the database refuses as data)
    │   └── SchemaVersionError    a database made by another version of rankact
    ├── IncompleteCollection  `collect` could not run some samples (backend down); a rerun retries them
    ├── OutputFileError       a file a command was asked to write cannot be written there
    ├── RecorderError         a recorder that cannot start: bad target, no token, unusable spool folder
    ├── ExportError           an export asked for a format and source that do not go together
    ├── CommandError          a command-line value the options' own checks cannot catch
    └── DemoError             a demo stage failed in a way a user can act on
"""
from __future__ import annotations

from rankact.errors import RankactError

__all__ = ["AlreadyStoredError", "CommandError", "ConflictError", "DatasetError", "DemoError", "DemonstrationError", "ExportError", "IncompleteCollection", "InexactTokenIds",
           "InvalidFeedbackError", "InvalidRankingError", "NoTrainingSignal", "NotFoundError", "OutputFileError",
           "PairFileError", "QuestionClosedError", "RankactError", "RecorderError", "SchemaVersionError", "StoreError",
           "TaskFileError", "UnstorableValueError"]


class TaskFileError(RankactError):
    """A task file is missing or holds a line that is not a task."""


class DatasetError(RankactError):
    """The shared evaluation data is missing or malformed."""


class PairFileError(RankactError):
    """A pair file is missing or holds a line we cannot read."""


class DemonstrationError(RankactError):
    """A demonstration that is malformed or that the agent cannot follow; the message says where."""


class InexactTokenIds(RankactError):
    """Trajectories whose segments lack the exact ids the model saw and produced (served chat
    replies, unguided multi-step runs); a policy trainer refuses them unless told to re-tokenize."""


class NoTrainingSignal(RankactError):
    """The rankings leave a trainer nothing to learn: no ranked pairs, every group tied, or no
    generated tokens. A round of `rankact align rounds` keeps its policy instead of failing."""


class StoreError(RankactError):
    """Base for store errors a user can cause. `code` names the kind in the service's error
    body (`{"detail": ..., "code": ...}`), so a client can act on it without parsing text."""

    code = "invalid"

    def fields(self) -> dict[str, object]:
        """What the service adds to the error body besides `detail` and `code`."""
        return {}


class NotFoundError(StoreError, LookupError):
    """An unknown question, trajectory or annotator id."""

    code = "not_found"


class ConflictError(StoreError, ValueError):
    """A write that clashes with what is stored (a duplicate id or name; for a trajectory: the
    id is stored with other content)."""

    code = "conflict"


class AlreadyStoredError(ConflictError):
    """The trajectory is stored already, with this id and this content: a re-sent write, which a
    client counts as delivered. `question_id` is where it is stored."""

    code = "already_stored"

    def __init__(self, message: str, *, question_id: str) -> None:
        super().__init__(message)
        self.question_id = question_id

    def fields(self) -> dict[str, object]:
        return {"question_id": self.question_id}


class QuestionClosedError(ConflictError):
    """The question has rankings, so it takes no new trajectories (they would not be in its
    rankings); nothing was stored. Post to `next_question_id` (`"version": next_version`)."""

    code = "question_closed"

    def __init__(self, message: str, *, question_id: str, next_version: int, next_question_id: str) -> None:
        super().__init__(message)
        self.question_id, self.next_version, self.next_question_id = question_id, next_version, next_question_id

    def fields(self) -> dict[str, object]:
        return {"question_id": self.question_id, "next_version": self.next_version,
                "next_question_id": self.next_question_id}


class InvalidRankingError(StoreError, ValueError):
    """A ranking that does not order exactly its question's trajectories."""

    code = "invalid_ranking"


class InvalidFeedbackError(StoreError, ValueError):
    """An end user's vote it cannot apply to: a choice between trajectories of two questions,
    a damaged trajectory."""

    code = "invalid_feedback"


class UnstorableValueError(StoreError, ValueError):
    """A value the database cannot store and read back: a timestamp outside 1970..now, or one
    the database itself refuses as data (out of range, too long for an index). Retrying the
    same write can never succeed, so a client must not (the service answers 422, not 503)."""


class SchemaVersionError(StoreError):
    """The database was made by another version of rankact."""

    code = "schema_version"


class IncompleteCollection(RankactError):
    """Some samples of a collection run failed (an outage, not the model's doing) and were not
    stored; a rerun of the same command runs exactly those."""


class OutputFileError(RankactError):
    """A file a command was asked to write (`--out`) cannot be written: a folder is there, its
    folder cannot be made, no permission, a full disk."""


class RecorderError(RankactError):
    """A recorder (alignment.feedback.recorder.recorder) that cannot start: an unknown target, a service
    URL without a token, a spool folder it cannot use. Once started it never raises."""


class ExportError(RankactError):
    """An export asked for an unknown source, or a format that cannot hold that source (the
    CLI prints it as one line, the service answers 422)."""


class CommandError(RankactError):
    """A bad command-line value: an index folder, embedder, source list or option."""


class DemoError(RankactError):
    """A stage of the demo failed in a way a user can act on."""
