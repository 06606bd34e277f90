"""Counting a segment on PostgreSQL: one million leads, five million activities.

The rule has five conditions, one of them an engagement (an EXISTS over activities):

    country in [FR, DE, GB] and stage in [mql, sql] and score >= 20
    and attributes.industry = "Software" and opened within 30 days

It is counted through ``nurture.segments.service.count_segment``: rule parsing, compilation to SQL and
the query, as the dashboard does it. Baseline, measured in the same run: a bare ``SELECT count(*) FROM
leads``, the cheapest possible answer to "how many leads". The compiled query's EXPLAIN ANALYZE plan is
summarised. Target: median under 1 s.

It is measured twice: on the schema as migrated, then with the proposed GIN index on ``leads.attributes``
(``PROPOSED_INDEX_DDL``), created for the measurement and dropped after it. Once the index is part of the
migrations the second measurement is skipped.

The data lives in its own database, ``nurture_bench_segments``, generated server-side (INSERT ...
SELECT generate_series, deterministic seed) with indexes dropped during the load and rebuilt after. It is
kept between runs (about 2 minutes to generate, about 700 MB) and reused when it already holds the full
data set; ``--regenerate`` rebuilds it, ``--drop`` removes it after the run.

    .venv/bin/python -m bench.segments_bench [--runs 7] [--regenerate] [--drop]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import ClauseElement, Executable, Select, func, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from bench._postgres import conninfo, database_exists, database_url, drop_database, recreate_database
from nurture import migrate
from nurture.clock import FixedClock
from nurture.db import make_engine, make_session_factory
from nurture.leads.models import Lead
from nurture.segments.compiler import compile_rules
from nurture.segments.rules import parse_rules
from nurture.segments.service import count_segment

DATABASE = "nurture_bench_segments"
LEADS = 1_000_000
ACTIVITIES = 5_000_000
TAGS = 20
NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
TARGET_SECONDS = 1.0
DEFAULT_RUNS = 7
# Attribute equality compiles to `attributes @> {...}` on PostgreSQL, which this index answers.
PROPOSED_INDEX = "ix_leads_attributes"
PROPOSED_INDEX_DDL = f"CREATE INDEX {PROPOSED_INDEX} ON leads USING gin (attributes jsonb_path_ops)"

RULES: dict[str, Any] = {
    "all": [
        {"field": "country", "op": "in", "value": ["FR", "DE", "GB"]},
        {"field": "stage", "op": "in", "value": ["mql", "sql"]},
        {"field": "score", "op": ">=", "value": 20},
        {"field": "attributes.industry", "op": "=", "value": "Software"},
        {"event": "opened", "within_days": 30},
    ]
}

# Distributions: twelve countries, a funnel-shaped stage mix, 5% suppressed, eight industries, and a
# timeline over the last year in which half the rows are sends, a quarter opens and a tenth clicks.
LEADS_SQL = """
INSERT INTO leads (id, email, email_key, first_name, last_name, company, job_title, country, timezone, locale,
                   source, owner, attributes, stage, stage_entered_at, score, temperature, status,
                   created_at, updated_at, last_engaged_at)
SELECT g,
       'lead' || g || '@example.com',
       'lead' || g || '@example.com',
       (ARRAY['Anna','Björn','Chloé','David','Elif','Grace','Hiro','Jonas'])[1 + mod(g, 8)],
       (ARRAY['Martin','Müller','García','Rossi','Nowak','Smith'])[1 + mod(g, 6)],
       'Company ' || mod(g, 5000),
       (ARRAY['CEO','CTO','Head of Marketing','Engineer','Buyer', NULL])[1 + mod(g, 6)],
       (ARRAY['FR','DE','GB','US','US','US','ES','IT','NL','JP','BR','CA'])[1 + floor(random() * 12)::int],
       'Europe/Paris',
       'en_US',
       (ARRAY['Webinar','Website','Partner','Paid search', NULL])[1 + mod(g, 5)],
       NULL,
       jsonb_build_object(
           'industry', (ARRAY['Software','Retail','Finance','Health','Education','Media','Energy','Logistics'])
                       [1 + floor(random() * 8)::int],
           'employees', floor(random() * 5000)::int,
           'plan', (ARRAY['free','pro','enterprise'])[1 + floor(random() * 3)::int]
       ),
       stage,
       created,
       score,
       CASE WHEN score >= 50 THEN 'hot' WHEN score >= 20 THEN 'warm' ELSE 'cold' END,
       CASE WHEN random() < 0.95 THEN 'active' ELSE 'unsubscribed' END,
       created,
       created,
       CASE WHEN random() < 0.6 THEN %(now)s - random() * interval '200 days' END
FROM (
    SELECT g,
           (ARRAY['subscriber','subscriber','subscriber','lead','lead','mql','sql','opportunity','customer','lost'])
               [1 + floor(random() * 10)::int] AS stage,
           floor(random() * 100)::int AS score,
           %(now)s - random() * interval '730 days' AS created
    FROM generate_series(1, %(leads)s) AS g
) AS generated
"""

TAGS_SQL = """
INSERT INTO tags (id, name) SELECT t, 'tag-' || t FROM generate_series(1, %(tags)s) AS t;
INSERT INTO lead_tags (lead_id, tag_id)
SELECT DISTINCT g, 1 + floor(random() * %(tags)s)::int
FROM generate_series(1, %(leads)s) AS g, generate_series(1, 3) AS k
WHERE random() < 0.5
"""

ACTIVITIES_SQL = """
INSERT INTO activities (id, lead_id, kind, occurred_at, campaign, data)
SELECT g,
       1 + floor(random() * %(leads)s)::bigint,
       (ARRAY['sent','sent','sent','sent','sent','opened','opened','opened','clicked','webinar.attended'])
           [1 + floor(random() * 10)::int],
       %(now)s - random() * interval '365 days',
       (ARRAY['welcome','newsletter','promo', NULL])[1 + floor(random() * 4)::int],
       NULL
FROM generate_series(1, %(activities)s) AS g
"""

LOADED_TABLES = ("leads", "lead_tags", "tags", "activities")


def holds_full_data_set() -> bool:
    with psycopg.connect(conninfo(DATABASE), autocommit=True) as conn:
        try:
            leads = conn.execute("SELECT count(*) FROM leads").fetchone()
            activities = conn.execute("SELECT count(*) FROM activities").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(leads and activities and leads[0] == LEADS and activities[0] == ACTIVITIES)


def generate() -> None:
    """Bulk-load with the tables' indexes dropped and foreign-key triggers off, then rebuild and analyse."""
    params = {"now": NOW, "leads": LEADS, "activities": ACTIVITIES, "tags": TAGS}
    with psycopg.connect(conninfo(DATABASE), autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY(%s) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            (list(LOADED_TABLES),),
        ).fetchall()
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute("SELECT setseed(0.42)")
            for index_name, _ in indexes:
                conn.execute(f'DROP INDEX "{index_name}"')
            for label, sql in (("leads", LEADS_SQL), ("tags", TAGS_SQL), ("activities", ACTIVITIES_SQL)):
                started = time.perf_counter()
                for statement in sql.split(";\n"):
                    conn.execute(statement, params)  # type: ignore[arg-type]
                print(f"  loaded {label} in {time.perf_counter() - started:.1f} s", flush=True)
            started = time.perf_counter()
            for _, definition in indexes:
                conn.execute(definition)  # type: ignore[arg-type]
            print(f"  rebuilt {len(indexes)} indexes in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        print(f"  vacuum analyze in {time.perf_counter() - started:.1f} s", flush=True)


def timed_rounds(runs: int, actions: dict[str, Callable[[], Any]]) -> dict[str, tuple[list[float], Any]]:
    """Each action once to warm caches, then ``runs`` rounds taking turns, so that load from elsewhere on
    the machine falls on all of them alike."""
    results: dict[str, tuple[list[float], Any]] = {name: ([], action()) for name, action in actions.items()}
    for _ in range(runs):
        for name, action in actions.items():
            started = time.perf_counter()
            value = action()
            results[name][0].append(time.perf_counter() - started)
            results[name] = (results[name][0], value)
    return results


class Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, BUFFERS)`` of a statement, executed with SQLAlchemy's own parameter handling."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, BUFFERS) " + compiler.process(element.statement, **kw)


def explain(session: Session) -> list[str]:
    query = select(func.count()).select_from(Lead).where(compile_rules(parse_rules(RULES), NOW))
    return [row[0] for row in session.execute(Explain(query))]


def plan_summary(lines: list[str]) -> list[str]:
    """The plan's node lines (costs stripped) and its timing."""
    summary = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(("Buffers", "Filter", "Index Cond", "Rows Removed", "Heap Fetches", "Worker")):
            continue
        if stripped.startswith(("Planning Time", "Execution Time")):
            summary.append(stripped)
            continue
        node, _, actual = line.partition("  (cost=")
        timing = actual[actual.find("(actual") :].rstrip(")") if "(actual" in actual else ""
        summary.append(f"{node.rstrip()}  {timing})" if timing else node.rstrip())
    return summary


def has_index(session: Session, name: str) -> bool:
    return bool(session.scalar(text("SELECT count(*) FROM pg_indexes WHERE indexname = :name"), {"name": name}))


def measure(session: Session, runs: int, label: str) -> float:
    clock = FixedClock(NOW)
    results = timed_rounds(
        runs,
        {
            "segment": lambda: count_segment(session, clock, RULES),
            "baseline": lambda: session.scalar(text("SELECT count(*) FROM leads")),
        },
    )
    (segment_times, matched), (baseline_times, total) = results["segment"], results["baseline"]
    median, baseline = statistics.median(segment_times), statistics.median(baseline_times)
    print(f"\n{label}")
    print(f"  leads {total:,}, matching {matched:,}")
    print(
        f"  segment count (count_segment), median of {runs}: {median * 1000:7.1f} ms "
        f"(min {min(segment_times) * 1000:.1f}, max {max(segment_times) * 1000:.1f})"
    )
    print(
        f"  baseline SELECT count(*) FROM leads, median: {baseline * 1000:7.1f} ms "
        f"-> segment takes {median / baseline:.1f}x the baseline"
    )
    print("  plan (EXPLAIN ANALYZE):")
    for line in plan_summary(explain(session)):
        print(f"    {line if len(line) <= 150 else line[:147] + '...'}")
    verdict = "met" if median < TARGET_SECONDS else "NOT met"
    print(f"  target: median under {TARGET_SECONDS:.0f} s -> {verdict} ({median:.3f} s)", flush=True)
    return median


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.segments_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each query")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the data even if it is there")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args(argv or [])

    if args.regenerate or not database_exists(DATABASE) or not holds_full_data_set():
        print(f"Generating {LEADS:,} leads and {ACTIVITIES:,} activities in {DATABASE}...", flush=True)
        started = time.perf_counter()
        recreate_database(DATABASE)
        engine = make_engine(database_url(DATABASE))
        migrate.upgrade(engine)
        engine.dispose()
        generate()
        print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    else:
        print(f"Reusing {DATABASE} ({LEADS:,} leads, {ACTIVITIES:,} activities); --regenerate to rebuild.")

    print("Rule: country in [FR, DE, GB] and stage in [mql, sql] and score >= 20")
    print("      and attributes.industry = Software and opened within 30 days")
    engine = make_engine(database_url(DATABASE))
    migrate.upgrade(engine)  # a schema change since the data was made is applied, not ignored
    try:
        with make_session_factory(engine)() as session:
            measure(session, args.runs, "Schema as migrated:")
            if not has_index(session, PROPOSED_INDEX):
                # Measured here, then dropped, so that the next run still measures the schema as migrated.
                started = time.perf_counter()
                session.execute(text(PROPOSED_INDEX_DDL))
                session.commit()
                print(f"\nCreated {PROPOSED_INDEX} in {time.perf_counter() - started:.1f} s: {PROPOSED_INDEX_DDL}")
                try:
                    measure(session, args.runs, f"With the proposed {PROPOSED_INDEX}:")
                finally:
                    session.rollback()
                    session.execute(text(f"DROP INDEX IF EXISTS {PROPOSED_INDEX}"))
                    session.commit()
    finally:
        engine.dispose()
        if args.drop:
            drop_database(DATABASE)


if __name__ == "__main__":
    main(sys.argv[1:])
