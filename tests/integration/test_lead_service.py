from datetime import timedelta

import pytest
from sqlalchemy import select

from nurture.config import TemperatureThresholds
from nurture.errors import ValidationError
from nurture.leads.lifecycle import Stage, Temperature
from nurture.leads.models import Activity, ActorKind, Lead, StageChange
from nurture.leads.service import (
    Actor,
    change_stage,
    create_lead,
    find_lead,
    set_score,
    stage_history,
    timeline,
)

IMPORTER = Actor(ActorKind.IMPORT, "list.csv")


def test_create_lead_normalises_and_records_entry(session, clock):
    lead = create_lead(
        session, clock, "  Jane.Doe@ExAmple.COM ", actor=IMPORTER, first_name="Jane", tags=["vip", "vip"]
    )
    session.flush()
    assert lead.email == "Jane.Doe@example.com"
    assert lead.email_key == "jane.doe@example.com"
    assert lead.tag_names == ["vip"]
    assert lead.created_at == clock.now()
    [entry] = stage_history(session, lead)
    assert (entry.from_stage, entry.to_stage, entry.actor_kind, entry.actor) == (
        None,
        Stage.SUBSCRIBER,
        ActorKind.IMPORT,
        "list.csv",
    )
    assert [a.kind for a in timeline(session, lead)] == ["created"]


def test_email_identity_is_case_insensitive(session, clock):
    create_lead(session, clock, "jane@example.com", actor=IMPORTER)
    assert find_lead(session, "JANE@EXAMPLE.COM") is not None
    with pytest.raises(ValidationError, match="already exists"):
        create_lead(session, clock, "Jane@Example.com", actor=IMPORTER)


@pytest.mark.parametrize("bad", ["", "not-an-email", "a@b", "x@@example.com"])
def test_invalid_email_is_refused_with_field(session, clock, bad):
    with pytest.raises(ValidationError) as info:
        create_lead(session, clock, bad, actor=IMPORTER)
    assert info.value.where == "email"


def test_invalid_timezone_is_refused(session, clock):
    with pytest.raises(ValidationError, match="unknown time zone"):
        create_lead(session, clock, "a@example.com", actor=IMPORTER, timezone="Mars/Base")


def test_change_stage_records_history_and_timeline(session, clock):
    lead = create_lead(session, clock, "a@example.com", actor=IMPORTER)
    clock.advance(timedelta(days=3))
    change = change_stage(session, clock, lead, Stage.MQL, reason="score 40", actor=Actor(ActorKind.RULE, "mql-at-30"))
    session.flush()
    assert change is not None
    assert lead.stage is Stage.MQL
    assert lead.stage_entered_at == clock.now()
    history = stage_history(session, lead)
    assert [(h.from_stage, h.to_stage) for h in history] == [(None, Stage.SUBSCRIBER), (Stage.SUBSCRIBER, Stage.MQL)]
    assert history[1].reason == "score 40"
    assert history[1].actor == "mql-at-30"
    kinds = session.scalars(select(Activity.kind).where(Activity.lead_id == lead.id)).all()
    assert sorted(kinds) == ["created", "stage_changed"]


def test_change_to_same_stage_records_nothing(session, clock):
    lead = create_lead(session, clock, "a@example.com", actor=IMPORTER)
    assert change_stage(session, clock, lead, Stage.SUBSCRIBER, reason="noop", actor=IMPORTER) is None
    session.flush()
    assert session.scalar(select(StageChange).where(StageChange.lead_id == lead.id).offset(1)) is None


def test_datetimes_round_trip_as_aware_utc(session, clock):
    lead = create_lead(session, clock, "a@example.com", actor=IMPORTER)
    session.commit()
    session.expire_all()
    reloaded = session.get(Lead, lead.id)
    assert reloaded.created_at == clock.now()
    assert reloaded.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("score", "temperature"),
    [
        (0, Temperature.COLD),
        (19, Temperature.COLD),
        (20, Temperature.WARM),
        (49, Temperature.WARM),
        (50, Temperature.HOT),
    ],
)
def test_temperature_follows_score(session, clock, score, temperature):
    lead = create_lead(session, clock, "a@example.com", actor=IMPORTER)
    set_score(lead, score, TemperatureThresholds())
    assert lead.temperature is temperature
