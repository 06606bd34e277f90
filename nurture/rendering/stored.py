"""Templates stored in the database: saving a new version (checked first), listing, history, and the template
source that serves them to the renderer.

Precedence: a stored template overrides the file of the same name (``template_loader`` puts the stored source
first). Shipped files are the defaults; an edit saved from the UI or ``nurture templates save`` wins, and
takes effect for the next compile: the compile cache keys on each source's version, which for a stored
template is the hash of its current text.

Saving checks the new text before anything is written, the way ``check_templates`` does, with the draft in
place of the current version: for an email, every problem it has; for a layout, a partial or a hand-written
text part, every problem it adds to the emails that use it (a footer that loses its unsubscribe link is
refused). A refused save raises ``TemplateProblems`` naming each template and line; nothing is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.errors import NotFound, ValidationError
from nurture.rendering.assemble import check_syntax
from nurture.rendering.errors import TemplateProblem, TemplateProblems
from nurture.rendering.models import MAX_NAME_CHARS, EmailTemplate, EmailTemplateVersion
from nurture.rendering.renderer import EmailRenderer, check_templates, is_email
from nurture.rendering.sandbox import RenderLimits
from nurture.rendering.sources import (
    TEMPLATE_SUFFIXES,
    DictTemplateSource,
    EmailTemplateLoader,
    FileTemplateSource,
    TemplateSource,
    content_version,
    is_valid_name,
)

MAX_SOURCE_CHARS = 1_000_000
MAX_AUTHOR_CHARS = 320


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


class StoredTemplateSource:
    """The current version of each stored template. ``sessions`` opens a session for each lookup (a
    ``sessionmaker`` does): the renderer outlives transactions. ``bound_to(session)`` reads through one open
    session instead (a command, a request, a save being checked)."""

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]]) -> None:
        self._sessions = sessions

    @classmethod
    def bound_to(cls, session: Session) -> StoredTemplateSource:
        return cls(lambda: nullcontext(session))

    def get(self, name: str) -> tuple[str, str] | None:
        if not is_valid_name(name):
            return None
        with self._sessions() as session:
            row = session.execute(
                select(EmailTemplateVersion.source, EmailTemplateVersion.content_hash)
                .join(EmailTemplate, EmailTemplate.id == EmailTemplateVersion.template_id)
                .where(EmailTemplate.name == name, EmailTemplateVersion.version == EmailTemplate.current_version)
            ).first()
        if row is None:
            return None
        # The same version string a file with this text has (content_version), so the compile cache treats
        # them alike.
        return row.source, row.content_hash[: len(content_version(""))]

    def list_names(self) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(EmailTemplate.name).order_by(EmailTemplate.name)))


def template_loader(directory: Path, stored: TemplateSource | None = None) -> EmailTemplateLoader:
    """Stored templates first (they override the file of the same name), then the files in ``directory``."""
    files = FileTemplateSource(directory)
    return EmailTemplateLoader(stored, files) if stored is not None else EmailTemplateLoader(files)


def check_name(name: str) -> str:
    """The name of a template that may be stored: a relative path ending in .html or .txt."""
    if name != name.strip() or not name:
        raise ValidationError("must not be empty or start or end with spaces", where="template name")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"is longer than {MAX_NAME_CHARS} characters", where="template name")
    if not is_valid_name(name) or any(ord(char) < 32 for char in name):
        raise ValidationError(
            f"{name!r} is not a template path such as welcome.html or partials/footer.html", where="template name"
        )
    if not name.endswith(TEMPLATE_SUFFIXES):
        raise ValidationError(f"{name!r} must end in .html or .txt", where="template name")
    return name


@dataclass(frozen=True)
class SavedTemplate:
    version: EmailTemplateVersion
    # False when the text was the current version's already: nothing was written.
    created: bool


def save_template(
    session: Session,
    clock: Clock,
    name: str,
    source: str,
    *,
    created_by: str,
    files: TemplateSource,
    limits: RenderLimits | None = None,
    default_timezone: str = "UTC",
) -> SavedTemplate:
    """Store ``source`` as the new current version of template ``name``, after checking it against the other
    templates (stored ones, then ``files``). Saving the current text again writes nothing."""
    name = check_name(name)
    created_by = created_by.strip()
    if not created_by or len(created_by) > MAX_AUTHOR_CHARS:
        raise ValidationError(f"must be 1 to {MAX_AUTHOR_CHARS} characters", where="created_by")
    if len(source) > MAX_SOURCE_CHARS:
        raise ValidationError(f"is longer than {MAX_SOURCE_CHARS:,} characters", where=name)
    if "\x00" in source:
        raise ValidationError("contains a NUL character", where=name)
    template = session.scalar(select(EmailTemplate).where(EmailTemplate.name == name))
    digest = content_hash(source)
    if template is not None:
        current = _version(session, template, template.current_version)
        if current.content_hash == digest:
            return SavedTemplate(current, created=False)
    problems = template_problems(
        session, name, source, files=files, now=clock.now(), limits=limits, default_timezone=default_timezone
    )
    if problems:
        raise TemplateProblems(problems)
    now = clock.now()
    try:
        with session.begin_nested():
            if template is None:
                template = EmailTemplate(name=name, current_version=0, created_at=now, updated_at=now)
                session.add(template)
                session.flush()
            version = EmailTemplateVersion(
                template_id=template.id,
                version=template.current_version + 1,
                source=source,
                content_hash=digest,
                created_at=now,
                created_by=created_by,
            )
            session.add(version)
            template.current_version = version.version
            template.updated_at = now
            session.flush()
    except IntegrityError:
        raise ValidationError("was saved by someone else at the same time; try again", where=name) from None
    return SavedTemplate(version, created=True)


def template_problems(
    session: Session,
    name: str,
    source: str,
    *,
    files: TemplateSource,
    now: datetime,
    limits: RenderLimits | None = None,
    default_timezone: str = "UTC",
) -> list[TemplateProblem]:
    """What saving ``source`` as ``name`` would break (see the module docstring); empty when it may be saved."""
    stored = StoredTemplateSource.bound_to(session)
    draft = EmailRenderer(
        EmailTemplateLoader(DictTemplateSource({name: source}), stored, files),
        limits=limits,
        default_timezone=default_timezone,
    )
    environment = draft.html_environment if name.endswith(".html") else draft.plain_text_environment
    try:
        check_syntax(environment, source, name)
    except TemplateProblem as problem:
        return [problem]
    if is_email(name):
        return check_templates(draft, now=now, names=[name])
    sibling = f"{name.removesuffix('.txt')}.html"
    if name.endswith(".txt") and is_email(sibling) and draft.loader.find(sibling) is not None:
        affected = [sibling]
    else:
        affected = [email for email in draft.loader.list_templates() if is_email(email)]
    current = EmailRenderer(EmailTemplateLoader(stored, files), limits=limits, default_timezone=default_timezone)
    before = set(check_templates(current, now=now, names=[email for email in affected if current.loader.find(email)]))
    return [problem for problem in check_templates(draft, now=now, names=affected) if problem not in before]


def stored_templates(session: Session) -> list[EmailTemplate]:
    return list(session.scalars(select(EmailTemplate).order_by(EmailTemplate.name)))


def find_stored_template(session: Session, name: str) -> EmailTemplate | None:
    return session.scalar(select(EmailTemplate).where(EmailTemplate.name == name))


def get_template_version(session: Session, name: str, version: int | None = None) -> EmailTemplateVersion:
    """Version ``version`` of stored template ``name`` (its current one by default)."""
    template = _stored(session, name)
    return _version(session, template, template.current_version if version is None else version)


def template_history(session: Session, name: str) -> list[EmailTemplateVersion]:
    """Every version of stored template ``name``, newest first."""
    template = _stored(session, name)
    return list(
        session.scalars(
            select(EmailTemplateVersion)
            .where(EmailTemplateVersion.template_id == template.id)
            .order_by(EmailTemplateVersion.version.desc())
        )
    )


def _stored(session: Session, name: str) -> EmailTemplate:
    template = find_stored_template(session, name)
    if template is None:
        raise NotFound(f"no stored template {name!r}")
    return template


def _version(session: Session, template: EmailTemplate, version: int) -> EmailTemplateVersion:
    found = session.get(EmailTemplateVersion, (template.id, version))
    if found is None:
        raise NotFound(f"template {template.name!r} has no version {version}")
    return found
