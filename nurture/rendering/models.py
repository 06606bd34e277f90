"""Templates stored in the database, edited in the UI or saved from the command line, with every version kept.

A stored template has the name a file would have (``welcome.html``, ``partials/footer.html``) and overrides the
shipped file of that name (see nurture.rendering.stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from nurture.db import Base

MAX_NAME_CHARS = 200


class EmailTemplate(Base):
    __tablename__ = "email_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    # The version every new send uses: the latest saved.
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    versions: Mapped[list[EmailTemplateVersion]] = relationship(
        back_populates="template", order_by="EmailTemplateVersion.version", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"EmailTemplate({self.name!r}, v{self.current_version})"


class EmailTemplateVersion(Base):
    """One saved text of a template; never changed once written."""

    __tablename__ = "email_template_versions"

    template_id: Mapped[int] = mapped_column(ForeignKey("email_templates.id", ondelete="CASCADE"), primary_key=True)
    # 1, 2, 3... per template.
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    # SHA-256 of the source (hex): saving the same text again makes no new version.
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    # Who saved it: a user's email, or "cli".
    created_by: Mapped[str] = mapped_column(String(320))

    template: Mapped[EmailTemplate] = relationship(back_populates="versions")

    def __repr__(self) -> str:
        return f"EmailTemplateVersion({self.template_id}, v{self.version})"
