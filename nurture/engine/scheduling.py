"""When a send may go: the campaign's send window on the lead's wall clock, and the frequency cap that
counts the lead's marketing emails across every campaign.

A send that may not go now is deferred, never dropped: to the window's next opening, or to the moment the
oldest email in the cap's period ages out of it. The cap's period is rolling (any 24 hours, any 7 days),
so it means the same in every time zone and across daylight-saving changes."""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.campaigns.definition import CapPeriod, FrequencyCap, SendWindow
from nurture.delivery.models import Message, MessageStatus
from nurture.leads.emails import email_key

CAP_PERIODS = {CapPeriod.DAY: timedelta(days=1), CapPeriod.WEEK: timedelta(days=7)}
LONGEST_CAP_PERIOD = max(CAP_PERIODS.values())
# Messages that never reached anyone do not use up the cap.
_NOT_COUNTED = (MessageStatus.FAILED, MessageStatus.SUPPRESSED)


@dataclass(frozen=True)
class Deferral:
    until: datetime
    reason: str


def window_deferral(window: SendWindow | None, now: datetime, zone: ZoneInfo) -> Deferral | None:
    """None when the window is open now (or there is none); else when it opens next."""
    if window is None or window.is_open(now, zone):
        return None
    return Deferral(window.next_opening(now, zone), "outside the send window")


class CapLedger:
    """The recent marketing emails of a batch's leads, to apply frequency caps without a query per send.

    Loaded once per batch for every lead of the batch; emails queued during the batch are added as they
    are, so two sends to one lead in one batch (two campaigns, or two steps) count each other."""

    def __init__(self) -> None:
        self._sent: dict[int, list[datetime]] = defaultdict(list)

    @classmethod
    def load(cls, session: Session, now: datetime, leads: Iterable[tuple[int, str]]) -> CapLedger:
        """``leads``: (lead id, address). Only emails to the lead's own address count (not owner alerts)."""
        ledger = cls()
        addresses = {lead_id: email_key(address) for lead_id, address in leads}
        if not addresses:
            return ledger
        rows = session.execute(
            select(Message.lead_id, Message.to_address, Message.created_at).where(
                Message.lead_id.in_(list(addresses)),
                Message.created_at > now - LONGEST_CAP_PERIOD,
                Message.campaign.is_not(None),
                Message.status.not_in(_NOT_COUNTED),
            )
        )
        for lead_id, to_address, created_at in rows:
            if email_key(to_address) == addresses[lead_id]:
                insort(ledger._sent[lead_id], created_at)
        return ledger

    def add(self, lead_id: int, at: datetime) -> None:
        insort(self._sent[lead_id], at)

    def deferral(self, cap: FrequencyCap | None, lead_id: int, now: datetime) -> Deferral | None:
        """None when one more email fits under ``cap`` now; else when the next one fits."""
        if cap is None:
            return None
        period = CAP_PERIODS[cap.per]
        recent = [at for at in self._sent.get(lead_id, ()) if at > now - period]
        if len(recent) < cap.emails:
            return None
        # The email that must age out first: once it is older than the period, one more fits.
        oldest_blocking = recent[len(recent) - cap.emails]
        return Deferral(oldest_blocking + period, f"frequency cap of {cap.emails} per {cap.per.value}")
