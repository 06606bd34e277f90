"""Open and click endpoints under load: gunicorn (2 workers) on PostgreSQL, a load generator on 127.0.0.1.

Measured with sync workers and with gthread workers (2 workers, 4 threads each), each against a bare Flask
pixel (no token, no database: the ceiling) under the same worker class in the same run, driven by the same
generator: wrk when it is installed (a Debian package: ``apt-get install -y wrk``), else a Python generator
(threads, keep-alive where the server allows it), whose own ceiling the bare pixel then shows.

Each hit verifies its token, judges the request's machine evidence and stores its event: one prepared
INSERT ... SELECT from the message, its own transaction; a click answers 302 to the link stored with the
message. The score is not updated in that statement: the events worker (``nurture.tracking.jobs.events_job``)
applies stored events (activity, scoring with caps and decay, the score stored on the lead, promotions,
wake-ups), so the end-to-end figure is the rate at which it turns stored hits into score changes. Reported:

- requests/s and latency percentiles of the tracking endpoints and of the bare pixel, and the server's CPU
  per request (gunicorn workers and their PostgreSQL backends: what the figures cost, whatever else the
  machine is doing);
- the worker draining the backlog the HTTP runs left, for 30 s at most (events applied, scores changed, per
  second; what is left is then marked applied without being applied, so the runs below start clean);
- one run with the worker applying during the load: requests/s, events applied/s, the backlog left;
- the concurrency check: 10,000 clicks on one lead, from 50 connections at once, applied by two worker
  processes at once; the lead must end with exactly 10,000 more events and a score exactly 10,000 higher
  (one point a click, no cap; a half-life of ten years keeps the few minutes of the run from rounding a
  point away).

Target: >= 1,500 req/s with p99 < 25 ms. The database ``nurture_bench_tracking`` is created and dropped.

    .venv/bin/python -m bench.tracking [--seconds 10] [--connections 10] [--generator auto|wrk|python]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
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
from sqlalchemy import func, select

from bench._postgres import conninfo, drop_database, recreate_database
from nurture import migrate
from nurture.clock import SystemClock
from nurture.db import make_engine, make_session_factory

DATABASE = "nurture_bench_tracking"
SECRET = "bench-secret-key-0123456789abcdef-0123456789abcdef"
LEADS = 2000
LINKS = ["https://example.com/pricing?plan=pro", "https://example.com/docs", "https://shop.example/item/7"]
TARGET_RPS = 1500
TARGET_P99_MS = 25.0
CONCURRENT_CLICKS = 10_000
# How long the worker drains the HTTP runs' hits for the end-to-end figure.
DRAIN_SECONDS = 30
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
    """The real app, as ``nurture web`` serves it."""
    from nurture.app import create_app

    return create_app()


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


@contextmanager
def bench_database() -> Iterator[str]:
    url = recreate_database(DATABASE)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        drop_database(DATABASE)


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
def gunicorn(factory: str, url: str, threads: int = 1) -> Iterator[tuple[int, int]]:
    """Serves ``factory`` with 2 workers; yields the port and the master's process id."""
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
        yield port, process.pid
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
from nurture.tracking.events import process_pending_events
settings = load_settings()
engine = make_engine(settings.database_url)
factory = make_session_factory(engine)
ctx = engine_context(settings)
stop_when_idle = sys.argv[1] == "drain"
deadline = time.monotonic() + float(sys.argv[2])
applied = 0
busy = 0.0
while time.monotonic() < deadline:
    # One round of nurture.tracking.jobs.events_job at a time, so the deadline is checked between rounds.
    started = time.perf_counter()
    with factory() as session:
        report = process_pending_events(session, SystemClock(), ctx, limit=500)
        session.commit()
    applied += report.applied + report.machine
    if report.handled:
        busy += time.perf_counter() - started
    elif stop_when_idle:
        break
    else:
        time.sleep(0.2)
print(applied, busy, flush=True)
"""


def start_worker(url: str, mode: str, seconds: float) -> subprocess.Popen[str]:
    """The rounds of ``nurture.tracking.jobs.events_job`` in a loop, in a process of its own: ``drain`` stops
    when nothing is pending, ``follow`` polls; both stop once ``seconds`` have passed. It prints the events it
    applied and the seconds it spent applying them."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_CODE, mode, str(seconds)],
        env=_environment(url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


# --- load ------------------------------------------------------------------------------------------------------


def skip_pending(url: str) -> int:
    """Mark every pending event applied without applying it (bounds the run); how many there were."""
    with psycopg.connect(conninfo(DATABASE)) as conn:
        cursor = conn.execute("UPDATE engagement_events SET processed_at = now() WHERE processed_at IS NULL")
        return cursor.rowcount


def worker_result(process: subprocess.Popen[str]) -> tuple[int, float]:
    applied, busy = (process.communicate(timeout=600)[0] or "0 0").split()
    return int(applied), float(busy)


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


def run_python(port: int, paths: list[str], seconds: int, connections: int) -> dict[str, float]:
    """The fallback generator: ``connections`` threads, each with one connection it keeps alive as long as
    the server does, sending the paths in turn for ``seconds``. The GIL makes it far slower than wrk: the
    bare pixel's figure in the same run is its ceiling."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    bad = [0] * connections
    failed = [0] * connections
    start = threading.Barrier(connections + 1)
    deadline = 0.0

    def run(slot: int) -> None:
        start.wait()
        connection: http.client.HTTPConnection | None = None
        n = slot
        mine = latencies[slot]
        while time.monotonic() < deadline:
            path = paths[n % len(paths)]
            n += connections
            began = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", path, headers={"User-Agent": BROWSER})
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                failed[slot] += 1
                if connection is not None:
                    connection.close()
                connection = None
                continue
            mine.append(time.perf_counter() - began)
            bad[slot] += not 200 <= response.status < 400
            if response.will_close:
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    everything = sorted(latency for mine in latencies for latency in mine)
    found: dict[str, float] = {
        "rps": len(everything) / elapsed,
        "requests": float(len(everything)),
        "bad": float(sum(bad)),
        "socket_errors": float(sum(failed)),
    }
    for percentile in (50, 90, 99):
        index = min(len(everything) - 1, len(everything) * percentile // 100)
        found[f"p{percentile}"] = everything[index] * 1000 if everything else float("nan")
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def server_cpu(master: int) -> dict[int, float]:
    """CPU seconds so far of each gunicorn worker under ``master`` and of each PostgreSQL backend serving the
    bench database (the hit stores' connections)."""
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        backends = [
            int(pid)
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DATABASE,)
            )
        ]
    return {pid: _cpu_seconds(pid) for pid in [*_children(master), *backends]}


def measure(
    generator: str, server: tuple[int, int], paths: list[str], seconds: int, connections: int
) -> dict[str, float]:
    """One load run; adds the server's CPU per request (µs) and the generator's (µs, wrk only)."""
    port, master = server
    before = server_cpu(master)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = run_wrk if generator == "wrk" else run_python
    figures = run(port, paths, seconds, connections)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = server_cpu(master)
    served = max(figures["requests"], 1.0)
    figures["server_cpu_us"] = sum(after[pid] - before.get(pid, 0.0) for pid in after) / served * 1e6
    figures["generator_cpu_us"] = (
        (children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime)
        / served
        * 1e6
        if generator == "wrk"
        else float("nan")
    )
    return figures


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


def _score(url: str, lead_id: int) -> tuple[int, int]:
    """The lead's stored score, and the sum of its score entries."""
    from nurture.leads.models import Lead
    from nurture.scoring.models import ScoreEntry

    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        score = session.scalar(select(Lead.score).where(Lead.id == lead_id)) or 0
        entries = session.scalar(
            select(func.coalesce(func.sum(ScoreEntry.points), 0)).where(ScoreEntry.lead_id == lead_id)
        )
    engine.dispose()
    return int(score), int(entries or 0)


def _line(name: str, figures: dict[str, float]) -> str:
    generator = figures.get("generator_cpu_us", float("nan"))
    return (
        f"  {name:<30} {figures['rps']:>7,.0f} req/s  p50 {figures['p50']:6.2f} ms  p90 {figures['p90']:6.2f} ms"
        f"  p99 {figures['p99']:6.2f} ms  server CPU {figures.get('server_cpu_us', float('nan')):4.0f} µs/req"
        + (f"  wrk CPU {generator:3.0f} µs/req" if generator == generator else "")
        + f"  ({figures['requests']:,.0f} requests, {figures['bad'] + figures['socket_errors']:.0f} errors)"
    )


def _met(figures: dict[str, float]) -> bool:
    return (
        figures["rps"] >= TARGET_RPS
        and figures["p99"] < TARGET_P99_MS
        and figures["bad"] == 0
        and figures["socket_errors"] == 0
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run (default 10)")
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections (default 10)")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="the load generator: wrk if installed (auto, the default), or the Python one",
    )
    # Run from ``python -m bench`` with no arguments of its own: the defaults.
    args = parser.parse_args([] if argv is None else argv)
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    if generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk); --generator python runs without it")
        return
    seconds, connections = args.seconds, args.connections
    started = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    kinds = {"sync": 1, f"gthread {THREADS}": THREADS}
    with bench_database() as url:
        lead_ids, message_ids = seed(url)
        paths = _paths(message_ids)
        opens = [path for path in paths if path.startswith("/t/o/")]
        clicks = [path for path in paths if path.startswith("/t/c/")]
        generator_name = (
            f"wrk -t2 -c{connections}" if generator == "wrk" else f"Python generator, {connections} threads"
        )
        print(
            f"{len(lead_ids):,} leads, one sent message each; {generator_name}, {seconds} s a run; gunicorn 2 "
            f"workers (sync; gthread with {THREADS} threads each); PostgreSQL database {DATABASE}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        for kind, threads in kinds.items():
            with gunicorn("bare_pixel_app", url, threads) as server:
                results[f"bare Flask pixel, {kind}"] = measure(generator, server, opens, seconds, connections)
            with gunicorn("tracking_app", url, threads) as server:
                results[f"open, {kind}"] = measure(generator, server, opens, seconds, connections)
                results[f"click, {kind}"] = measure(generator, server, clicks, seconds, connections)
            for name in (f"bare Flask pixel, {kind}", f"open, {kind}", f"click, {kind}"):
                print(_line(name, results[name]), flush=True)
        stored, _ = _counts(url)
        answered = sum(
            figures["requests"] - figures["bad"] for name, figures in results.items() if not name.startswith("bare")
        )

        # End to end: the worker turns the stored hits into activities and score changes, for a bounded time;
        # what it has not reached by then is marked applied unapplied, so the runs below start from no backlog.
        drained, drain_busy = worker_result(start_worker(url, "drain", DRAIN_SECONDS))
        skipped = skip_pending(url)

        # Both at once, on the worker class that served the hits faster.
        best_kind = max(kinds, key=lambda kind: results[f"open, {kind}"]["rps"] + results[f"click, {kind}"]["rps"])
        with gunicorn("tracking_app", url, kinds[best_kind]) as server:
            worker = start_worker(url, "follow", seconds + 1)
            load_started = time.perf_counter()
            results["both + worker"] = measure(generator, server, paths, seconds, connections)
            load_seconds = time.perf_counter() - load_started
            applied_during, _ = worker_result(worker)
            total, processed = _counts(url)
            backlog = total - processed
            after_drain, after_busy = worker_result(start_worker(url, "drain", 600))
            after_total, after_processed = _counts(url)

            lead_id, message_id = lead_ids[0], message_ids[0]
            before, _ = _counts(url, lead_id)
            score_before, _ = _score(url, lead_id)
            click_path = _paths([message_id])[1]
            workers = [start_worker(url, "follow", 600) for _ in range(2)]
            clicks_started = time.perf_counter()
            answered_clicks = concurrent_clicks(server[0], click_path, CONCURRENT_CLICKS, 50)
            clicks_seconds = time.perf_counter() - clicks_started
            for process in workers:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            worker_result(start_worker(url, "drain", 600))

        lead_total, lead_processed = _counts(url, lead_id)
        score, entries = _score(url, lead_id)

    print(
        f"  events stored by the HTTP runs: {stored:,} for {answered:,.0f} hits answered 200/302 (those in flight "
        f"when a run stopped are stored too)"
    )
    print(
        f"  end to end: the events worker (1 process, nothing else served) applied {drained:,} of those hits in "
        f"{drain_busy:.1f} s: {drained / max(drain_busy, 1e-9):,.0f} hits/s became activities and score changes"
        + (f" ({skipped:,} left after {DRAIN_SECONDS} s marked applied without applying)" if skipped else "")
    )
    print(_line(f"both + worker, {best_kind}", results["both + worker"]))
    print(
        f"  with the worker applying during the load: {applied_during:,} applied in {load_seconds:.1f} s "
        f"({applied_during / load_seconds:,.0f}/s), backlog {backlog:,} when the load stopped, drained in "
        f"{after_busy:.1f} s ({after_drain:,}); all applied: {after_processed == after_total}"
    )
    expected_events = before + CONCURRENT_CLICKS
    expected_score = score_before + CONCURRENT_CLICKS
    exact = (
        answered_clicks == CONCURRENT_CLICKS
        and lead_total == expected_events == lead_processed
        and score == expected_score == entries
    )
    print(
        f"  concurrency: {CONCURRENT_CLICKS:,} clicks on one lead from 50 connections in {clicks_seconds:.1f} s "
        f"({answered_clicks:,} answered 302), applied by 2 workers at once: {lead_total:,} events "
        f"({lead_processed:,} applied), score {score:,}, score entries {entries:,}; expected {expected_events:,} "
        f"events and score {expected_score:,}: {'exact' if exact else 'MISMATCH'}"
    )
    for kind in kinds:
        bare = results[f"bare Flask pixel, {kind}"]
        opened, clicked = results[f"open, {kind}"], results[f"click, {kind}"]
        print(
            f"  target >= {TARGET_RPS:,} req/s with p99 < {TARGET_P99_MS:g} ms, {kind}: open "
            f"{'met' if _met(opened) else 'NOT met'}, click {'met' if _met(clicked) else 'NOT met'}; open at "
            f"{opened['rps'] / bare['rps']:.0%} and click at {clicked['rps'] / bare['rps']:.0%} of the bare pixel's "
            f"req/s, server CPU {opened['server_cpu_us'] / bare['server_cpu_us']:.1f}x and "
            f"{clicked['server_cpu_us'] / bare['server_cpu_us']:.1f}x the bare pixel's"
        )
    print(
        f"  finished in {time.perf_counter() - started:.0f} s at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load "
        f"average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
