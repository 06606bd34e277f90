"""The last gate before a backend: no email reaches a lead who unsubscribed, bounced, complained or
was erased, nor an address that belongs to such a lead, whatever the caller passed.

Backends accept only ``ClearedEmail`` values, and the only way to make one is ``clear_for_sending``,
which reads lead status from the database in the caller's transaction (the dispatcher's claim).
The check is at a single choke point, so no code path can skip it by calling a backend directly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.delivery.bulk import among
from nurture.delivery.compliance import marketing_problems
from nurture.delivery.outgoing import OutgoingEmail
from nurture.leads.emails import email_key
from nurture.leads.lifecycle import SUPPRESSED_STATUSES, LeadStatus
from nurture.leads.models import Lead

# Only this module holds it; ClearedEmail refuses to be built without it.
_CLEARANCE = object()


class SuppressionBypassError(RuntimeError):
    """Code tried to hand a backend an email that did not pass ``clear_for_sending``: a bug."""


class ClearedEmail:
    """An email that passed the suppression and compliance checks in the claiming transaction."""

    __slots__ = ("email",)

    def __init__(self, email: OutgoingEmail, clearance: object) -> None:
        if clearance is not _CLEARANCE:
            raise SuppressionBypassError("only clear_for_sending may clear an email for sending")
        self.email = email

    def __repr__(self) -> str:
        return f"ClearedEmail({self.email.message_id!r})"


def unwrap_cleared(batch: Iterable[object]) -> list[OutgoingEmail]:
    emails = []
    for item in batch:
        if type(item) is not ClearedEmail:
            raise SuppressionBypassError(
                f"backends send only emails cleared by the dispatcher's suppression check, not {type(item).__name__}"
            )
        emails.append(item.email)
    return emails


def suppression_reasons(session: Session, recipients: Sequence[tuple[int, str]]) -> dict[int, str]:
    """For each (lead id, address) at index i that must not be mailed: i -> why.

    A recipient is suppressed when its lead is gone or not active, or when its address belongs to
    any suppressed lead (by ``email_key``, so case variants match too)."""
    if not recipients:
        return {}
    lead_ids = {lead_id for lead_id, _ in recipients}
    statuses = dict(session.execute(select(Lead.id, Lead.status).where(among(session, Lead.id, lead_ids))).all())
    keys = {email_key(address) for _, address in recipients}
    suppressed_keys = dict(
        session.execute(
            select(Lead.email_key, Lead.status).where(
                among(session, Lead.email_key, keys), Lead.status.in_(SUPPRESSED_STATUSES)
            )
        ).all()
    )
    reasons: dict[int, str] = {}
    for index, (lead_id, address) in enumerate(recipients):
        status = statuses.get(lead_id)
        key = email_key(address)
        if status is None:
            reasons[index] = f"lead {lead_id} no longer exists"
        elif status is not LeadStatus.ACTIVE:
            reasons[index] = f"lead is {status.value}"
        elif key in suppressed_keys:
            reasons[index] = f"address {address!r} belongs to a lead who is {suppressed_keys[key].value}"
    return reasons


@dataclass
class Clearance:
    cleared: list[ClearedEmail] = field(default_factory=list)
    # message id -> reason
    suppressed: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def clear_for_sending(session: Session, emails: Sequence[OutgoingEmail]) -> Clearance:
    """Split ``emails`` into those a backend may send, the suppressed, and the non-compliant."""
    clearance = Clearance()
    reasons = suppression_reasons(session, [(email.lead_id, email.to_address) for email in emails])
    for index, email in enumerate(emails):
        if index in reasons:
            clearance.suppressed[email.message_id] = reasons[index]
            continue
        problems = marketing_problems(email)
        if problems:
            clearance.refused[email.message_id] = "refused before sending: " + "; ".join(problems)
            continue
        clearance.cleared.append(ClearedEmail(email, _CLEARANCE))
    return clearance
