from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Enum, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from nurture.db import Base, BigId, enum_column


class Role(StrEnum):
    """Ordered by power: each role can do what the ones before it can."""

    VIEWER = "viewer"
    SALES = "sales"
    MARKETER = "marketer"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            name="role",
            native_enum=False,
            create_constraint=True,
            length=20,
            values_callable=lambda members: [member.value for member in members],
        )
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    # Part of every session's id: bumping it (logout, password or role change, disabling) ends every session
    # signed in before, wherever its cookie went.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    # Flask-Login's protocol, kept here so the web layer stays thin.
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """Flask-Login's session id: ``"<id>:<session version>"``, so a bumped version refuses old cookies."""
        return f"{self.id}:{self.session_version}"


class ThrottleKind(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


class LoginFailure(Base):
    """One sign-in attempt that counts against a throttle key (see ``nurture.auth.throttle``).

    An attempt is written before its password is checked, so that parallel attempts see each other; a
    successful or refused attempt removes its rows again, and what remains are the failures."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_kind_key_failed_at", "kind", "key", "failed_at"),
        Index("ix_login_failures_failed_at", "failed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[ThrottleKind] = mapped_column(enum_column(ThrottleKind, "throttle_kind"))
    # A SHA-256 of the normalised email or address: what people mistype into the email box is not kept.
    key: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime]
