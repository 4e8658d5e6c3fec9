"""The feedback service: a JSON API under /api and the ranking page at /.

Every /api call needs `Authorization: Bearer <token>` of a role the endpoint admits (tokens
come from `rankact admin create NAME --role admin|annotator|ingest`; `auth.py`):

    endpoint                           admin  annotator  ingest
    POST /api/trajectories               x                 x     (questions are made on first use)
    GET  /api/trajectories[/{id}]        x
    GET  /api/questions[/{id}]           x
    GET  /api/next, POST /api/rankings          x               (an admin ranks with an annotator account)
    GET  /api/rankings                   all    own only
    POST /api/feedback                   x                 x     (end users' votes: end_user_routes.py)
    GET  /api/feedback                   x
    GET  /api/export, /api/stats         x
    GET  /api/me                         x      x          x

A question with rankings takes no new trajectories (409 naming the next question version).
A store error's body carries a `code` besides `detail`: 409 `already_stored` (the same
trajectory re-sent: delivered), `question_closed` (with `next_version`), `conflict`.
A trajectory must answer the question it is filed under (same text), and its id, like a vote's,
is 1 to 128 printable characters. `/api/next` shows annotators each run without its model,
status, timings or usage (`runs_to_rank.py`).

No body is read before its sender is known (`request_gate.py`): the token and role, then the
Content-Type (JSON only), the account's write limits and the route's size limit are checked
first, and the JSON is parsed once, strictly (`strict_json.py`), and validated, in a worker thread. Limits
(`limits.py`, `rankact serve --max-body-bytes/--writes-per-minute/--write-bytes-per-hour`):
bodies of 8 MiB (trajectories), 1 MiB (rankings), 64 KiB (votes); per account 600 writes a
minute and 256 MiB an hour, counted in memory by the service process (`quotas.py`).
Token ids must lie in [0, vocab_size). Only the configured Host names are served (`hosts.py`;
loopback by default). Errors are JSON `{"detail": ...}` with a status a client can act on:
400 unknown Host, 401 no, unknown or revoked token, 403 a role the endpoint does not admit,
404 unknown id or path, 408 a body that did not arrive in time, 409 duplicate or closed
question, 413 a body over its route's limit, 415 a body that is not JSON, 422 invalid body or
ranking, 429 a write limit reached (`Retry-After` says when to retry). A stored row that does
not read back is left out of reads with a logged warning (`store.py`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, OperationalError

from rankact.agent.trajectory import Trajectory
from rankact.alignment.errors import ExportError
from rankact.alignment.feedback.preferences.agreement import FeedbackStats, feedback_stats
from rankact.alignment.feedback.preferences.export import export_lines
from rankact.alignment.feedback.records.rankings import Ranking, StepFlag
from rankact.alignment.feedback.service.auth import Admin, Anyone, Ranker, Reviewer, Writer
from rankact.alignment.feedback.service.docs_page import add_offline_docs, offline_docs_assets
from rankact.alignment.feedback.service.end_user_routes import add_end_user_routes
from rankact.alignment.feedback.service.hosts import (
    LOOPBACK_HOSTS,
    AllowedHostsMiddleware,
    allowed_host_names,
)
from rankact.alignment.feedback.service.limits import ServiceLimits
from rankact.alignment.feedback.service.quotas import WriteQuotas
from rankact.alignment.feedback.service.request_gate import GatedRoute, RequestGate, body_routes
from rankact.alignment.feedback.service.runs_to_rank import RunToRank, blinded
from rankact.alignment.feedback.service.strict_json import MAX_SAFE_INT
from rankact.alignment.feedback.store.database import first_line, is_data_error
from rankact.alignment.feedback.store.trajectory_store import (
    Account,
    ConflictError,
    InvalidFeedbackError,
    InvalidRankingError,
    NotFoundError,
    Question,
    StoreError,
    TrajectoryStore,
    UnstorableValueError,
    question_id_for,
    shuffled_for,
    versioned_id,
)

log = logging.getLogger("rankact.service")
STATIC_DIR = Path(__file__).parent / "static"
# The page loads only its own files: no inline script, no remote anything. Model text is
# inserted with textContent anyway; this is the second line of defence.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# No tokenizer comes near this many tokens; `create_app(vocab_size=...)` narrows it to a model's.
MAX_VOCAB_SIZE = 2**24
MAX_ID_CHARS = 128  # as end users' vote ids (end_user.Id)


class TrajectoryIn(BaseModel):
    trajectory: Trajectory
    question_id: str | None = Field(default=None, max_length=120,
                                    description="defaults to a hash of the question text")
    version: int = Field(default=1, ge=1, le=9999,
                         description="the question's version: from 2 on, '-v<version>' is added to the question id. "
                                     "A question with rankings takes no new trajectories: post to a new version")
    gold: list[str] | None = Field(default=None, description="gold answers, for evaluation and simulated ranking")


class TrajectoryCreated(BaseModel):
    id: str
    question_id: str


class QuestionToRank(BaseModel):
    """A question as an annotator sees it: no gold answers, nothing that tells which run is right."""
    id: str
    text: str


class NextQuestion(BaseModel):
    annotator: str
    question: QuestionToRank | None = Field(description="null when nothing is left to rank")
    trajectories: list[RunToRank] = Field(default_factory=list, description="shuffled per annotator; "
                                          "only what a ranking is about (no model, status, timings or usage)")
    lease_seconds: float = 0
    waiting: int = Field(0, description="with no question: how many unranked ones others are ranking right now")


class RankingIn(BaseModel):
    question_id: str = Field(min_length=1, max_length=128)
    order: list[list[str]] = Field(min_length=1, description="tie groups of trajectory ids, best first")
    flags: list[StepFlag] = Field(default_factory=list, description="steps the annotator marked as bad")
    comment: str = Field(default="", max_length=10_000)


class RankingStored(BaseModel):
    ranking: Ranking
    created: bool = Field(description="false when this repeats or replaces an earlier submission")


class Error(BaseModel):
    detail: str | list[Any]
    code: str | None = Field(default=None, description="a store error's kind: not_found, conflict, already_stored, "
                                                       "question_closed, invalid, ...")
    next_version: int | None = Field(default=None, description="question_closed: the version to post to")


def create_app(store: TrajectoryStore, *, lease_seconds: float = 600, allowed_hosts: Iterable[str] = (),
               vocab_size: int | None = None, limits: ServiceLimits | None = None) -> FastAPI:
    """The service over `store`. `allowed_hosts` adds Host names to the loopback ones ("*": any);
    `vocab_size` bounds the token ids a posted trajectory may hold (default MAX_VOCAB_SIZE);
    `limits`: body sizes and write quotas (`limits.py`)."""
    limits = limits or ServiceLimits()
    docs_assets = offline_docs_assets()
    app = FastAPI(
        title="rankact feedback",
        description="Rank an agent's trajectories of one question, and export the rankings as preference data.",
        version="1",
        responses={400: {"model": Error}, 401: {"model": Error}, 403: {"model": Error}, 422: {"model": Error}},
        docs_url=None,  # served by docs_page.py, with its files and a CSP
        redoc_url=None,  # would load from a CDN
    )
    app.state.store = store
    app.router.route_class = GatedRoute  # body routes take the value the request gate parsed
    token_limit = vocab_size or MAX_VOCAB_SIZE
    if docs_assets:
        add_offline_docs(app, docs_assets)

    # -- errors: always JSON, always a status the client can act on --

    def answer_with(status: int):
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            # `code` tells the kinds apart without parsing text (a 409 "already stored" is a
            # delivered re-send, a 409 "question_closed" names where to post instead)
            extra = {"code": exc.code, **exc.fields()} if isinstance(exc, StoreError) else {}
            return JSONResponse({"detail": str(exc), **extra}, status_code=status)

        return handler

    # The store's errors, most specific first (StoreError is the base of the others).
    for error, status in ((NotFoundError, 404), (ConflictError, 409), (InvalidRankingError, 422),
                          (InvalidFeedbackError, 422), (UnstorableValueError, 422), (StoreError, 400)):
        app.add_exception_handler(error, answer_with(status))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Keep FastAPI's error list but drop the echoed input (it can be huge) and any
        # exception objects pydantic puts in `ctx`, which are not JSON.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(DataError)
    async def _bad_value(_request: Request, exc: DataError) -> JSONResponse:
        # e.g. PostgreSQL refuses a NUL character in text
        return JSONResponse({"detail": f"the database refused a value: {str(exc.orig).splitlines()[0]}"},
                            status_code=422)

    @app.exception_handler(OperationalError)
    async def _database(_request: Request, exc: OperationalError) -> JSONResponse:
        if is_data_error(exc):  # e.g. an index row over PostgreSQL's limit: retrying cannot help
            return JSONResponse({"detail": f"the database refused a value: {first_line(exc.orig)}"},
                                status_code=422)
        log.error("database error: %s", exc)
        return JSONResponse({"detail": "the database is unavailable, try again"}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with the traceback, answer JSON without internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    # -- trajectories and questions --

    @app.post("/api/trajectories", status_code=201, response_model=TrajectoryCreated, tags=["trajectories"],
              responses={409: {"model": Error}})
    def post_trajectory(body: TrajectoryIn, _who: Writer) -> TrajectoryCreated:
        """Store a trajectory under its question (created on first use). 409 when the question
        already has rankings: post to the version the message names."""
        _check_token_ids(body.trajectory, token_limit)
        question_id = versioned_id(body.question_id or question_id_for(body.trajectory.question), body.version)
        for name, value in (("trajectory id", body.trajectory.id), ("question id", question_id)):
            _check_id(name, value)
        _check_same_question(store, question_id, body.trajectory.question)
        question_id = store.add(body.trajectory, question_id=question_id, gold=body.gold)
        return TrajectoryCreated(id=body.trajectory.id, question_id=question_id)

    @app.get("/api/trajectories", response_model=list[Trajectory], tags=["trajectories"],
             responses={404: {"model": Error}})
    def list_trajectories(
        _who: Admin,
        question_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        offset: Annotated[int, Query(ge=0, le=MAX_SAFE_INT)] = 0,
    ) -> list[Trajectory]:
        if question_id is not None:
            store.question(question_id)  # 404 for an unknown question
        return store.list(question_id, limit=limit, offset=offset)

    @app.get("/api/trajectories/{trajectory_id:path}", response_model=Trajectory, tags=["trajectories"],
             responses={404: {"model": Error}})
    def get_trajectory(trajectory_id: str, _who: Admin) -> Trajectory:
        return store.get(trajectory_id)

    @app.get("/api/questions", response_model=list[Question], tags=["questions"])
    def list_questions(_who: Admin) -> list[Question]:
        return store.questions()

    @app.get("/api/questions/{question_id:path}", response_model=Question, tags=["questions"],
             responses={404: {"model": Error}})
    def get_question(question_id: str, _who: Admin) -> Question:
        return store.question(question_id)

    # -- ranking --

    @app.get("/api/me", response_model=Account, tags=["ranking"])
    def me(who: Anyone) -> Account:
        return who

    @app.get("/api/next", response_model=NextQuestion, tags=["ranking"])
    def next_question(who: Ranker) -> NextQuestion:
        """The next question for this annotator, leased to them for a while, with its
        trajectories in an order shuffled per annotator."""
        question = store.next_question_for(who.name, lease_seconds=lease_seconds)
        if question is None:
            return NextQuestion(annotator=who.name, question=None, waiting=store.unranked_count(who.name))
        trajectories = shuffled_for(who.name, question.id, store.list(question.id), key=lambda t: t.id)
        return NextQuestion(annotator=who.name, question=QuestionToRank(id=question.id, text=question.text),
                            trajectories=[blinded(t) for t in trajectories],
                            lease_seconds=lease_seconds)

    @app.post("/api/rankings", response_model=RankingStored, tags=["ranking"],
              responses={201: {"model": RankingStored}, 404: {"model": Error}})
    def post_ranking(body: RankingIn, who: Ranker) -> JSONResponse:
        """Rank exactly the question's trajectories, best first; ids in one inner list tie.
        Repeating a submission changes nothing (200); the first one answers 201."""
        try:
            ranking = Ranking(question_id=body.question_id, annotator=who.name, order=body.order,
                              flags=body.flags, comment=body.comment, source="human")
        except ValueError as exc:  # duplicates or empty tie groups
            raise InvalidRankingError(_first_error(exc)) from exc
        stored, created = store.submit_ranking(ranking)
        payload = RankingStored(ranking=stored, created=created)
        return JSONResponse(payload.model_dump(mode="json"), status_code=201 if created else 200)

    @app.get("/api/rankings", response_model=list[Ranking], tags=["ranking"])
    def list_rankings(
        who: Reviewer, question_id: str | None = None, annotator: str | None = None,
        source: Literal["human", "simulated"] | None = None,
    ) -> list[Ranking]:
        """Admins see every ranking; annotators only their own (with their comments)."""
        if who.role != "admin":
            if annotator not in (None, who.name):
                raise HTTPException(403, "annotators see only their own rankings")
            annotator = who.name
        return store.rankings(question_id, annotator=annotator, source=source)

    add_end_user_routes(app)

    # -- export --

    @app.get("/api/export", tags=["export"],
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "JSON Lines in the requested format"}})
    def export(_who: Admin, format: Literal["pairs", "trl", "kto", "rankings", "feedback"] = "pairs",
               source: Literal["ranked", "all", "annotator", "simulated", "end-user"] | None = None,
               exclude_app: Annotated[list[str] | None, Query(max_length=100)] = None,
               include_revoked: bool = False) -> StreamingResponse:
        """By default pairs, trl and rankings hold annotators' and simulated rankings only
        (`ranked`); end users' votes only with source end-user or all. kto and feedback hold end
        users' votes only. Votes of `exclude_app` (repeatable) and of revoked apps are left out."""
        try:
            # built first: an error is a status, not a cut stream
            lines = list(export_lines(store, format, source, exclude_apps=exclude_app or (),
                                      include_revoked=include_revoked))
        except ExportError as exc:
            raise HTTPException(422, str(exc)) from exc
        return StreamingResponse((line + "\n" for line in lines), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="rankact-{format}.jsonl"'})

    @app.get("/api/stats", response_model=FeedbackStats, tags=["export"])
    def stats(_who: Admin) -> FeedbackStats:
        return feedback_stats(store)

    # -- the page --

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Added last runs first: the Host check, then the request gate, then the routes.
    app.add_middleware(RequestGate, store=store, routes=body_routes(app.routes, limits), limits=limits,
                       quotas=WriteQuotas(limits.writes_per_minute, limits.write_bytes_per_hour))
    hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
    allowed_host_names(hosts)  # a bad name fails here, not at the first request
    app.add_middleware(AllowedHostsMiddleware, allowed=hosts)
    return app


def _check_token_ids(trajectory: Trajectory, limit: int) -> None:
    for index, segment in enumerate(trajectory.segments):
        bad = next((t for t in segment.token_ids or () if not 0 <= t < limit), None)
        if bad is not None:
            raise HTTPException(422, f"segments[{index}].token_ids holds {bad}, outside the vocabulary [0, {limit})")


def _check_id(name: str, value: str) -> None:
    # Ids are read back by URL (which drops "." and ".." segments, and no route matches a line
    # break), shown in logs and the CLI, and voted on: the same rule as end users' vote ids.
    if not 1 <= len(value) <= MAX_ID_CHARS or value in (".", "..") or not value.isprintable():
        shown = repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} characters)"
        raise HTTPException(422, f"a {name} must be 1 to {MAX_ID_CHARS} printable characters other than "
                                 f"'.' and '..', not {shown}")


def _check_same_question(store: TrajectoryStore, question_id: str, text: str) -> None:
    """A trajectory filed under a question answers that question: its text must be the question's."""
    try:
        stored = store.question(question_id).text
    except NotFoundError:
        return  # the question is made from this trajectory
    if stored != text:
        # The stored text is not shown: a writer (an ingest token) may not read questions.
        raise HTTPException(422, f"the trajectory's question is not the text of question {question_id}; "
                                 "post it under its own question id (or leave question_id out)")


def _first_error(exc: ValueError) -> str:
    text = str(exc)
    # pydantic's message: "1 validation error for Ranking\n  Value error, <ours> [type=...]"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Value error, "):
            return line.removeprefix("Value error, ").split(" [type=")[0]
    return text.splitlines()[-1] if text else "invalid ranking"
