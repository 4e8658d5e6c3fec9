"""`/api/feedback`: end users' votes, relayed by the app with its ingest token (or by an admin).
The rules (score range, one vote per user and thing judged, ids) are in
`rankact.alignment.feedback.records.end_user`; the statuses:

    201 created, or replaced the same user's earlier vote      200 duplicate, or superseded
    404 unknown trajectory   409 feedback id used by another vote   422 invalid vote
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from rankact.alignment.feedback.records.end_user import EndUserFeedback, FeedbackIn, FeedbackStored
from rankact.alignment.feedback.service.auth import Admin, Writer
from rankact.alignment.feedback.service.strict_json import MAX_SAFE_INT


def post_feedback(body: FeedbackIn, who: Writer, request: Request) -> JSONResponse:
    """One end user's thumbs, score in [-1, 1], or choice between two trajectories of one question.
    A later vote of the same user on the same thing replaces the earlier one (201, `replaced`);
    a vote sent again changes nothing (200, `duplicate`). A `created_at` before 1970 or more than
    a few minutes ahead is refused by `FeedbackIn` itself (records.timestamps), 422."""
    stored, status, replaced = request.app.state.store.add_feedback(body, app=who.name)
    payload = FeedbackStored(feedback=stored, status=status, replaced_id=replaced)
    return JSONResponse(payload.model_dump(mode="json"), status_code=201 if status in ("created", "replaced") else 200)


def list_feedback(
    _who: Admin, request: Request, question_id: str | None = None, end_user: str | None = None,
    kind: Literal["thumbs", "score", "choice"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_SAFE_INT)] = 0,
) -> list[EndUserFeedback]:
    return request.app.state.store.end_user_feedback(question_id, end_user=end_user, kind=kind, limit=limit,
                                                     offset=offset)


def add_end_user_routes(app: FastAPI) -> None:
    # Added to the app itself, not through an included router: the request gate and the role
    # test see every route in `app.routes`.
    tags = ["end-user feedback"]
    app.add_api_route("/api/feedback", post_feedback, methods=["POST"], response_model=FeedbackStored,
                      responses={201: {"model": FeedbackStored}}, tags=tags)
    app.add_api_route("/api/feedback", list_feedback, methods=["GET"], response_model=list[EndUserFeedback], tags=tags)
