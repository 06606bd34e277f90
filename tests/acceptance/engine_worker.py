"""A worker process for the multi-process tests: advance everything due, then dispatch, against a
committed database, optionally killing itself with SIGKILL at a chosen point.

    python -m tests.acceptance.engine_worker URL OUTBOX --now ISO [--go FILE] [--batch-size N]
        [--kill-after-claims N | --kill-before-commit N | --kill-after-commits N | --kill-after-sends N]

Prints one JSON line: what it claimed, queued and sent."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from nurture.clock import FixedClock
from nurture.config import Settings
from nurture.db import make_engine, make_session_factory
from nurture.engine.context import EngineHooks
from nurture.engine.tick import advance_job, dispatch_job, recover_job
from tests.acceptance.counting_mailer import CountingMailer
from tests.acceptance.engine_support import engine_settings, make_context

SECRET = "acceptance-secret-0123456789abcdef-0123456789"


def _killer(limit: int | None) -> tuple[list[int], Callable[[int], None]]:
    seen = [0]

    def hook(count: int) -> None:
        seen[0] += count
        if limit is not None and seen[0] >= limit:
            os.kill(os.getpid(), signal.SIGKILL)

    return seen, hook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("outbox", type=Path)
    parser.add_argument("--now", required=True)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--kill-after-claims", type=int)
    parser.add_argument("--kill-before-commit", type=int)
    parser.add_argument("--kill-after-commits", type=int)
    parser.add_argument("--kill-after-sends", type=int)
    args = parser.parse_args()

    settings = engine_settings(
        Settings(database_url=args.database, secret_key=SECRET, base_url="https://nurture.test"), args.outbox
    )
    claimed, after_claim = _killer(args.kill_after_claims)
    _, before_commit = _killer(args.kill_before_commit)
    _, after_commit = _killer(args.kill_after_commits)
    hooks = EngineHooks(after_claim=after_claim, before_commit=before_commit, after_commit=after_commit)
    ctx = make_context(settings, batch_size=args.batch_size, hooks=hooks)
    engine = make_engine(args.database)
    session_factory = make_session_factory(engine)
    clock = FixedClock(datetime.fromisoformat(args.now))
    mailer = CountingMailer(args.outbox, kill_after=args.kill_after_sends)
    if args.go is not None:
        # Both processes start work together, so that they really compete for the same rows.
        while not args.go.exists():
            time.sleep(0.005)
    recovered = recover_job(session_factory, clock, ctx)
    advanced = advance_job(session_factory, clock, ctx)
    dispatched = dispatch_job(session_factory, clock, mailer, sleeper=lambda seconds: None)
    engine.dispose()
    print(json.dumps({
        "claimed": claimed[0],
        "emails": advanced.emails,
        "sent": len(dispatched.sent),
        "uncertain": len(dispatched.uncertain) + len(recovered.interrupted_sends),
    }))


if __name__ == "__main__":
    main()
