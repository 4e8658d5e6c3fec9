"""Who may call what. Every /api endpoint names the roles it admits with one parameter, e.g.
`who: Writer`; a new endpoint picks one of the aliases below or writes
`Annotated[Account, Depends(role_in("admin", ...))]`. A test checks that no /api route lacks one.

401: no token, or one that is unknown or revoked. 403: a valid token of a role the endpoint
does not admit (the message says which roles it does).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from rankact.alignment.feedback.store.trajectory_store import Account, Role, TrajectoryStore

_bearer = HTTPBearer(auto_error=False, description="A token from `rankact admin create NAME --role ROLE`.")


# The request gate (`request_gate.py`) authorizes a request with a body before reading it and
# leaves the account here, so the route's dependency need not ask the store again.
GATE_ACCOUNT_KEY = "rankact.account"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value (as HTTPBearer reads it)."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if token and scheme.lower() == "bearer" else None


def authorize(store: TrajectoryStore, token: str | None, roles: tuple[Role, ...]) -> Account:
    """The account of `token` if its role is one of `roles`; HTTPException 401 or 403 otherwise.
    Reads the store: call it from a thread, not the event loop."""
    if token is None:
        raise HTTPException(401, "missing token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    account = store.authenticate(token)
    if account is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return check_role(account, roles)


def check_role(account: Account, roles: tuple[Role, ...]) -> Account:
    if account.role not in roles:
        raise HTTPException(403, f"this needs an {' or '.join(roles)} token; {account.name!r} is "
                                 f"{'an' if account.role[0] in 'aeiou' else 'a'} {account.role}")
    return account


def role_in(*roles: Role):
    """A dependency that admits a token of one of `roles` and gives its account."""

    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Account:
        gated = request.scope.get(GATE_ACCOUNT_KEY)
        if gated is not None:
            return check_role(gated, roles)
        return authorize(request.app.state.store, credentials.credentials if credentials else None, roles)

    dependency.roles = roles  # read by the request gate and by the test that every /api route names its roles
    return dependency


Anyone = Annotated[Account, Depends(role_in("admin", "annotator", "ingest"))]
Admin = Annotated[Account, Depends(role_in("admin"))]
Writer = Annotated[Account, Depends(role_in("admin", "ingest"))]  # questions and trajectories
Ranker = Annotated[Account, Depends(role_in("annotator"))]  # the ranking queue and rankings
Reviewer = Annotated[Account, Depends(role_in("admin", "annotator"))]  # annotators see only their own
