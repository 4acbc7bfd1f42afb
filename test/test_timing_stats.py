"""Rolling latency statistics, rate meter and reason counters with exact expected numbers."""
import threading

import pytest

from cosmos_policy_ros.counters import nearest_rank, RateMeter, ReasonCounts, RollingWindow


def test_nearest_rank_percentiles():
    values = [1, 2, 3, 4]
    assert nearest_rank(values, 50) == 2  # ceil(0.5 * 4) = 2nd smallest
    assert nearest_rank(values, 51) == 3
    assert nearest_rank(values, 100) == 4
    twenty = list(range(1, 21))
    assert nearest_rank(twenty, 95) == 19  # ceil(0.95 * 20) = 19
    assert nearest_rank(twenty, 1) == 1
    assert nearest_rank([7], 50) == 7
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank(values, 0)


def test_rolling_window_summary_over_the_last_samples():
    window = RollingWindow(size=4)
    assert window.summary() == {}
    for value in (10.0, 0.5, 0.1, 0.3, 0.2):  # 10.0 falls out of the window
        window.add(value)
    summary = window.summary()
    assert summary['count'] == 4 and window.total == 5
    assert summary['max'] == 0.5
    assert summary['last'] == 0.2
    assert summary['p50'] == 0.2  # sorted 0.1 0.2 0.3 0.5: 2nd
    assert summary['p95'] == 0.5  # ceil(3.8) = 4th
    assert summary['mean'] == pytest.approx((0.5 + 0.1 + 0.3 + 0.2) / 4)
    window.clear()
    assert window.summary() == {}


def test_rate_meter():
    meter = RateMeter(size=5)
    assert meter.rate() == 0.0
    for k in range(10):  # one event every 50 ms
        meter.add(1_000_000_000 + k * 50_000_000)
    assert meter.rate() == pytest.approx(20.0)  # 4 intervals over the last 5 events: 200 ms
    last = 1_000_000_000 + 9 * 50_000_000
    assert meter.rate(last + 100_000_000, max_gap_ns=200_000_000) == pytest.approx(20.0)
    assert meter.rate(last + 300_000_000, max_gap_ns=200_000_000) == 0.0  # stopped ticking
    meter.add(5)  # time went back: start over
    assert meter.rate() == 0.0


def test_reason_counts_are_thread_safe():
    counts = ReasonCounts()

    def work():
        for _ in range(1000):
            counts.add('primary', 'truncated')
            counts.add('joints', 'missing_joint')

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts.get('primary', 'truncated') == 4000
    assert counts.total('joints') == 4000 and counts.total() == 8000
    assert list(counts.snapshot()) == [('joints', 'missing_joint'), ('primary', 'truncated')]
