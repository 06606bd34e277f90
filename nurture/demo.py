"""Demo data for `make run`: about 500 realistic fake leads across every stage, with tags, attributes,
engagement and stage histories that tell a plausible story, plus a demo user, the built-in segments and
the starter campaigns of ``campaigns/``, active.

The campaigns went live an hour before the data ends, and then, at its last moment, a list of cold leads is
imported (tagged ``cold``) and a few deals are lost, so every starter campaign has leads to work on:
``nurture tick --now 2026-12-01T10:00`` (and later dates) fills the outbox. MQLs get an owner, whom the
MQL-to-meeting campaign alerts when they ask for a call.

Deterministic (seeded) so screenshots and docs stay stable."""

from __future__ import annotations

import io
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from faker import Faker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nurture import csvfile
from nurture.auth.models import Role
from nurture.auth.service import create_user, find_user
from nurture.campaigns.creation import STARTER_CAMPAIGNS
from nurture.campaigns.store import activate_campaign, load_campaign_files
from nurture.campaigns.validation import templates_in
from nurture.clock import Clock, FixedClock
from nurture.config import TemperatureThresholds
from nurture.leads.importer import ImportOptions, import_leads
from nurture.leads.lifecycle import FUNNEL, LeadStatus, Stage
from nurture.leads.models import ActorKind, Lead
from nurture.leads.service import Actor, change_stage, create_lead, record_activity
from nurture.rendering.sources import default_template_directory
from nurture.scoring.lifecycle import close_deal
from nurture.scoring.service import adjust_score

DEMO_USER_EMAIL = "admin@example.com"
# The tag the welcome-nurture campaign enrols imported leads by.
COLD_TAG = "cold"
COLD_IMPORT_FILE = "cold-leads-trade-show.csv"
COLD_SOURCE = "trade-show-list"
# The campaigns go live this long before the data ends, so the last imports and lost deals enrol.
CAMPAIGNS_LIVE_FOR = timedelta(hours=1)

# (Faker locale, country, IANA time zones, lead locale)
_MARKETS = [
    ("en_US", "US", ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"], "en"),
    ("en_GB", "GB", ["Europe/London"], "en"),
    ("fr_FR", "FR", ["Europe/Paris"], "fr"),
    ("de_DE", "DE", ["Europe/Berlin"], "de"),
    ("es_ES", "ES", ["Europe/Madrid"], "es"),
    ("en_CA", "CA", ["America/Toronto", "America/Vancouver"], "en"),
]
_MARKET_WEIGHTS = [40, 15, 18, 12, 7, 8]

_STAGE_WEIGHTS = {
    Stage.SUBSCRIBER: 28,
    Stage.LEAD: 24,
    Stage.MQL: 14,
    Stage.SQL: 8,
    Stage.OPPORTUNITY: 7,
    Stage.CUSTOMER: 10,
    Stage.LOST: 9,
}
_SOURCES = ["website", "webinar", "trade-show", "bought-list", "crm-export", "referral", "paid-social"]
_TAGS = ["newsletter", "webinar-2026", "trade-show", "enterprise", "smb", "partner", "vip", "product-tour"]
_INDUSTRIES = ["Software", "Manufacturing", "Retail", "Healthcare", "Finance", "Education", "Logistics"]
_COMPANY_SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]
_JOB_TITLES = [
    "Marketing Manager",
    "Head of Growth",
    "CMO",
    "Demand Generation Lead",
    "Sales Director",
    "Founder",
    "Operations Manager",
    "IT Director",
    "Product Marketing Manager",
]
_SALES_REPS = ["alice.martin@example.com", "bob.nguyen@example.com", "chloe.dubois@example.com"]
_LOST_REASONS = ["price", "chose a competitor", "no budget", "timing", "no decision"]
# Engagement a lead tends to show, by how far it went down the funnel.
_ENGAGEMENT_BY_STAGE = {
    Stage.SUBSCRIBER: 2,
    Stage.LEAD: 5,
    Stage.MQL: 9,
    Stage.SQL: 12,
    Stage.OPPORTUNITY: 14,
    Stage.CUSTOMER: 10,
    Stage.LOST: 8,
}


@dataclass(frozen=True)
class DemoSummary:
    leads: int
    user_email: str
    user_created: bool
    campaigns: tuple[str, ...] = field(default_factory=tuple)
    cold_imported: int = 0
    deals_lost: int = 0


def database_is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Lead))


def load_demo_data(
    session: Session,
    clock: Clock,
    thresholds: TemperatureThresholds,
    *,
    count: int = 500,
    seed: int = 2026,
    user_password: str = "nurture-demo",
    campaigns: Path | None = STARTER_CAMPAIGNS,
    templates: Path | None = None,
) -> DemoSummary:
    """Create ``count`` demo leads whose histories end at ``clock.now()`` (about one in twenty of them a
    fresh cold import) and, unless ``campaigns`` is None, load and activate the campaign files there,
    checked against the email templates of ``templates`` (default: ``nurture/email_templates/``). The caller
    commits."""
    from nurture.segments.builtin import ensure_builtin_segments

    rng = random.Random(seed)
    fakers = {locale: Faker(locale) for locale, *_ in _MARKETS}
    for index, faker in enumerate(fakers.values()):
        faker.seed_instance(seed + index)
    now = clock.now()
    story_clock = FixedClock(now)
    stages = list(_STAGE_WEIGHTS)
    stage_weights = list(_STAGE_WEIGHTS.values())

    cold_count = max(1, count // 20) if campaigns is not None else 0
    for number in range(count - cold_count):
        faker_locale, country, zones, locale = rng.choices(_MARKETS, _MARKET_WEIGHTS)[0]
        faker = fakers[faker_locale]
        first, last = faker.first_name(), faker.last_name()
        company = faker.company()
        email = _demo_email(first, last, company, str(number))
        target = rng.choices(stages, stage_weights)[0]
        created_at = now - timedelta(days=rng.uniform(20, 400), minutes=rng.randint(0, 1440))
        story_clock.set(created_at)
        lead = create_lead(
            session,
            story_clock,
            email,
            actor=Actor(ActorKind.IMPORT, rng.choice(["crm-export.csv", "webinar-signups.csv", "website"])),
            tags=rng.sample(_TAGS, rng.randint(0, 3)),
            attributes={
                "industry": rng.choice(_INDUSTRIES),
                "company_size": rng.choice(_COMPANY_SIZES),
                "annual_budget_eur": rng.choice([5_000, 20_000, 50_000, 120_000, 400_000]),
                "newsletter_opt_in": rng.random() < 0.7,
            },
            first_name=first,
            last_name=last,
            company=company,
            job_title=rng.choice(_JOB_TITLES),
            phone=faker.phone_number()[:50],
            country=country,
            timezone=rng.choice(zones),
            locale=locale,
            source=rng.choice(_SOURCES),
            consent_basis=rng.choice(["consent", "legitimate_interest"]),
            consent_source="demo data",
        )
        lead.consent_at = created_at
        _walk_funnel(session, story_clock, rng, lead, target, now)
        _add_engagement(session, rng, lead, target, created_at, now)
        if target in (Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.LOST) or rng.random() < 0.1:
            lead.owner = rng.choice(_SALES_REPS)
        if target is Stage.MQL and lead.owner is None:
            # The MQL-to-meeting campaign alerts the owner when the lead asks for a call.
            lead.owner = _SALES_REPS[number % len(_SALES_REPS)]
        lead.status = rng.choices(
            [LeadStatus.ACTIVE, LeadStatus.UNSUBSCRIBED, LeadStatus.BOUNCED, LeadStatus.COMPLAINED],
            [94, 4, 1.5, 0.5],
        )[0]
        # Through the scoring ledger, so the worker's score refresh keeps it (decaying like any engagement).
        session.flush()
        adjust_score(
            session, clock, thresholds, lead, _demo_score(rng, target), "demo engagement history", promote=False
        )
        lead.updated_at = now

    ensure_builtin_segments(session, clock)
    user_created = False
    if find_user(session, DEMO_USER_EMAIL) is None:
        create_user(session, clock, DEMO_USER_EMAIL, user_password, Role.ADMIN, "Demo admin")
        user_created = True
    session.flush()
    if campaigns is None:
        return DemoSummary(count, DEMO_USER_EMAIL, user_created)
    slugs = start_campaigns(session, FixedClock(now - CAMPAIGNS_LIVE_FOR), campaigns, templates)
    story_clock.set(now)
    imported = import_cold_leads(session, story_clock, fakers, rng, cold_count)
    lost = lose_deals(session, story_clock, rng, max(1, count // 50))
    session.flush()
    return DemoSummary(count - cold_count + imported, DEMO_USER_EMAIL, user_created, slugs, imported, lost)


def start_campaigns(session: Session, clock: Clock, directory: Path, templates: Path | None = None) -> tuple[str, ...]:
    """Load the campaign files of ``directory`` and activate them; their slugs."""
    exists = templates_in(templates or default_template_directory())
    report = load_campaign_files(session, clock, [directory], template_exists=exists)
    slugs = tuple(saved.campaign.slug for saved in report.saved)
    for slug in slugs:
        activate_campaign(session, clock, slug, template_exists=exists)
    session.flush()
    return slugs


def import_cold_leads(
    session: Session, clock: Clock, fakers: dict[str, Faker], rng: random.Random, count: int
) -> int:
    """Import ``count`` cold leads from a trade-show list, through the CSV importer, tagged ``cold``; how many
    were created. Every other one is French, so the welcome series shows both languages."""
    buffer = io.StringIO()
    writer = csvfile.writer(buffer)
    writer.writerow(["Email", "First name", "Last name", "Company", "Job title", "Country", "Time zone", "Language"])
    for number in range(count):
        market = _MARKETS[2] if number % 2 else rng.choices(_MARKETS, _MARKET_WEIGHTS)[0]
        faker_locale, country, zones, locale = market
        faker = fakers[faker_locale]
        first, last, company = faker.first_name(), faker.last_name(), faker.company()
        email = _demo_email(first, last, company, f"cold{number}")
        writer.writerow([email, first, last, company, rng.choice(_JOB_TITLES), country, rng.choice(zones), locale])
    options = ImportOptions(tags=(COLD_TAG,), source=COLD_SOURCE, file_name=COLD_IMPORT_FILE)
    report = import_leads(session, clock, io.BytesIO(buffer.getvalue().encode("utf-8")), options)
    return report.created


def lose_deals(session: Session, clock: Clock, rng: random.Random, count: int) -> int:
    """Close ``count`` open opportunities as lost now (the re-engagement campaign's entry); how many."""
    opportunities = session.scalars(
        select(Lead)
        .where(Lead.stage == Stage.OPPORTUNITY, Lead.status == LeadStatus.ACTIVE)
        .order_by(Lead.id)
        .limit(count)
    ).all()
    for lead in opportunities:
        actor = Actor(ActorKind.USER, lead.owner or rng.choice(_SALES_REPS))
        close_deal(session, clock, lead, won=False, reason=rng.choice(_LOST_REASONS), actor=actor)
    return len(opportunities)


def _demo_email(first: str, last: str, company: str, suffix: str) -> str:
    """``first.last.suffix@company.example``, in plain ASCII; ``suffix`` keeps namesakes apart."""
    return f"{_ascii_word(first, 'lead')}.{_ascii_word(last, 'x')}.{suffix}@{_ascii_word(company, 'acme')[:20]}.example"


def _ascii_word(text: str, fallback: str) -> str:
    """Lower-case ASCII letters and digits of ``text`` (accents folded), for building demo addresses."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum()) or fallback


def _walk_funnel(
    session: Session, story_clock: FixedClock, rng: random.Random, lead: Lead, target: Stage, now: datetime
) -> None:
    """Move the lead stage by stage, a few days to weeks apart, so time-in-stage reports have data."""
    if target is Stage.LOST:
        path = [*FUNNEL[1 : rng.choice([3, 4, 5])], Stage.LOST]
    else:
        path = list(FUNNEL[1 : FUNNEL.index(target) + 1])
    budget = (now - story_clock.now()).total_seconds()
    step = budget / (len(path) + 1) if path else 0
    for stage in path:
        story_clock.advance(timedelta(seconds=step * rng.uniform(0.5, 1.0)))
        actor = Actor(ActorKind.RULE, "score threshold") if stage in (Stage.LEAD, Stage.MQL) else Actor(
            ActorKind.USER, rng.choice(_SALES_REPS)
        )
        reason = f"deal lost: {rng.choice(_LOST_REASONS)}" if stage is Stage.LOST else f"qualified as {stage.value}"
        change_stage(session, story_clock, lead, stage, reason=reason, actor=actor)


def _add_engagement(
    session: Session, rng: random.Random, lead: Lead, target: Stage, start: datetime, now: datetime
) -> None:
    span = (now - start).total_seconds()
    last: datetime | None = None
    for _ in range(rng.randint(0, _ENGAGEMENT_BY_STAGE[target] * 2)):
        sent_at = start + timedelta(seconds=rng.uniform(0, span))
        campaign = rng.choice(["welcome", "nurture-education", "mql-to-meeting", "re-engage-lost"])
        record_activity(session, lead, "email_sent", sent_at, {"subject": "Demo email"}, campaign=campaign)
        if rng.random() < 0.55:
            opened_at = sent_at + timedelta(minutes=rng.randint(5, 3000))
            if opened_at < now:
                record_activity(session, lead, "opened", opened_at, None, campaign=campaign)
                last = max(last or opened_at, opened_at)
                if rng.random() < 0.35:
                    clicked_at = opened_at + timedelta(minutes=rng.randint(0, 30))
                    record_activity(
                        session, lead, "clicked", clicked_at, {"url": "https://example.com/guide"}, campaign=campaign
                    )
                    last = max(last, clicked_at)
    for kind in ("page_visited", "form_submitted"):
        if rng.random() < 0.3:
            at = start + timedelta(seconds=rng.uniform(0, span))
            record_activity(session, lead, kind, at, {"page": "/pricing"} if kind == "page_visited" else None)
            last = max(last or at, at)
    lead.last_engaged_at = last


def _demo_score(rng: random.Random, target: Stage) -> int:
    base = {
        Stage.SUBSCRIBER: 3,
        Stage.LEAD: 12,
        Stage.MQL: 30,
        Stage.SQL: 45,
        Stage.OPPORTUNITY: 55,
        Stage.CUSTOMER: 40,
        Stage.LOST: 15,
    }[target]
    return max(0, int(rng.gauss(base, 10)))
