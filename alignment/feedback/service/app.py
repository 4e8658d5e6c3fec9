"""The feedback service: a JSON API under /api and the ranking page at /.

Writes need `Authorization: Bearer <token>` (tokens come from `rankact admin
create-annotator`). Errors are JSON `{"detail": ...}` with a 4xx status a client can act on:
401 no or wrong token, 404 unknown id, 409 duplicate, 422 invalid body or ranking.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, OperationalError

from agent.trajectory import Trajectory
from alignment.feedback.agreement import FeedbackStats, feedback_stats
from alignment.feedback.export import export_lines
from alignment.feedback.rankings import Ranking, StepFlag
from alignment.feedback.store import (
    Annotator,
    ConflictError,
    InvalidRankingError,
    NotFoundError,
    Question,
    StoreError,
    TrajectoryStore,
    shuffled_for,
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
_bearer = HTTPBearer(auto_error=False, description="An annotator token from `rankact admin create-annotator`.")


class TrajectoryIn(BaseModel):
    trajectory: Trajectory
    question_id: str | None = Field(default=None, max_length=128,
                                    description="defaults to a hash of the question text")
    gold: list[str] | None = Field(default=None, description="gold answers, for evaluation and simulated ranking")


class TrajectoryCreated(BaseModel):
    id: str
    question_id: str


class NextQuestion(BaseModel):
    annotator: str
    question: Question | None = Field(description="null when nothing is left to rank")
    trajectories: list[Trajectory] = Field(default_factory=list, description="shuffled per annotator")
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


def current_annotator(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Annotator:
    """The annotator whose token came with the request; 401 without a known token."""
    if credentials is None:
        raise HTTPException(401, "missing token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    found = request.app.state.store.authenticate(credentials.credentials)
    if found is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return found


Auth = Annotated[Annotator, Depends(current_annotator)]


def create_app(store: TrajectoryStore, *, lease_seconds: float = 600) -> FastAPI:
    docs_assets = _offline_docs_assets()
    app = FastAPI(
        title="rankact feedback",
        description="Rank an agent's trajectories of one question, and export the rankings as preference data.",
        version="1",
        responses={401: {"model": Error}, 422: {"model": Error}},
        docs_url=None if docs_assets else "/docs",
    )
    app.state.store = store
    if docs_assets:
        _add_offline_docs(app, docs_assets)

    # -- errors: always JSON, always a status the client can act on --

    def answer_with(status: int):
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    # The store's errors, most specific first (StoreError is the base of the others).
    for error, status in ((NotFoundError, 404), (ConflictError, 409), (InvalidRankingError, 422), (StoreError, 400)):
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
    def post_trajectory(body: TrajectoryIn, _who: Auth) -> TrajectoryCreated:
        """Store a trajectory under its question (created on first use)."""
        question_id = store.add(body.trajectory, question_id=body.question_id, gold=body.gold)
        return TrajectoryCreated(id=body.trajectory.id, question_id=question_id)

    @app.get("/api/trajectories", response_model=list[Trajectory], tags=["trajectories"],
             responses={404: {"model": Error}})
    def list_trajectories(
        question_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[Trajectory]:
        if question_id is not None:
            store.question(question_id)  # 404 for an unknown question
        return store.list(question_id, limit=limit, offset=offset)

    @app.get("/api/trajectories/{trajectory_id}", response_model=Trajectory, tags=["trajectories"],
             responses={404: {"model": Error}})
    def get_trajectory(trajectory_id: str) -> Trajectory:
        return store.get(trajectory_id)

    @app.get("/api/questions", response_model=list[Question], tags=["questions"])
    def list_questions() -> list[Question]:
        return store.questions()

    @app.get("/api/questions/{question_id}", response_model=Question, tags=["questions"],
             responses={404: {"model": Error}})
    def get_question(question_id: str) -> Question:
        return store.question(question_id)

    # -- ranking --

    @app.get("/api/me", response_model=Annotator, tags=["ranking"])
    def me(who: Auth) -> Annotator:
        return who

    @app.get("/api/next", response_model=NextQuestion, tags=["ranking"])
    def next_question(who: Auth) -> NextQuestion:
        """The next question for this annotator, leased to them for a while, with its
        trajectories in an order shuffled per annotator."""
        question = store.next_question_for(who.name, lease_seconds=lease_seconds)
        if question is None:
            return NextQuestion(annotator=who.name, question=None, waiting=store.unranked_count(who.name))
        trajectories = shuffled_for(who.name, question.id, store.list(question.id), key=lambda t: t.id)
        return NextQuestion(annotator=who.name, question=question, trajectories=trajectories,
                            lease_seconds=lease_seconds)

    @app.post("/api/rankings", response_model=RankingStored, tags=["ranking"],
              responses={201: {"model": RankingStored}, 404: {"model": Error}})
    def post_ranking(body: RankingIn, who: Auth) -> JSONResponse:
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
        question_id: str | None = None, annotator: str | None = None,
        source: Literal["human", "simulated"] | None = None,
    ) -> list[Ranking]:
        return store.rankings(question_id, annotator=annotator, source=source)

    # -- export --

    @app.get("/api/export", tags=["export"],
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "JSON Lines in the requested format"}})
    def export(format: Literal["pairs", "trl", "rankings"] = "pairs") -> StreamingResponse:
        lines = list(export_lines(store, format))  # built first, so an error is a status, not a cut stream
        return StreamingResponse((line + "\n" for line in lines), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="rankact-{format}.jsonl"'})

    @app.get("/api/stats", response_model=FeedbackStats, tags=["export"])
    def stats() -> FeedbackStats:
        return feedback_stats(store)

    # -- the page --

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _offline_docs_assets() -> Path | None:
    """Swagger UI files shipped in a package, so /docs works without reaching a CDN."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )


def _first_error(exc: ValueError) -> str:
    text = str(exc)
    # pydantic's message: "1 validation error for Ranking\n  Value error, <ours> [type=...]"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Value error, "):
            return line.removeprefix("Value error, ").split(" [type=")[0]
    return text.splitlines()[-1] if text else "invalid ranking"
