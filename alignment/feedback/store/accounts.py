"""Accounts of the trajectory store: who may call the feedback service, with which role.

Three roles, each for one kind of caller:
- `admin`: a person who runs the collection; reads everything, writes questions and
  trajectories. Does not rank (an admin who also ranks gets an annotator account, so the
  powerful token never sits in a browser's storage).
- `annotator`: a person who ranks; sees only the questions handed to them and their own rankings.
- `ingest`: a program that posts trajectories (a recorder in a live app); writes only.

A token is shown once when made; only its SHA-256 is stored, so a stolen database does
not give working tokens. Revoking keeps the account (its rankings stay attributed).
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rankact.alignment.errors import ConflictError, NotFoundError, StoreError
from rankact.alignment.feedback.store.database import Database
from rankact.alignment.feedback.store.tables import AnnotatorRow, utc_now

Role = Literal["admin", "annotator", "ingest"]
ROLES: tuple[Role, ...] = get_args(Role)


class Account(BaseModel):
    name: str
    role: Role = "annotator"
    created_at: datetime
    revoked: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account(row: AnnotatorRow) -> Account:
    return Account(name=row.name, role=row.role, created_at=row.created_at, revoked=row.revoked_at is not None)


class Accounts:
    """Accounts and their tokens, in the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_account(self, name: str, role: Role = "annotator") -> str:
        """Register an account; returns its token (only the token's hash is stored)."""
        name = name.strip()
        if not name or len(name) > 128 or not name.isprintable():
            raise StoreError("an account name must have 1 to 128 printable characters")
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        token = secrets.token_urlsafe(24)
        try:
            with self.db.write() as session:
                if session.get(AnnotatorRow, name) is not None:
                    raise ConflictError(f"account {name!r} already exists")
                session.add(AnnotatorRow(name=name, token_hash=hash_token(token), role=role, created_at=utc_now()))
        except IntegrityError as exc:
            raise ConflictError(f"account {name!r} already exists") from exc
        return token

    def create_annotator(self, name: str, *, is_admin: bool = False) -> str:
        """Shorthand for `create_account(name, "admin" if is_admin else "annotator")`."""
        return self.create_account(name, "admin" if is_admin else "annotator")

    def rotate_token(self, name: str) -> str:
        """A new token for the account; the old one stops working at once. A revoked account
        is re-enabled with the new token."""
        token = secrets.token_urlsafe(24)
        with self.db.write() as session:
            row = self._account_row(session, name)
            row.token_hash, row.revoked_at = hash_token(token), None
        return token

    def revoke(self, name: str) -> Account:
        """The account's token stops working; the account and its rankings stay."""
        with self.db.write() as session:
            row = self._account_row(session, name)
            if row.revoked_at is None:
                row.revoked_at = utc_now()
            return _account(row)

    def authenticate(self, token: str | None) -> Account | None:
        """The account a token belongs to; None for an unknown or revoked token."""
        if not token:
            return None
        with self.db.read() as session:
            row = session.scalars(select(AnnotatorRow).where(AnnotatorRow.token_hash == hash_token(token),
                                                           AnnotatorRow.revoked_at.is_(None))).first()
        return _account(row) if row else None

    def accounts(self, role: Role | None = None) -> list[Account]:
        query = select(AnnotatorRow).order_by(AnnotatorRow.name)
        if role is not None:
            query = query.where(AnnotatorRow.role == role)
        with self.db.read() as session:
            return [_account(row) for row in session.scalars(query)]

    @staticmethod
    def _account_row(session, name: str) -> AnnotatorRow:
        row = session.get(AnnotatorRow, name)
        if row is None:
            raise NotFoundError(f"no account named {name!r}")
        return row
