"""The campaign designer under load: a 40-step campaign with 1,000,000 enrollments and 5,000,000 engagement
events on PostgreSQL.

Measured, as server time through the WSGI app (Flask's test client, signed in, no network):
- the editor page (``GET /campaigns/<slug>/edit``) with the flow diagram and its counts for the last 30 days,
  beside the same page without the counts (``?stats=off``) from the same run: the cost of the counts;
- saving a step through its form (``POST /campaigns/<slug>/edit/steps/<id>``: the form read back, the draft
  written on its revision, the whole definition validated), beside a bare ``UPDATE`` of the draft row.

Targets (issue 10): the page with counts under 300 ms, a save under 100 ms. Each figure is the median of
``--runs`` requests after one warm-up.

The data: 1,000,000 leads; one enrollment each, spread over the 40 steps (live ones on waits and wait_fors);
two step runs per enrollment (the step it came through and the one it is on); one sent email per enrollment,
from the send steps; five engagement events per email (delivered, two opens, a click, and one machine open
every other email). Loaded with INSERT ... SELECT over generate_series, then VACUUM ANALYZE. The database is
``nurture_bench_designer`` on the local server, created and dropped by the run (``--keep`` keeps it).

    .venv/bin/python -m bench.designer_bench [--enrollments 1000000] [--runs 9] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text

from bench._postgres import conninfo, drop_database, recreate_database
from nurture import migrate
from nurture.app import create_app
from nurture.auth.models import Role
from nurture.auth.service import create_user
from nurture.campaigns.definition import CampaignDefinition
from nurture.campaigns.formdata import step_to_form
from nurture.campaigns.store import save_campaign
from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.db import make_engine, make_session_factory

DATABASE = "nurture_bench_designer"
SLUG = "forty-steps"
STEPS = 40
PAGE_TARGET_MS = 300
SAVE_TARGET_MS = 100
PASSWORD = "bench password"


def forty_steps() -> dict[str, Any]:
    """Ten blocks of four: send, wait_for a click on it (yes jumps two blocks on), a branch on the lead's
    score (yes jumps a block on), a wait; then every target exists and the flow has many crossing branches."""
    steps: list[dict[str, Any]] = []
    for block in range(STEPS // 4):
        ahead = min(block + 2, STEPS // 4 - 1)
        steps += [
            {"id": f"send-{block}", "type": "send", "template": "welcome"},
            {"id": f"clicked-{block}", "type": "wait_for", "event": "clicked", "step": f"send-{block}",
             "within": "3d", "yes": f"send-{ahead}"},
            {"id": f"hot-{block}", "type": "branch", "if": {"rules": {"field": "score", "op": ">=", "value": 50}},
             "yes": f"send-{min(block + 1, STEPS // 4 - 1)}"},
            {"id": f"pause-{block}", "type": "wait", "for": "2d"},
        ]  # fmt: skip
    steps[-1] = {"id": "done", "type": "exit", "as": "converted"}
    steps[-2]["yes"] = "done"
    steps[-3]["yes"] = "done"
    return {"slug": SLUG, "name": "Forty steps", "entry": [{"on_stage": "lost"}], "steps": steps}


def load(url: str, enrollments: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    clock = SystemClock()
    with make_session_factory(engine)() as session:
        save_campaign(session, clock, CampaignDefinition.from_data(forty_steps()))
        create_user(session, clock, "bench@example.com", PASSWORD, Role.MARKETER)
        session.commit()
    engine.dispose()
    ids = [step["id"] for step in forty_steps()["steps"]]
    sends = [step_id for step_id in ids if step_id.startswith("send-")]
    step_array = "ARRAY[" + ",".join(f"'{step_id}'" for step_id in ids) + "]"
    send_array = "ARRAY[" + ",".join(f"'{step_id}'" for step_id in sends) + "]"
    now = datetime.now(UTC)
    statements = [
        f"""INSERT INTO leads (id, email, email_key, stage, stage_entered_at, score, temperature, status, attributes,
                created_at, updated_at)
            SELECT n, 'lead' || n || '@example.com', 'lead' || n || '@example.com', 'lost', %(now)s, n %% 100,
                   'cold', 'active', '{{}}', %(now)s, %(now)s
            FROM generate_series(1, {enrollments}) AS n""",
        f"""INSERT INTO enrollments (campaign_id, lead_id, state, step_id, next_run_at, step_started_at, attempts,
                failures, campaign_version, source, entered_at, updated_at)
            SELECT 1, n, CASE WHEN n %% 4 = 0 THEN 'completed' WHEN n %% 2 = 0 THEN 'waiting' ELSE 'active' END,
                   CASE WHEN n %% 4 = 0 THEN NULL ELSE ({step_array})[1 + n %% {len(ids)}] END,
                   CASE WHEN n %% 4 = 0 THEN NULL ELSE %(later)s END, %(now)s, '{{}}', 0, 1, 'stage',
                   %(now)s - (n %% 29) * interval '1 day', %(now)s
            FROM generate_series(1, {enrollments}) AS n""",
        f"""INSERT INTO messages (id, lead_id, to_address, template, template_version, subject, status,
                idempotency_key, campaign, created_at, sent_at)
            SELECT n, n, 'lead' || n || '@example.com', 'welcome.html', 'v1', 'Hello', 'sent',
                   'enrollment:' || n || ':step:x:attempt:1', '{SLUG}', %(now)s - (n %% 29) * interval '1 day',
                   %(now)s - (n %% 29) * interval '1 day'
            FROM generate_series(1, {enrollments}) AS n""",
        f"""INSERT INTO step_runs (enrollment_id, campaign_id, lead_id, step_id, step_type, outcome, ran_at,
                message_id, variant)
            SELECT n, 1, n, ({send_array})[1 + n %% {len(sends)}], 'send', 'queued',
                   %(now)s - (n %% 29) * interval '1 day', n, NULL
            FROM generate_series(1, {enrollments}) AS n
            UNION ALL
            SELECT n, 1, n, ({step_array})[1 + n %% {len(ids)}], 'branch',
                   CASE WHEN n %% 3 = 0 THEN 'yes' ELSE 'no' END, %(now)s - (n %% 29) * interval '1 day', NULL, NULL
            FROM generate_series(1, {enrollments}) AS n""",
        f"""INSERT INTO engagement_events (lead_id, message_id, campaign, type, occurred_at, recorded_at, source,
                machine, properties, dedupe_key, processed_at)
            SELECT n, n, '{SLUG}', kinds.type, %(now)s - (n %% 29) * interval '1 day', %(now)s, 'tracking',
                   kinds.machine, '{{}}', 'bench:' || n || ':' || kinds.k, %(now)s
            FROM generate_series(1, {enrollments}) AS n
            CROSS JOIN (VALUES (1, 'delivered', false), (2, 'opened', false), (3, 'opened', false),
                               (4, 'clicked', false), (5, 'opened', true)) AS kinds(k, type, machine)""",
        "SELECT setval('leads_id_seq', (SELECT max(id) FROM leads))",
        "SELECT setval('messages_id_seq', (SELECT max(id) FROM messages))",
    ]
    with psycopg.connect(conninfo(DATABASE), autocommit=True) as connection:
        for statement in statements:
            started = time.perf_counter()
            connection.execute(statement, {"now": now, "later": now + timedelta(days=1)})  # type: ignore[arg-type]
            print(f"  loaded in {time.perf_counter() - started:.1f} s: {statement.split('(')[0].strip()}", flush=True)
        connection.execute("VACUUM ANALYZE")


def median_ms(action: Any, runs: int) -> float:
    action()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(url: str, runs: int) -> dict[str, float]:
    settings = Settings(database_url=url, secret_key="b" * 40, base_url="http://127.0.0.1", run_scheduler_in_web=False)
    app = create_app({"NURTURE_SETTINGS": settings, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    signed_in = client.post("/login", data={"email": "bench@example.com", "password": PASSWORD})
    assert signed_in.status_code in (302, 303), signed_in.status_code

    def page(query: str) -> None:
        answer = client.get(f"/campaigns/{SLUG}/edit{query}")
        assert answer.status_code == 200, answer.status_code

    step = next(step for step in forty_steps()["steps"] if step["id"] == "pause-3")
    revision = 0

    def save() -> None:
        nonlocal revision
        form = {**step_to_form(step), "for": f"{3 + revision % 5}d", "revision": str(revision)}
        answer = client.post(f"/campaigns/{SLUG}/edit/steps/pause-3", data=form)
        assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
        revision += 1

    engine = make_engine(url)

    def bare_update() -> None:
        with engine.begin() as connection:
            connection.execute(text("UPDATE campaign_drafts SET revision = revision WHERE campaign_id = 1"))

    figures = {
        "page with counts": median_ms(lambda: page(""), runs),
        "page without counts": median_ms(lambda: page("?stats=off"), runs),
        "save a step": median_ms(save, runs),
        "bare draft UPDATE": median_ms(bare_update, runs),
    }
    engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    url = recreate_database(DATABASE)
    try:
        started = time.perf_counter()
        load(url, args.enrollments)
        print(f"{args.enrollments:,} enrollments, {5 * args.enrollments:,} engagement events, "
              f"{2 * args.enrollments:,} step runs loaded in {time.perf_counter() - started:.0f} s")  # fmt: skip
        figures = measure(url, args.runs)
    finally:
        if not args.keep:
            drop_database(DATABASE)
    with_counts, without = figures["page with counts"], figures["page without counts"]
    print(f"editor page with the diagram and its counts: {with_counts:.0f} ms (median of {args.runs}); "
          f"the same page without counts: {without:.0f} ms; target < {PAGE_TARGET_MS} ms: "
          f"{'met' if with_counts < PAGE_TARGET_MS else 'NOT met'}")  # fmt: skip
    print(f"saving a step: {figures['save a step']:.0f} ms (median of {args.runs}); bare UPDATE of the draft "
          f"row: {figures['bare draft UPDATE']:.1f} ms; target < {SAVE_TARGET_MS} ms: "
          f"{'met' if figures['save a step'] < SAVE_TARGET_MS else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
