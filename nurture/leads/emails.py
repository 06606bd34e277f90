"""Email address normalisation: one rule for the importer, the API and every lookup."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class InvalidEmail(ValueError):
    pass


def normalise_email(raw: str) -> str:
    """Trim, validate the syntax (no DNS) and lower-case the domain; the local part keeps its case.

    Raises ``InvalidEmail`` with the validator's human explanation."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidEmail("email is empty")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    local, _, domain = result.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


def email_key(email: str) -> str:
    """The identity of an address: lookups and uniqueness ignore case entirely."""
    return email.strip().lower()
