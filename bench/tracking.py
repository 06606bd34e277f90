"""Open and click endpoints under load: gunicorn (2 workers) on PostgreSQL, driven by wrk on 127.0.0.1.

Measured with sync workers (as the bare-pixel figure of shared/perf-notes.md) and with gthread workers (2
workers, 4 threads each), each against a bare Flask pixel under the same worker class in the same run.

Each hit verifies its token, stores its event (one INSERT ... SELECT from the message) and commits; a click
answers 302 to the link stored with the message. The events worker (``nurture.tracking.jobs.events_job``,
one process) runs during the load and applies the events: activity, scoring, score stored on the lead.
Reported: requests/s and latency percentiles of the tracking endpoints, the same for a bare Flask pixel
(no database, the ceiling) measured in the same run, and how far the worker kept up (events applied per
second, backlog when the load stopped, time to drain it). Target: >= 1,500 req/s with p99 < 25 ms.

Then the concurrency check: 10,000 clicks on one lead, from 50 connections at once, applied by two worker
processes at once; the lead must end with exactly 10,000 events and a score of exactly 10,000 (one point a
click, no cap; a half-life of ten years keeps the few minutes of the run from rounding a point away).

The database ``nurture_bench_tracking`` is created and dropped by the run. wrk is a Debian package
(``apt-get install -y wrk``).

    .venv/bin/python -m bench.tracking [--seconds 10] [--connections 10]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, make_url, select

from nurture import migrate
from nurture.clock import SystemClock
from nurture.db import make_engine, make_session_factory

DATABASE = "nurture_bench_tracking"
ADMIN_URL = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-key-0123456789abcdef-0123456789abcdef"
LEADS = 2000
LINKS = ["https://example.com/pricing?plan=pro", "https://example.com/docs", "https://shop.example/item/7"]
TARGET_RPS = 1500
TARGET_P99_MS = 25.0
CONCURRENT_CLICKS = 10_000
# gthread workers overlap one request's database round trip with another's Python.
THREADS = 4
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
SCORING = """half_life_days: 3650
lifecycle: {mql_at: null, sql_at: null}
rules:
  - {name: opened, event: opened, points: 1}
  - {name: clicked, event: clicked, points: 1}
"""
ROOT = Path(__file__).resolve().parent.parent


# --- the apps gunicorn serves --------------------------------------------------------------------------------


def tracking_app() -> Any:
    """The real app with the tracking blueprint (until nurture.app registers it)."""
    from nurture.app import create_app
    from nurture.web import api, tracking

    app = create_app()
    if "tracking" not in app.blueprints:
        tracking.init_app(app)
        api.init_app(app)
    return app


def bare_pixel_app() -> Any:
    """The ceiling: Flask answering the same GIF with the same headers, no token, no database."""
    from flask import Flask, Response

    from nurture.web.tracking import NO_CACHE, PIXEL

    app = Flask("bare")

    @app.get("/t/o/<token>")
    def pixel(token: str) -> Response:
        return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)

    return app


# --- database ------------------------------------------------------------------------------------------------


def _admin() -> str:
    return make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)


def _database_url() -> str:
    return (
        make_url(ADMIN_URL)
        .set(drivername="postgresql+psycopg", database=DATABASE)
        .render_as_string(hide_password=False)
    )


@contextmanager
def bench_database() -> Iterator[str]:
    with psycopg.connect(_admin(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    try:
        engine = make_engine(_database_url())
        migrate.upgrade(engine)
        engine.dispose()
        yield _database_url()
    finally:
        with psycopg.connect(_admin(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def seed(url: str) -> tuple[list[int], list[int]]:
    """Leads with one sent message each (sent an hour ago: outside any scanner window); the scoring rules."""
    from nurture.delivery.models import Message, MessageStatus
    from nurture.leads.models import ActorKind
    from nurture.leads.service import Actor, create_lead
    from nurture.scoring.config import read_config
    from nurture.scoring.store import store_config

    engine = make_engine(url)
    clock = SystemClock()
    sent_at = clock.now() - timedelta(hours=1)
    lead_ids: list[int] = []
    message_ids: list[int] = []
    with make_session_factory(engine)() as session:
        _config, data = read_config(SCORING, "bench")
        store_config(session, clock, data, "bench")
        for n in range(LEADS):
            lead = create_lead(session, clock, f"lead{n}@example.com", actor=Actor(ActorKind.SYSTEM, "bench"))
            session.flush()
            message = Message(
                lead_id=lead.id,
                to_address=lead.email,
                template="welcome.html",
                template_version="v1",
                subject="Hi",
                status=MessageStatus.SENT,
                idempotency_key=f"bench:{n}",
                campaign="bench",
                created_at=sent_at,
                sent_at=sent_at,
                links=LINKS,
            )
            session.add(message)
            session.flush()
            lead_ids.append(lead.id)
            message_ids.append(message.id)
        session.commit()
    engine.dispose()
    return lead_ids, message_ids


# --- processes -----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "NURTURE_SECRET_KEY": SECRET,
        "NURTURE_SCHEDULER_IN_WEB": "false",
        "NURTURE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


@contextmanager
def gunicorn(factory: str, url: str, threads: int = 1) -> Iterator[int]:
    port = _free_port()
    worker = ["-k", "sync"] if threads == 1 else ["-k", "gthread", "--threads", str(threads)]
    command = [sys.executable, "-m", "gunicorn", "-w", "2", *worker, "-b", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", f"bench.tracking:{factory}()"],
        env=_environment(url),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        # Both workers booted and past their first requests (imports, pool connections) before measuring.
        for _ in range(20):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/t/o/warm-up", headers={"User-Agent": BROWSER})
            connection.getresponse().read()
            connection.close()
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


WORKER_CODE = """
import sys, time
from nurture.clock import SystemClock
from nurture.config import load_settings
from nurture.db import make_engine, make_session_factory
from nurture.engine.context import engine_context
from nurture.tracking.jobs import events_job
settings = load_settings()
engine = make_engine(settings.database_url)
factory = make_session_factory(engine)
ctx = engine_context(settings)
stop_when_idle = sys.argv[1] == "drain"
deadline = time.monotonic() + float(sys.argv[2])
applied = 0
while time.monotonic() < deadline:
    report = events_job(factory, SystemClock(), ctx, limit=500)
    applied += report.applied + report.machine
    if not (report.applied or report.machine):
        if stop_when_idle:
            break
        time.sleep(0.5)
print(applied, flush=True)
"""


def start_worker(url: str, mode: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, mode, str(seconds)],
        env=_environment(url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


# --- load ------------------------------------------------------------------------------------------------------


def _paths(message_ids: list[int]) -> list[str]:
    from nurture.tracking.tokens import TokenPurpose, TokenSigner

    signer = TokenSigner([SECRET])
    paths = []
    for n, message_id in enumerate(message_ids):
        paths.append(f"/t/o/{signer.sign(TokenPurpose.OPEN, message_id)}")
        paths.append(f"/t/c/{signer.sign(TokenPurpose.CLICK, message_id)}/{n % len(LINKS)}")
    return paths


def run_wrk(port: int, paths: list[str], seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("paths = {" + ",".join(f'"{path}"' for path in paths) + "}\n")
        script.write(
            "counter = 0\nrequest = function()\n  counter = counter + 1\n"
            "  return wrk.format('GET', paths[(counter % #paths) + 1])\nend\n"
        )
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-H",
                f"User-Agent: {BROWSER}",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    found: dict[str, float] = {
        "rps": float(rps.group(1)) if rps else 0.0,
        "requests": float(requests.group(1)) if requests else 0.0,
        "bad": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(int(n) for n in socket_errors.groups())) if socket_errors else 0.0,
    }
    for percentile in ("50", "90", "99"):
        match = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)\b", output)
        found[f"p{percentile}"] = _ms(*match.groups()) if match else float("nan")
    return found


def concurrent_clicks(port: int, path: str, total: int, connections: int) -> int:
    """``total`` GETs of ``path`` from ``connections`` threads at once; how many were answered 302."""
    answered = 0
    lock = threading.Lock()
    counter = iter(range(total))
    start = threading.Barrier(connections)

    def run() -> None:
        nonlocal answered
        start.wait()
        mine = 0
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path, headers={"User-Agent": BROWSER})
            response = connection.getresponse()
            response.read()
            connection.close()
            mine += response.status == 302
        with lock:
            answered += mine

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered


# --- report ----------------------------------------------------------------------------------------------------


def _counts(url: str, lead_id: int | None = None) -> tuple[int, int]:
    from nurture.tracking.models import EngagementEvent

    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        query = select(func.count(), func.count(EngagementEvent.processed_at)).select_from(EngagementEvent)
        if lead_id is not None:
            query = query.where(EngagementEvent.lead_id == lead_id)
        total, processed = session.execute(query).one()
    engine.dispose()
    return int(total), int(processed)


def _line(name: str, figures: dict[str, float]) -> str:
    return (
        f"  {name:<34} {figures['rps']:>8,.0f} req/s   p50 {figures['p50']:6.2f} ms   p90 {figures['p90']:6.2f} ms"
        f"   p99 {figures['p99']:6.2f} ms   ({figures['requests']:,.0f} requests, {figures['bad']:.0f} errors)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk")
        return
    started = time.perf_counter()
    with bench_database() as url:
        lead_ids, message_ids = seed(url)
        paths = _paths(message_ids)
        print(
            f"{len(lead_ids):,} leads, one sent message each; wrk -t2 -c{args.connections} -d{args.seconds}s, "
            f"gunicorn 2 workers (sync; gthread with {THREADS} threads each), PostgreSQL database {DATABASE}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        with gunicorn("bare_pixel_app", url) as port:
            bare = run_wrk(port, [path for path in paths if path.startswith("/t/o/")], args.seconds, args.connections)

        with gunicorn("bare_pixel_app", url, THREADS) as port:
            bare_threaded = run_wrk(
                port, [path for path in paths if path.startswith("/t/o/")], args.seconds, args.connections
            )
        with gunicorn("tracking_app", url) as port:
            tracked_sync = run_wrk(port, paths, args.seconds, args.connections)
        start_worker(url, "drain", 300).communicate(timeout=330)
        baseline, _ = _counts(url)

        with gunicorn("tracking_app", url, THREADS) as port:
            worker = start_worker(url, "follow", args.seconds + 1)
            load_started = time.perf_counter()
            tracked = run_wrk(port, paths, args.seconds, args.connections)
            load_seconds = time.perf_counter() - load_started
            applied_during = int((worker.communicate(timeout=120)[0] or "0").strip() or 0)
            total, processed = _counts(url)
            drain_started = time.perf_counter()
            drain = start_worker(url, "drain", 300)
            drain.communicate(timeout=330)
            drain_seconds = time.perf_counter() - drain_started
            after_total, after_processed = _counts(url)

            lead_id, message_id = lead_ids[0], message_ids[0]
            before, _ = _counts(url, lead_id)
            click_path = _paths([message_id])[1]
            workers = [start_worker(url, "follow", 600) for _ in range(2)]
            clicks_started = time.perf_counter()
            answered = concurrent_clicks(port, click_path, CONCURRENT_CLICKS, 50)
            clicks_seconds = time.perf_counter() - clicks_started
            for process in workers:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            settle = start_worker(url, "drain", 300)
            settle.communicate(timeout=330)

        lead_total, lead_processed = _counts(url, lead_id)
        engine = make_engine(url)
        from nurture.leads.models import Lead
        from nurture.scoring.models import ScoreEntry

        with make_session_factory(engine)() as session:
            score = session.scalar(select(Lead.score).where(Lead.id == lead_id))
            entries = session.scalar(
                select(func.coalesce(func.sum(ScoreEntry.points), 0)).where(ScoreEntry.lead_id == lead_id)
            )
        engine.dispose()

    print(_line("bare Flask pixel, sync (ceiling)", bare))
    print(_line("tracking, sync", tracked_sync))
    print(_line(f"bare Flask pixel, gthread {THREADS}", bare_threaded))
    print(_line(f"tracking, gthread {THREADS} + worker", tracked))
    print(
        f"  gthread run: {after_total - baseline:,} events stored for {tracked['requests'] - tracked['bad']:,.0f} "
        f"requests answered (those in flight when wrk stopped are stored too); the worker applied "
        f"{applied_during:,} during the {load_seconds:.1f} s load ({applied_during / load_seconds:,.0f}/s), "
        f"backlog {total - processed:,} when it stopped, drained in {drain_seconds:.1f} s; all applied: "
        f"{after_processed == after_total}"
    )
    expected = before + CONCURRENT_CLICKS
    exact = answered == CONCURRENT_CLICKS and lead_total == expected == lead_processed and score == expected == entries
    print(
        f"  concurrency: {CONCURRENT_CLICKS:,} clicks on one lead from 50 connections in {clicks_seconds:.1f} s "
        f"({answered:,} answered 302), applied by 2 workers at once: {lead_total:,} events "
        f"({lead_processed:,} applied), score {score:,}, score entries {entries:,}; expected {expected:,}: "
        f"{'exact' if exact else 'MISMATCH'}"
    )
    best = max((tracked_sync, tracked), key=lambda figures: figures["rps"])
    met = best["rps"] >= TARGET_RPS and best["p99"] < TARGET_P99_MS and best["bad"] == 0
    print(
        f"  target >= {TARGET_RPS:,} req/s with p99 < {TARGET_P99_MS:g} ms: {'met' if met else 'NOT met'} "
        f"(best {best['rps']:,.0f} req/s, p99 {best['p99']:.1f} ms; sync tracking at "
        f"{tracked_sync['rps'] / bare['rps']:.0%} of the sync bare pixel, gthread at "
        f"{tracked['rps'] / bare_threaded['rps']:.0%} of its bare pixel); finished in "
        f"{time.perf_counter() - started:.0f} s at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
