import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from nurture.delivery.retry import RetryPolicy, parse_retry_after

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for retry in range(1, 10):
        ceiling = min(8.0, 2 ** (retry - 1))
        delays = [policy.delay(retry, None, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8


def test_retry_after_is_honoured_with_a_little_jitter():
    policy = RetryPolicy(base_delay=1.0)
    delays = {policy.delay(1, 5.0, random.Random(seed)) for seed in range(20)}
    assert all(5.0 <= d < 6.0 for d in delays) and len(delays) > 1


def test_giving_up():
    policy = RetryPolicy(attempts=3, max_retry_after=60)
    rng = random.Random(0)
    assert policy.delay(2, None, rng) is not None
    assert policy.delay(3, None, rng) is None
    assert policy.delay(1, 61.0, rng) is None


def test_parse_retry_after():
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=90), usegmt=True), NOW) == 0.0
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("-5", NOW) is None
