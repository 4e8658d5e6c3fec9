"""Feedback from an application's end users: a thumbs up/down or a score on one trajectory, or
a choice between two trajectories of the same question.

The app relays its users' clicks with its ingest token (end users never get tokens); each vote
names the end user by an opaque id of the app's (any printable string up to 128 characters,
never an account). Scores lie in [-1, 1]: thumbs up is +1, thumbs down -1, 0 is neutral.

One vote per (app, end user, thing judged): a later vote of the same user on the same
trajectory (or the same two trajectories) replaces the earlier one; a vote older than the one
stored (`created_at`, when the user clicked) is answered "superseded" and not stored. Every vote
has an id, the client's `feedback_id` or one derived from its content, so a re-sent vote is a
duplicate, never a second vote. Stored votes carry the source `end-user`, beside the
annotators' (`human`) and the simulated annotator's (`simulated`) rankings.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StringConstraints,
    field_validator,
    model_validator,
)

from rankact.alignment.feedback.records.timestamps import checked_utc

FeedbackKind = Literal["thumbs", "score", "choice"]
FeedbackStatus = Literal["created", "replaced", "duplicate", "superseded"]
END_USER = "end-user"  # the source name of everything end users said

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class FeedbackIn(BaseModel):
    """One end user's vote, as the app sends it (`POST /api/feedback`, `Recorder.thumbs/feedback/prefer`).
    Exactly one of: `trajectory_id` with `thumbs` or `score`; `chosen_id` with `rejected_id`."""

    model_config = ConfigDict(extra="forbid")

    end_user: Id = Field(description="the app's opaque id of its user (not an account)")
    trajectory_id: Id | None = None
    thumbs: Literal["up", "down"] | None = None
    # Strict: "0.5" and true are not scores (lax parsing took them as 0.5 and 1.0).
    score: StrictFloat | None = Field(default=None, ge=-1, le=1, allow_inf_nan=False,
                                      description="in [-1, 1]: -1 worst, 0 neutral, 1 best (thumbs: +1 / -1)")
    chosen_id: Id | None = None
    rejected_id: Id | None = None
    feedback_id: Id | None = Field(default=None, description="the vote's id; by default derived from its content")
    comment: str = Field(default="", max_length=2000)
    created_at: datetime | None = Field(default=None, description="when the user voted; by default on arrival. "
                                                                  "From 1970 to a few minutes from now")

    @field_validator("created_at")
    @classmethod
    def _storable(cls, moment: datetime | None) -> datetime | None:
        return None if moment is None else checked_utc(moment, "created_at")

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        on_one = self.trajectory_id is not None
        on_two = self.chosen_id is not None or self.rejected_id is not None
        if on_one == on_two:
            raise ValueError("give either trajectory_id (with thumbs or score) or chosen_id and rejected_id")
        if on_one and (self.thumbs is None) == (self.score is None):
            raise ValueError("a vote on one trajectory takes exactly one of thumbs ('up' or 'down') or score")
        if on_two:
            if self.chosen_id is None or self.rejected_id is None:
                raise ValueError("a choice needs both chosen_id and rejected_id")
            if self.chosen_id == self.rejected_id:
                raise ValueError("a choice needs two different trajectories")
            if self.thumbs is not None or self.score is not None:
                raise ValueError("a choice takes no thumbs or score")
        return self

    @property
    def kind(self) -> FeedbackKind:
        return "choice" if self.chosen_id else "thumbs" if self.thumbs else "score"

    @property
    def value(self) -> float | None:
        """The score stored: thumbs as +1 / -1, a choice none."""
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else -1.0
        return self.score

    def slot(self, app: str) -> str:
        """What a later vote of the same user replaces: the user and what they judged (a choice
        judges a pair, whichever way round)."""
        judged = sorted((self.chosen_id, self.rejected_id)) if self.kind == "choice" else [self.trajectory_id]
        on = "choice" if self.kind == "choice" else "score"
        return _digest(app, self.end_user, on, *judged)[:64]

    def derived_id(self, app: str) -> str:
        """The id of a vote sent without `feedback_id`: the same content gives the same id."""
        when = self.created_at.isoformat() if self.created_at else ""
        return "fb-" + _digest(app, self.end_user, self.kind, self.trajectory_id or "", self.chosen_id or "",
                               self.rejected_id or "", repr(self.value), self.comment, when)[:40]


class EndUserFeedback(BaseModel):
    """A stored vote (what `GET /api/feedback` and `rankact feedback export --format feedback` give)."""

    id: str
    kind: FeedbackKind
    question_id: str
    trajectory_id: str | None = None
    score: float | None = Field(default=None, ge=-1, le=1, allow_inf_nan=False)
    chosen_id: str | None = None
    rejected_id: str | None = None
    app: str = Field(description="the account that relayed it")
    end_user: str
    comment: str = ""
    created_at: datetime
    received_at: datetime
    source: Literal["end-user"] = END_USER

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # A row edited by hand, or written by a bug, is caught here and left out of reads.
        if self.kind == "choice":
            if not (self.chosen_id and self.rejected_id) or self.chosen_id == self.rejected_id:
                raise ValueError("a choice needs two different trajectories")
        elif self.trajectory_id is None or self.score is None:
            raise ValueError(f"a {self.kind} vote needs a trajectory and a score")
        elif self.kind == "thumbs" and self.score not in (1.0, -1.0):
            raise ValueError("thumbs are stored as +1 or -1")
        return self


class FeedbackStored(BaseModel):
    feedback: EndUserFeedback = Field(description="the vote now stored in the slot (for superseded: the newer one)")
    status: FeedbackStatus = Field(description="created, replaced (the user's earlier vote), duplicate (sent "
                                               "before), superseded (a newer vote of this user is stored)")
    replaced_id: str | None = None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
