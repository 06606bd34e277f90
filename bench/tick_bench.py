"""A tick's cost follows the due work, not the number of enrollments: one full engine pass (``run_tick``:
tracking events, enrol, goals and exits, advance, recover, dispatch) with 1,000 due enrollments among 10,000, then among
1,000,000, on PostgreSQL.

Both databases hold the same campaign (entry ``on_event``, a goal, send / wait 7 days / send) and leads
generated server-side (INSERT ... SELECT generate_series): 1,000 enrollments due on the send step, every
other one waiting in the 7-day wait. Each tick is measured three times (the 1,000 are made due again
between runs, with a new attempt number, so every run renders, writes and dispatches 1,000 new emails
through a no-op backend); the median is reported. Target: the tick among 1,000,000 takes at most twice as
long as the tick among 10,000.

Databases ``nurture_bench_tick_10k`` and ``nurture_bench_tick_1m`` on the local PostgreSQL are created and
dropped by the run (generating the million rows takes a minute or two).

    .venv/bin/python -m bench.tick_bench [--keep]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from datetime import timedelta

from sqlalchemy import text

from bench._postgres import drop_database, recreate_database
from bench.engine_bench import (
    START,
    TEMPLATES,
    NullMailer,
    bench_settings,
)
from nurture import migrate
from nurture.campaigns.models import CampaignStatus
from nurture.campaigns.store import save_campaign
from nurture.campaigns.validation import check_text
from nurture.clock import FixedClock
from nurture.db import make_engine, make_session_factory
from nurture.engine.context import engine_context
from nurture.engine.tick import TickReport, run_tick
from nurture.tracking.jobs import score_refresh_job

DUE = 1000
SIZES = {"nurture_bench_tick_10k": 10_000, "nurture_bench_tick_1m": 1_000_000}
RUNS = 3
TARGET_RATIO = 2.0
NOW = START + timedelta(days=1)
CAMPAIGN = """slug: spring
name: Spring picks
entry:
  - on_event: spring_signup
goal:
  rules: {entered_stage: customer}
steps:
  - id: newsletter
    type: send
    template: bench_newsletter
    subject: "Spring picks for {{ lead.first_name or 'you' }}"
  - id: pause
    type: wait
    for: 7d
  - id: follow-up
    type: send
    template: bench_newsletter
    subject: Still thinking about it?
"""


def seed(url: str, total: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    clock = FixedClock(START)
    with make_session_factory(engine)() as session:
        checked = check_text(CAMPAIGN, template_exists=lambda name: True, session=session)
        assert checked.definition is not None, checked.issues
        campaign = save_campaign(session, clock, checked.definition).campaign
        campaign.status, campaign.activated_at = CampaignStatus.ACTIVE, START
        session.flush()
        parameters = {"start": START, "now": NOW, "total": total, "due": DUE, "campaign": campaign.id}
        session.execute(
            text(
                """
                INSERT INTO leads (email, email_key, first_name, timezone, source, attributes, stage,
                                   stage_entered_at, score, temperature, status, created_at, updated_at)
                SELECT 'lead' || g || '@example.com', 'lead' || g || '@example.com',
                       (ARRAY['Ada', 'Zoë', 'Miguel', NULL])[1 + g % 4],
                       (ARRAY['Europe/Paris', 'America/New_York', 'Asia/Tokyo', NULL])[1 + g % 4],
                       'bench', '{}'::jsonb, 'subscriber', :start, g % 90, 'cold', 'active', :start, :start
                FROM generate_series(1, :total) AS g
                """
            ),
            parameters,
        )
        # The first DUE leads are due on the send step; the others wait, waking over the next 7 days.
        session.execute(
            text(
                """
                INSERT INTO enrollments (campaign_id, lead_id, state, step_id, next_run_at, step_started_at,
                                         wait_until, attempts, failures, campaign_version, source, entered_at,
                                         updated_at)
                SELECT :campaign, l.id,
                       CASE WHEN l.id <= :due THEN 'active' ELSE 'waiting' END,
                       CASE WHEN l.id <= :due THEN 'newsletter' ELSE 'pause' END,
                       CASE WHEN l.id <= :due THEN :now - interval '1 minute'
                            ELSE :now + (l.id % 10080) * interval '1 minute' + interval '1 minute' END,
                       :start,
                       CASE WHEN l.id <= :due THEN NULL
                            ELSE :now + (l.id % 10080) * interval '1 minute' + interval '1 minute' END,
                       '{}'::jsonb, 0, 1, 'rules', :start, :start
                FROM leads AS l
                """
            ),
            parameters,
        )
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def make_due_again(url: str) -> None:
    """The DUE enrollments back on the send step; their next email is a new attempt (a new key)."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE enrollments SET state = 'active', step_id = 'newsletter', wait_until = NULL, "
                "next_run_at = :due_at WHERE lead_id <= :due"
            ),
            {"due_at": NOW - timedelta(minutes=1), "due": DUE},
        )
    engine.dispose()


def measure(url: str) -> tuple[list[float], TickReport]:
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    ctx = engine_context(bench_settings(url), templates=TEMPLATES)
    mailer = NullMailer()
    seconds = []
    report = None
    clock = FixedClock(NOW)
    # A tick also refreshes every lead's score when the last refresh is 15 minutes old: a sweep of all leads
    # by nature, due four times an hour rather than with the work. Run it first, timed on its own, so the
    # measured ticks hold only the due work (the clock stands still between them).
    began = time.perf_counter()
    refreshed = score_refresh_job(session_factory, clock, ctx)
    print(f"  score refresh of all leads ({refreshed.summary()}): {time.perf_counter() - began:.2f} s", flush=True)
    for run in range(RUNS + 1):
        if run:
            make_due_again(url)
        began = time.perf_counter()
        report = run_tick(session_factory, clock, ctx, mailer, sleeper=lambda wait: None)
        elapsed = time.perf_counter() - began
        if report.advanced.emails != DUE or len(report.dispatched.sent) != DUE:
            raise RuntimeError(f"expected {DUE} emails, got: {'; '.join(report.lines())}")
        if run:  # the first run warms caches (templates, plans) and is not counted
            seconds.append(elapsed)
    engine.dispose()
    assert report is not None
    return seconds, report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.tick_bench")
    parser.add_argument("--keep", action="store_true", help="Keep the databases after the run.")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    medians = {}
    try:
        for name, total in SIZES.items():
            url = recreate_database(name)
            began = time.perf_counter()
            seed(url, total)
            print(f"{name}: {total:,} leads and enrollments generated in {time.perf_counter() - began:.0f} s",
                  flush=True)  # fmt: skip
            seconds, report = measure(url)
            medians[total] = statistics.median(seconds)
            runs = ", ".join(f"{value:.2f}" for value in seconds)
            print(f"  tick with {DUE:,} due among {total:,}: median {medians[total]:.2f} s (runs: {runs})", flush=True)
            print(f"  last tick: {report.advanced.summary()}", flush=True)
        small, large = medians[10_000], medians[1_000_000]
        ratio = large / small
        print()
        print(f"One full tick (enrol, goals, advance, recover, dispatch) with {DUE:,} due enrollments, PostgreSQL")
        print(f"  among    10,000 enrollments: {small:6.2f} s")
        print(f"  among 1,000,000 enrollments: {large:6.2f} s")
        met = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO:.0f}): {met}")
    finally:
        if not args.keep:
            for name in SIZES:
                drop_database(name)


if __name__ == "__main__":
    main()
