"""Lead import, end to end: a realistic 100,000-row CSV through ``nurture.leads.importer.import_leads``
(parse, validate, bulk upsert, commit) into a fresh PostgreSQL database and a fresh SQLite file.

Ceiling, measured in the same run: PostgreSQL's own ``COPY ... FROM STDIN (FORMAT csv)`` of the same file
into a plain table of text columns, through psycopg. Each import runs in a child process, which reports its
own peak RSS. Target: at least 15,000 rows/s on PostgreSQL with peak RSS under 250 MB.

    .venv/bin/python -m bench.import_bench [--rows N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._postgres import conninfo, drop_database, recreate_database

DATABASE = "nurture_bench_import"
TARGET_ROWS_PER_SECOND = 15_000
TARGET_RSS_MB = 250
DEFAULT_ROWS = 100_000

HEADER = [
    "Email", "First Name", "Last Name", "Company Name", "Job Title", "Phone Number", "Country/Region",
    "Time Zone", "Lifecycle Stage", "Lead Source", "Tags", "OPTIN_TIME", "OPTIN_IP", "Create Date",
    "Lead Status", "Notes",
]
FIRST = ["Anna", "Björn", "Chloé", "David", "Elif", "François", "Grace", "Hiro", "Inès", "Jonas", "Kofi", "Lena",
         "Mateo", "Nadia", "Olivier", "Priya", "Quentin", "Rosa", "Sven", "Talia", "Ugo", "Vera", "Wei", "Yusuf"]
LAST = ["Martin", "Müller", "García", "Rossi", "Nowak", "Dubois", "Smith", "Jensen", "Kowalski", "Silva", "Nakamura",
        "O'Brien", "Petit", "Schmidt", "Moreau", "Larsen", "Costa", "Novak", "Leroy", "Fischer"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Soylent",
             "Tyrell", "Cyberdyne", "Wonka", "Aperture", "Vandelay Industries", "Pied Piper", "Dunder Mifflin"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.fr", "acme.io", "globex.com", "initech.co.uk", "hooli.xyz",
           "proton.me", "orange.fr", "web.de", "example.org", "mailbox.org", "free.fr", "gmx.net"]
TITLES = ["CEO", "CTO", "Head of Marketing", "Growth Lead", "Engineer", "Office Manager", "Buyer", "Analyst", ""]
COUNTRIES = [("FR", "Europe/Paris"), ("DE", "Europe/Berlin"), ("GB", "Europe/London"), ("US", "America/New_York"),
             ("US", "America/Los_Angeles"), ("ES", "Europe/Madrid"), ("JP", "Asia/Tokyo"), ("BR", "America/Sao_Paulo")]
STAGES = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", ""]
SOURCES = ["Webinar", "Trade show", "Website", "Partner", "Paid search", ""]
TAGS = ["newsletter", "webinar-2025", "vip", "trial", "partner", "event"]
LEAD_STATUS = ["NEW", "OPEN", "IN_PROGRESS", "ATTEMPTED_TO_CONTACT", ""]


def generate_csv(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """A HubSpot/Mailchimp-like export. About 1% of rows are invalid (email, time zone, stage) and about
    1% repeat an earlier address in another case; some notes hold commas, quotes and newlines."""
    rng = random.Random(seed)
    bad = duplicates = 0
    emails: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            roll = rng.random()
            if roll < 0.01 and emails:
                email = rng.choice(emails).upper()
                duplicates += 1
            else:
                local = f"{first}.{last}".lower().replace("'", "").encode("ascii", "ignore").decode()
                email = f"{local}.{index}@{rng.choice(DOMAINS)}"
                if len(emails) < 5_000:
                    emails.append(email)
            country, zone = rng.choice(COUNTRIES)
            stage = rng.choice(STAGES)
            if 0.01 <= roll < 0.014:
                email = email.replace("@", " at ")
                bad += 1
            elif 0.014 <= roll < 0.017:
                zone = "Mars/Olympus_Mons"
                bad += 1
            elif 0.017 <= roll < 0.02:
                stage = "evangelistic"
                bad += 1
            note = ""
            if rng.random() < 0.1:
                note = f'Met at "{rng.choice(SOURCES) or "booth"}", follow up\nre: pricing, {rng.randint(1, 99)} seats'
            writer.writerow([
                email, first, last, rng.choice(COMPANIES), rng.choice(TITLES), f"+33 6 {index % 100:02d} {index:06d}",
                country, zone, stage, rng.choice(SOURCES), ", ".join(rng.sample(TAGS, rng.randint(0, 2))),
                f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 10:{rng.randint(0, 59):02d}:00",
                f"203.0.113.{rng.randint(1, 254)}", f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                rng.choice(LEAD_STATUS), note,
            ])
    return {"bad": bad, "duplicates": duplicates}


# --- child process: one import -------------------------------------------------------------------------


def _child_import(url: str, path: str, profile: bool) -> None:
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from nurture.clock import FixedClock
    from nurture.db import make_engine
    from nurture.leads.importer import ImportOptions, import_leads

    engine = make_engine(url)
    clock = FixedClock(datetime(2026, 1, 15, 10, 0, tzinfo=UTC))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    with Session(engine) as session:
        backend = None
        if engine.dialect.name == "postgresql":
            backend = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            session.commit()
        server_started = _backend_cpu_seconds(backend)
        started = time.perf_counter()
        client_started = time.process_time()
        if profiler:
            profiler.enable()
        report = import_leads(session, clock, path, ImportOptions(tags=("bench",), source="bench"))
        session.commit()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_started
        server_ended = _backend_cpu_seconds(backend)
    server_cpu = server_ended - server_started if server_started is not None and server_ended is not None else None
    engine.dispose()
    if profiler:
        import pstats

        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    peak_kb = _peak_rss_kb()
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "client_cpu": client_cpu,
                      "server_cpu": server_cpu, **report.as_dict()}))


def _peak_rss_kb() -> int:
    """This process's peak resident memory. VmHWM belongs to the address space, which exec replaces; the
    ru_maxrss of getrusage also counts the parent's memory the child had between fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _backend_cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by a local PostgreSQL backend (user + system), or None when unreadable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_child(url: str, path: Path, profile: bool) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.import_bench", "--child", url, str(path), *(["--profile"] if profile else [])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"import child failed: {result.stderr.strip().splitlines()[-1:]}")
    if profile:
        print(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- PostgreSQL ---------------------------------------------------------------------------------------------


def _recreate_database() -> str:
    from nurture import migrate
    from nurture.db import make_engine

    url = recreate_database(DATABASE)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _copy_ceiling(path: Path) -> float:
    """Seconds for the server to COPY the same file into a plain table of text columns."""
    import psycopg

    columns = ", ".join(f"c{index} text" for index in range(len(HEADER)))
    with psycopg.connect(conninfo(DATABASE)) as conn:
        conn.execute(f"CREATE TABLE bench_copy ({columns})")
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return elapsed


def _schema_floor(path: Path) -> dict[str, float]:
    """COPY the same leads, unvalidated, straight into the real tables (leads with their indexes,
    stage_changes, activities, lead_tags with their foreign keys), with the same tags and attributes the
    import writes: what this schema costs the server whatever the importer does."""
    from datetime import UTC, datetime

    import psycopg

    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    seen: set[str] = set()
    leads = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            key = row[0].lower()
            if "@" in key and " " not in key and key not in seen:
                seen.add(key)
                leads.append(row)
    lead_columns = ("id, email, email_key, first_name, last_name, company, job_title, phone, country, timezone, "
                    "stage, source, consent_at, consent_ip, attributes, stage_entered_at, score, temperature, status, "
                    "created_at, updated_at")
    with psycopg.connect(conninfo(DATABASE)) as conn:
        tag_ids = {name: conn.execute("INSERT INTO tags (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]
                   for name in ("bench", *TAGS)}
        conn.commit()
        server_started = _backend_cpu_seconds(conn.info.backend_pid)
        started = time.perf_counter()
        ids = [lead_id for (lead_id,) in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('leads', 'id')) FROM generate_series(1, %s)", (len(leads),))]
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY leads ({lead_columns}) FROM STDIN") as copy:
                for lead_id, row in zip(ids, leads, strict=True):
                    attributes = {key: value for key, value in zip(("create_date", "lead_status", "notes"), row[13:16],
                                                                    strict=True) if value}
                    copy.write_row((lead_id, row[0], row[0].lower(), *row[1:8], "lead", row[9] or None, row[11],
                                    row[12], json.dumps(attributes), now, 0, "cold", "active", now, now))
            with cursor.copy("COPY stage_changes (lead_id, from_stage, to_stage, changed_at, reason, actor_kind, "
                             "actor) FROM STDIN") as copy:
                for lead_id in ids:
                    copy.write_row((lead_id, None, "lead", now, "imported", "import", "leads.csv"))
            with cursor.copy("COPY activities (lead_id, kind, occurred_at, data) FROM STDIN") as copy:
                for index, lead_id in enumerate(ids):
                    copy.write_row((lead_id, "imported", now, f'{{"file": "leads.csv", "line": {index + 2}}}'))
            with cursor.copy("COPY lead_tags (lead_id, tag_id) FROM STDIN") as copy:
                for lead_id, row in zip(ids, leads, strict=True):
                    for name in {"bench", *(tag.strip() for tag in row[10].split(",") if tag.strip())}:
                        copy.write_row((lead_id, tag_ids[name]))
        conn.commit()
        elapsed = time.perf_counter() - started
        server_cpu = _backend_cpu_seconds(conn.info.backend_pid)
    return {
        "seconds": elapsed,
        "leads": len(leads),
        "server_cpu": server_cpu - server_started if server_cpu is not None and server_started is not None else None,
    }


def _email_validation_cost(path: Path, sample: int = 5_000) -> tuple[float, float]:
    """Microseconds per address: email-validator alone, and the importer's normaliser (same answers, the
    domain checked once)."""
    from nurture.leads.columns import EmailNormaliser
    from nurture.leads.emails import InvalidEmail, normalise_email

    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        addresses = [row[0] for _, row in zip(range(sample), reader, strict=False)]
    costs = []
    for normalise in (normalise_email, EmailNormaliser()):
        started = time.process_time()
        for address in addresses:
            with contextlib.suppress(InvalidEmail):
                normalise(address)
        costs.append((time.process_time() - started) / len(addresses) * 1e6)
    return costs[0], costs[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bench")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--profile", action="store_true", help="print the child's cProfile top functions")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv or [])
    if args.child:
        _child_import(args.child[0], args.child[1], args.profile)
        return

    with tempfile.TemporaryDirectory(prefix="nurture-import-bench-") as tmp:
        path = Path(tmp) / "leads.csv"
        started = time.perf_counter()
        made = generate_csv(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:.1f} MB, {made['bad']} invalid, "
              f"{made['duplicates']} duplicates) in {time.perf_counter() - started:.1f} s")

        validator_us, normaliser_us = _email_validation_cost(path)
        print(f"email validation: email-validator {validator_us:.1f} us/address, importer's normaliser "
              f"{normaliser_us:.1f} us/address (same results; each domain validated once)")
        try:
            url = _recreate_database()
            copy_seconds = _copy_ceiling(path)
            pg = _run_child(url, path, args.profile)
            again = _run_child(url, path, False)
            _recreate_database()
            floor = _schema_floor(path)
        finally:
            drop_database(DATABASE)
        pg_rate = pg["rows"] / pg["seconds"]
        copy_rate = args.rows / copy_seconds
        print(f"PostgreSQL import:  {pg_rate:>9,.0f} rows/s ({pg['seconds']:.2f} s, peak RSS {pg['peak_mb']:.0f} MB)"
              f"  created {pg['created']:,} updated {pg['updated']:,} skipped {pg['skipped']:,} "
              f"rejected {pg['rejected']:,}")
        print(f"same file again:    {again['rows'] / again['seconds']:>9,.0f} rows/s ({again['seconds']:.2f} s, "
              f"peak RSS {again['peak_mb']:.0f} MB)  created {again['created']:,} updated {again['updated']:,} "
              f"skipped {again['skipped']:,} rejected {again['rejected']:,}")
        print(f"ceiling, raw COPY:  {copy_rate:>9,.0f} rows/s ({copy_seconds:.2f} s)  -> import at "
              f"{pg_rate / copy_rate:.0%} of COPY")
        floor_rate = floor["leads"] / floor["seconds"]
        print(f"schema floor:       {floor_rate:>9,.0f} leads/s ({floor['seconds']:.2f} s; COPY of the same leads, "
              f"unvalidated, into leads + history + tags)  -> import at {pg_rate / floor_rate:.0%} of it")
        if pg["server_cpu"] is not None and floor["server_cpu"] is not None:
            import_server = pg["server_cpu"] / pg["created"] * 1e6
            floor_server = floor["server_cpu"] / floor["leads"] * 1e6
            print(f"PostgreSQL backend CPU per new lead: import {import_server:.0f} us, floor {floor_server:.0f} us; "
                  f"importer process CPU per row {pg['client_cpu'] / pg['rows'] * 1e6:.0f} us")
            print(f"  -> the schema alone caps one import at about {1e6 / floor_server:,.0f} leads/s "
                  f"with a whole core for the server")

        if not args.skip_sqlite:
            from nurture import migrate
            from nurture.db import make_engine

            sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            engine = make_engine(sqlite_url)
            migrate.upgrade(engine)
            engine.dispose()
            lite = _run_child(sqlite_url, path, False)
            print(f"SQLite import:      {lite['rows'] / lite['seconds']:>9,.0f} rows/s ({lite['seconds']:.2f} s, "
                  f"peak RSS {lite['peak_mb']:.0f} MB)")

        met = pg_rate >= TARGET_ROWS_PER_SECOND and pg["peak_mb"] < TARGET_RSS_MB
        print(f"target >= {TARGET_ROWS_PER_SECOND:,} rows/s and < {TARGET_RSS_MB} MB on PostgreSQL: "
              f"{'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main(sys.argv[1:])
