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

from rankact.alignment.feedback.store.trajectory_store import Account, Role

_bearer = HTTPBearer(auto_error=False, description="A token from `rankact admin create NAME --role ROLE`.")


def role_in(*roles: Role):
    """A dependency that admits a token of one of `roles` and gives its account."""

    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Account:
        if credentials is None:
            raise HTTPException(401, "missing token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        account = request.app.state.store.authenticate(credentials.credentials)
        if account is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if account.role not in roles:
            raise HTTPException(403, f"this needs an {' or '.join(roles)} token; {account.name!r} is "
                                     f"{'an' if account.role[0] in 'aeiou' else 'a'} {account.role}")
        return account

    dependency.roles = roles  # read by the test that every /api route names its roles
    return dependency


Anyone = Annotated[Account, Depends(role_in("admin", "annotator", "ingest"))]
Admin = Annotated[Account, Depends(role_in("admin"))]
Writer = Annotated[Account, Depends(role_in("admin", "ingest"))]  # questions and trajectories
Ranker = Annotated[Account, Depends(role_in("annotator"))]  # the ranking queue and rankings
Reviewer = Annotated[Account, Depends(role_in("admin", "annotator"))]  # annotators see only their own
