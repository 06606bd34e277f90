"""The campaign engine end to end on PostgreSQL: 100,000 enrollments whose send step is due, taken from
"due" to "sent" by one worker process, then by two.

Each worker process runs the two jobs as ``nurture worker`` does, each in its own thread: advance (claim a
batch of 500 due enrollments with FOR UPDATE SKIP LOCKED, run the send step: render the email for each
lead, compose it, write the messages, step log, timeline and enrollment moves in bulk, one commit per
batch) and dispatch (hand what is committed to a no-op mail backend, a real ``Mailer`` whose connection
accepts every message and discards it, in provider batches of 1,000). The clock is the system clock; the
send rate is set to 100,000/s so pacing never waits.

The email is ``tests/fixtures/templates/bench_newsletter.html`` (the template of ``bench.render``: 43 CSS
rules, a media query, loops, about 20 links), signed click and open tracking included. Beside the figure:
the bare render rate of the same template with the same context on one core, measured in the same run
(``EmailRenderer.render`` alone, no database, no compose, no compliance checks): the ceiling of a single
worker. Target: at least 1,500 emails/s with one worker.

The database is ``nurture_bench_engine`` on the local PostgreSQL, created and dropped by the run.

    .venv/bin/python -m bench.engine_bench [--emails 100000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text

from bench._postgres import drop_database, recreate_database
from nurture import migrate
from nurture.campaigns.models import CampaignStatus
from nurture.campaigns.store import save_campaign
from nurture.campaigns.validation import check_text
from nurture.clock import FixedClock, SystemClock
from nurture.config import Settings
from nurture.db import make_engine, make_session_factory
from nurture.delivery.mailbox import Mailbox
from nurture.delivery.mailer import DeliveryResult, MailConnection, Mailer, Outcome
from nurture.delivery.models import Message, MessageStatus
from nurture.delivery.outgoing import OutgoingEmail
from nurture.delivery.settings import DeliverySettings
from nurture.delivery.suppression import ClearedEmail
from nurture.engine.context import EngineContext, engine_context
from nurture.engine.enrollment import enrol_new_matches
from nurture.engine.tick import advance_job, dispatch_job
from nurture.rendering import lead_view

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "tests" / "fixtures" / "templates"
DATABASE = "nurture_bench_engine"
EMAILS = 100_000
TARGET_ONE_WORKER = 1500.0
PROVIDER_BATCH = 1000
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CAMPAIGN = """slug: spring
name: Spring picks
entry:
  - rules: {all: [{field: source, op: "=", value: bench}]}
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


class NullConnection(MailConnection):
    def _deliver(self, emails: list[OutgoingEmail]) -> list[DeliveryResult]:
        return DeliveryResult.for_all(emails, Outcome.SENT)


class NullMailer(Mailer):
    """Accepts every message and discards it: the cost of sending is the engine's and the outbox's."""

    name = "null"
    send_rate = 100_000.0

    def plan(self, batch: Sequence[ClearedEmail]) -> list[list[ClearedEmail]]:
        items = list(batch)
        return [items[start : start + PROVIDER_BATCH] for start in range(0, len(items), PROVIDER_BATCH)]

    def connect(self) -> NullConnection:
        return NullConnection()


def bench_settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        secret_key=SECRET,
        base_url="https://nurture.example.com",
        delivery=DeliverySettings(
            sender=Mailbox("news@shop.example.com", "Northwind Outfitters"),
            postal_address="12 Harbour Road, Bristol BS1 4XX, UK",
            list_id="<news.shop.example.com>",
            send_rate=NullMailer.send_rate,
        ),
    )


def bench_context(url: str) -> EngineContext:
    return engine_context(bench_settings(url), templates=TEMPLATES)


def seed(url: str, emails: int) -> None:
    """The campaign, ``emails`` leads made server-side, and their enrollments (one insert-select)."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    clock = FixedClock(START)
    with make_session_factory(engine)() as session:
        checked = check_text(CAMPAIGN, template_exists=lambda name: True, session=session)
        assert checked.definition is not None, checked.issues
        campaign = save_campaign(session, clock, checked.definition).campaign
        campaign.status, campaign.activated_at = CampaignStatus.ACTIVE, START
        session.execute(
            text(
                """
                INSERT INTO leads (email, email_key, first_name, last_name, company, timezone, locale, source,
                                   attributes, stage, stage_entered_at, score, temperature, status, created_at,
                                   updated_at)
                SELECT 'lead' || g || '@example.com', 'lead' || g || '@example.com',
                       (ARRAY['Ada', 'Zoë', 'Miguel', 'Åsa', 'Renée', NULL])[1 + g % 6],
                       (ARRAY['Lovelace', 'Brontë', 'O''Brien', NULL])[1 + g % 4],
                       (ARRAY['Acme & Sons', 'Ütopia GmbH', NULL])[1 + g % 3],
                       (ARRAY['Europe/Paris', 'America/New_York', 'Asia/Tokyo', NULL])[1 + g % 4],
                       (ARRAY['en_US', 'fr_FR', 'de_DE', NULL])[1 + g % 4],
                       'bench', '{}'::jsonb, 'subscriber', :start, g % 90, 'cold', 'active', :start, :start
                FROM generate_series(1, :emails) AS g
                """
            ),
            {"start": START, "emails": emails},
        )
        report = enrol_new_matches(session, clock, bench_context(url), limit=emails)
        assert report.total == emails, report.summary()
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def reset(url: str) -> None:
    """Every enrollment back on its due send step; the outbox and logs emptied."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE message_contents, messages, step_runs, send_rate_slots CASCADE"))
        connection.execute(text("DELETE FROM activities WHERE kind <> 'created'"))
        connection.execute(
            text(
                "UPDATE enrollments SET state = 'active', step_id = 'newsletter', next_run_at = :start, "
                "wait_until = NULL, waiting_for = NULL, attempts = '{}', failures = 0"
            ),
            {"start": START},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def work(url: str) -> None:
    """One worker process, as ``nurture worker`` runs it: the advance job and the dispatch job in two
    threads (APScheduler runs each job in its own thread), until nothing is due and the outbox is empty."""
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    engine = make_engine(url)
    session_factory = make_session_factory(engine)
    clock = SystemClock()
    ctx = bench_context(url)
    mailer = NullMailer()
    queued: list[int] = []
    advanced_all = threading.Event()

    def advance() -> None:
        try:
            while True:
                report = advance_job(session_factory, clock, ctx, max_batches=1)
                queued.append(report.emails)
                if not report.enrollments:
                    return
        finally:
            advanced_all.set()

    advancing = threading.Thread(target=advance, name="advance")
    advancing.start()
    sent = 0
    while True:
        finished = advanced_all.is_set()
        dispatched = dispatch_job(session_factory, clock, mailer, limit=PROVIDER_BATCH, max_rounds=1)
        sent += len(dispatched.sent)
        if finished and not dispatched.sent:
            break
        if not dispatched.sent:
            advanced_all.wait(0.05)  # nothing queued yet: let the advance thread commit a batch
    advancing.join()
    engine.dispose()
    print(json.dumps({"emails": sum(queued), "sent": sent}))


def run_workers(url: str, count: int, emails: int) -> tuple[float, list[dict[str, int]]]:
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.engine_bench", "--worker", url],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        if process.returncode != 0:
            raise RuntimeError(f"a worker failed with exit code {process.returncode}")
        reports.append(json.loads(out.splitlines()[-1]))
    elapsed = time.perf_counter() - started
    engine = make_engine(url)
    with engine.connect() as connection:
        sent = connection.scalar(select(func.count()).where(Message.status == MessageStatus.SENT))
        total = connection.scalar(select(func.count()).select_from(Message))
    engine.dispose()
    if sent != emails or total != emails:
        raise RuntimeError(f"expected {emails} messages sent once, found {total} messages, {sent} sent")
    return elapsed, reports


def render_rate(url: str, count: int = 3000) -> float:
    """The same template and context as the engine's, rendered alone on one core (CPU time)."""
    ctx = bench_context(url)
    compiled = ctx.renderer.compile("bench_newsletter.html")
    views = [
        lead_view({"id": n, "email": f"lead{n}@example.com", "first_name": ["Ada", "Zoë", None][n % 3],
                   "timezone": ["Europe/Paris", "Asia/Tokyo", None][n % 3]})
        for n in range(1, count + 1)
    ]  # fmt: skip
    campaign = {"slug": "spring", "name": "Spring picks", "step": "newsletter", "variant": None, "subject": "x"}

    def render(views_: list) -> None:
        for index, view in enumerate(views_):
            ctx.renderer.render(compiled, lead=view, sender=ctx.sender, now=START, campaign=campaign,
                                message_id=index + 1, urls=ctx.urls)  # fmt: skip

    render(views[:200])
    rates = []
    for start in range(0, count, count // 3):
        chunk = views[start : start + count // 3]
        began = time.process_time()
        render(chunk)
        rates.append(len(chunk) / (time.process_time() - began))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.engine_bench")
    parser.add_argument("--emails", type=int, default=EMAILS)
    parser.add_argument("--keep", action="store_true", help="Keep the database after the run.")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    if args.worker:
        work(args.worker)
        return
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)
    url = recreate_database(DATABASE)
    try:
        began = time.perf_counter()
        seed(url, args.emails)
        print(f"Seeded {args.emails:,} leads and due enrollments in {time.perf_counter() - began:.0f} s "
              f"(database {DATABASE}).", flush=True)  # fmt: skip
        ceiling = render_rate(url)
        results = {}
        for workers in (1, 2):
            reset(url)
            elapsed, reports = run_workers(url, workers, args.emails)
            results[workers] = args.emails / elapsed
            shares = ", ".join(f"{report['emails']:,}" for report in reports)
            load = os.getloadavg()[0]
            print(f"{workers} worker{'s' if workers > 1 else ''}: {args.emails:,} emails sent once in {elapsed:.1f} s "
                  f"(emails queued per worker: {shares}; load average {load:.1f} on {os.cpu_count()} cores)",
                  flush=True)  # fmt: skip
        one, two = results[1], results[2]
        print()
        print(f"Engine end to end, PostgreSQL, no-op backend, template bench_newsletter.html, {args.emails:,} emails")
        print(f"  bare render of the same template, one core:  {ceiling:8,.0f} emails/s (ceiling of one worker)")
        print(f"  one worker:                                  {one:8,.0f} emails/s "
              f"({one / ceiling:.0%} of the render rate)")
        print(f"  two workers:                                 {two:8,.0f} emails/s ({two / one:.2f}x one worker)")
        met = "met" if one >= TARGET_ONE_WORKER else "NOT met"
        print(f"  target: >= {TARGET_ONE_WORKER:,.0f} emails/s with one worker: {met}")
    finally:
        if not args.keep:
            drop_database(DATABASE)


if __name__ == "__main__":
    main()
