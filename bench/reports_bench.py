"""The sales reports of ``nurture.leads.funnel`` (``funnel_report``, with and without ``cohort``, ``lost_report``,
``velocity_report``, ``month_cohorts``; see docs/reports.md) on N generated leads, on PostgreSQL and SQLite.

Each lead is created at a random moment of the two years before ``NOW`` and walks the funnel at random (about
20 days between changes, a 30% chance to stop at each step, a 20% chance from mql on to be lost with one of a few
reasons, and a 30% chance for a lost lead to be re-engaged), so ``stage_changes`` holds about three rows a lead.
Each report is timed best of 3 for a 2-year period and a 90-day one, each run in a fresh session. Baseline,
measured in the same run for the same period: a plain ``SELECT to_stage, count(*) FROM stage_changes WHERE
changed_at >= <start> GROUP BY to_stage``, one pass over the same rows the reports read; each report is printed
with its ratio to it. There is no target: the figures and the ratios are the result.

The PostgreSQL database is ``nurture_bench_reports`` on the local server, created and dropped by the run
(``--keep`` keeps it); the data is loaded with COPY. The SQLite file lives in a temporary directory (loaded with
executemany through SQLAlchemy core) and is always removed.

    .venv/bin/python -m bench.reports_bench [--leads 200000] [--keep] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from bench._postgres import conninfo, drop_database, recreate_database
from nurture import migrate
from nurture.db import make_engine
from nurture.leads.funnel import Period, funnel_report, lost_report, month_cohorts, velocity_report
from nurture.leads.lifecycle import FUNNEL, Stage
from nurture.leads.models import Lead, StageChange

DATABASE = "nurture_bench_reports"
DEFAULT_LEADS = 200_000
RUNS = 3
BATCH = 10_000
SEED = 7
NOW = datetime(2026, 11, 1, tzinfo=UTC)
HISTORY = timedelta(days=730)
PERIOD_DAYS = (730, 90)
MEAN_DAYS_BETWEEN_CHANGES = 20
STOP_CHANCE = 0.3
LOSS_CHANCE = 0.2
RE_ENGAGE_CHANCE = 0.3
LOST_REASONS = ("deal lost: budget", "deal lost: timing", "deal lost: competitor", "deal lost", "changed by hand")

LEAD_COLUMNS = ("id", "email", "email_key", "stage", "stage_entered_at", "score", "temperature", "status",
                "attributes", "created_at", "updated_at")  # fmt: skip
CHANGE_COLUMNS = ("lead_id", "from_stage", "to_stage", "changed_at", "reason", "actor_kind")

Row = dict[str, Any]


def stage_walk(rng: random.Random, created: datetime) -> list[tuple[Stage | None, Stage, datetime, str]]:
    """One lead's stage changes, from its creation on: (from, to, when, reason)."""
    changes: list[tuple[Stage | None, Stage, datetime, str]] = [(None, Stage.SUBSCRIBER, created, "created")]
    stage, at = Stage.SUBSCRIBER, created
    while True:
        at += timedelta(seconds=rng.expovariate(1 / (MEAN_DAYS_BETWEEN_CHANGES * 86400)))
        if at >= NOW or stage is Stage.CUSTOMER or rng.random() < STOP_CHANCE:
            return changes
        if stage is Stage.LOST:
            if rng.random() >= RE_ENGAGE_CHANCE:
                return changes
            following, reason = Stage.LEAD, "re-engaged"
        elif (stage.rank or 0) >= FUNNEL.index(Stage.MQL) and rng.random() < LOSS_CHANCE:
            following, reason = Stage.LOST, rng.choice(LOST_REASONS)
        else:
            following, reason = FUNNEL[(stage.rank or 0) + 1], "moved up"
        changes.append((stage, following, at, reason))
        stage = following


def generate(leads: int) -> Iterator[tuple[list[Row], list[Row]]]:
    """Batches of (leads, stage changes), deterministic for a given number of leads."""
    rng = random.Random(SEED)
    start = NOW - HISTORY
    for base in range(0, leads, BATCH):
        lead_rows: list[Row] = []
        change_rows: list[Row] = []
        for lead_id in range(base + 1, min(leads, base + BATCH) + 1):
            created = start + timedelta(seconds=rng.uniform(0, (HISTORY - timedelta(days=1)).total_seconds()))
            walk = stage_walk(rng, created)
            email = f"lead{lead_id}@example.com"
            lead_rows.append({
                "id": lead_id, "email": email, "email_key": email, "stage": walk[-1][1].value,
                "stage_entered_at": walk[-1][2], "score": 0, "temperature": "cold", "status": "active",
                "attributes": {}, "created_at": created, "updated_at": walk[-1][2],
            })  # fmt: skip
            for from_stage, to_stage, changed_at, reason in walk:
                change_rows.append({
                    "lead_id": lead_id, "from_stage": from_stage.value if from_stage else None,
                    "to_stage": to_stage.value, "changed_at": changed_at, "reason": reason,
                    "actor_kind": "import" if from_stage is None else "rule",
                })  # fmt: skip
        yield lead_rows, change_rows


def load_postgresql(leads: int) -> None:
    """COPY into the migrated tables, then VACUUM ANALYZE so that the planner knows the data."""
    lead_copy = f"COPY leads ({', '.join(LEAD_COLUMNS)}) FROM STDIN"
    change_copy = f"COPY stage_changes ({', '.join(CHANGE_COLUMNS)}) FROM STDIN"
    with psycopg.connect(conninfo(DATABASE)) as conn:
        with conn.cursor() as cursor:
            for lead_rows, change_rows in generate(leads):
                with cursor.copy(lead_copy) as copy:
                    for row in lead_rows:
                        copy.write_row([("{}" if name == "attributes" else row[name]) for name in LEAD_COLUMNS])
                with cursor.copy(change_copy) as copy:
                    for row in change_rows:
                        copy.write_row([row[name] for name in CHANGE_COLUMNS])
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE leads")
        conn.execute("VACUUM ANALYZE stage_changes")


def load_sqlite(engine: Engine, leads: int) -> None:
    with engine.begin() as connection:
        for lead_rows, change_rows in generate(leads):
            connection.execute(insert(Lead), lead_rows)
            connection.execute(insert(StageChange), change_rows)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))


def best_of(engine: Engine, query: Callable[[Session, Period], Any], period: Period) -> float:
    best = float("inf")
    for _ in range(RUNS):
        with Session(engine) as session:
            started = time.perf_counter()
            query(session, period)
            best = min(best, time.perf_counter() - started)
    return best


def baseline_query(session: Session, period: Period) -> Any:
    return session.execute(
        select(StageChange.to_stage, func.count())
        .where(StageChange.changed_at >= period.start)
        .group_by(StageChange.to_stage)
    ).all()


REPORTS: dict[str, Callable[[Session, Period], Any]] = {
    "funnel_report": lambda session, period: funnel_report(session, period, NOW),
    "funnel_report cohort=True": lambda session, period: funnel_report(session, period, NOW, cohort=True),
    "lost_report": lambda session, period: lost_report(session, period, NOW),
    "velocity_report": lambda session, period: velocity_report(session, period, NOW),
    "month_cohorts": lambda session, period: month_cohorts(session, period, NOW),
}


def measure(engine: Engine, label: str) -> None:
    with Session(engine) as session:
        leads = session.scalar(select(func.count()).select_from(Lead))
        changes = session.scalar(select(func.count()).select_from(StageChange))
    print(f"\n{label}: {leads:,} leads, {changes:,} stage changes; best of {RUNS}, ms", flush=True)
    for days in PERIOD_DAYS:
        period = Period.of_days((NOW - timedelta(days=days)).date(), (NOW - timedelta(days=1)).date())
        with Session(engine) as session:
            rows = session.scalar(
                select(func.count()).select_from(StageChange).where(StageChange.changed_at >= period.start)
            )
        baseline = best_of(engine, baseline_query, period)
        print(f"  {days}-day period ({period.first_day} to {period.last_day}, {rows:,} changes from its start on)")
        print(f"    {'baseline GROUP BY to_stage':28s} {baseline * 1000:9.1f}")
        for name, report in REPORTS.items():
            seconds = best_of(engine, report, period)
            print(f"    {name:28s} {seconds * 1000:9.1f}  {seconds / baseline:6.1f}x the baseline", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reports_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=DEFAULT_LEADS, help="leads to generate")
    parser.add_argument("--keep", action="store_true", help=f"keep the PostgreSQL database {DATABASE}")
    parser.add_argument("--skip-sqlite", action="store_true", help="measure PostgreSQL only")
    args = parser.parse_args(argv or [])

    url = recreate_database(DATABASE)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        load_postgresql(args.leads)
        print(f"PostgreSQL ({DATABASE}): generated {args.leads:,} leads in {time.perf_counter() - started:.1f} s",
              flush=True)  # fmt: skip
        measure(engine, "PostgreSQL")
        engine.dispose()
    finally:
        if not args.keep:
            drop_database(DATABASE)

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="nurture-reports-bench-") as directory:
            engine = make_engine(f"sqlite:///{Path(directory) / 'reports.db'}")
            migrate.upgrade(engine)
            started = time.perf_counter()
            load_sqlite(engine, args.leads)
            print(f"\nSQLite: generated {args.leads:,} leads in {time.perf_counter() - started:.1f} s", flush=True)
            measure(engine, "SQLite")
            engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
