"""The scoring configuration in the database: storing a checked file, and reading what is in force.

Rules are matched by name: a rule that keeps its name keeps its id (and its caps and entries); a rule left
out of a newer file is disabled. Readers get the parsed configuration from a per-process cache keyed by the
time it was loaded, so an event costs one small query to learn whether the rules changed."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Lock
from typing import Any
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.clock import Clock
from nurture.scoring.config import (
    DEFAULT_FILE,
    ScoringConfig,
    parse_config,
    read_config_file,
    rule_from_definition,
    settings_document,
)
from nurture.scoring.models import ScoreRule, ScoringSettingsRow

SETTINGS_ROW_ID = 1


def _kind(definition: dict[str, Any]) -> str:
    return "fit" if "fit" in definition else "engagement"


def default_seed() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings document and the rule rows of the default file (for the migration that seeds them)."""
    _config, data = read_config_file(DEFAULT_FILE)
    rules = [
        {"name": raw["name"], "kind": _kind(raw), "position": position, "definition": raw}
        for position, raw in enumerate(data.get("rules", []))
    ]
    return settings_document(data), rules


@dataclass(frozen=True)
class LoadReport:
    added: list[str]
    updated: list[str]
    disabled: list[str]
    unchanged: list[str]

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged"]
        parts.append(f"{len(self.disabled)} disabled")
        return ", ".join(parts)


def store_config(session: Session, clock: Clock, data: dict[str, Any], source: str) -> LoadReport:
    """Make a checked scoring file (its data, as read by ``read_config``) the one in force."""
    now = clock.now()
    existing = {rule.name: rule for rule in session.scalars(select(ScoreRule))}
    report = LoadReport([], [], [], [])
    seen: set[str] = set()
    for position, raw in enumerate(data.get("rules", [])):
        name = raw["name"]
        seen.add(name)
        enabled = raw.get("enabled", True)
        rule = existing.get(name)
        if rule is None:
            session.add(
                ScoreRule(
                    name=name,
                    kind=_kind(raw),
                    position=position,
                    definition=raw,
                    enabled=enabled,
                    created_at=now,
                    updated_at=now,
                )
            )
            report.added.append(name)
        elif rule.definition != raw or rule.enabled != enabled or rule.position != position:
            rule.definition, rule.kind, rule.position, rule.enabled, rule.updated_at = (
                raw,
                _kind(raw),
                position,
                enabled,
                now,
            )
            report.updated.append(name)
        else:
            report.unchanged.append(name)
    for name, rule in existing.items():
        if name not in seen and rule.enabled:
            rule.enabled, rule.updated_at = False, now
            report.disabled.append(name)
    row = session.get(ScoringSettingsRow, SETTINGS_ROW_ID)
    if row is None:
        session.add(
            ScoringSettingsRow(
                id=SETTINGS_ROW_ID, document=settings_document(data), source=source, loaded_at=now, revision=uuid4().hex
            )
        )
    else:
        row.document, row.source, row.loaded_at, row.revision = settings_document(data), source, now, uuid4().hex
    session.flush()
    return report


class _Cache:
    def __init__(self) -> None:
        self.lock = Lock()
        self.entries: dict[tuple[str, str | None], ScoringConfig] = {}


_cache = _Cache()


def current_config(session: Session) -> ScoringConfig:
    """The scoring settings and enabled rules in force (rule ids filled in)."""
    row = session.execute(
        select(ScoringSettingsRow.document, ScoringSettingsRow.revision).where(ScoringSettingsRow.id == SETTINGS_ROW_ID)
    ).first()
    # Keyed by database too: tests and benchmarks run several databases in one process.
    key = (str(session.get_bind().engine.url), row.revision if row else None)
    with _cache.lock:
        found = _cache.entries.get(key)
    if found is not None:
        return found
    stored, _problems = parse_config(row.document if row else {})
    rules = tuple(
        rule_from_definition(definition, rule_id)
        for rule_id, definition in session.execute(
            select(ScoreRule.id, ScoreRule.definition).where(ScoreRule.enabled.is_(True)).order_by(ScoreRule.position)
        )
    )
    config = ScoringConfig(stored.settings, rules)
    with _cache.lock:
        if len(_cache.entries) > 64:
            _cache.entries.clear()
        _cache.entries[key] = config
    return config
