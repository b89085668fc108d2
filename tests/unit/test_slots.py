from datetime import UTC, datetime

from openanomaly.domain.schedule import Schedule
from openanomaly.domain.slots import CatchUp, latest_due, plan_catch_up

MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = int(datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
EVERY_5M = Schedule.parse("5m")
HOURLY_CRON = Schedule.parse("0 * * * *")


def test_no_record_runs_only_latest_due_slot():
    assert plan_catch_up(EVERY_5M, None, T0 + 7 * MINUTE, HOUR) == CatchUp([T0 + 5 * MINUTE])
    assert plan_catch_up(HOURLY_CRON, None, T0 + 90 * MINUTE, HOUR) == CatchUp([T0 + HOUR])


def test_now_on_a_slot_counts_that_slot_as_due():
    assert latest_due(EVERY_5M, T0) == T0
    assert latest_due(HOURLY_CRON, T0) == T0
    assert latest_due(HOURLY_CRON, T0 - 1) == T0 - HOUR


def test_no_gap_runs_just_the_next_slot():
    plan = plan_catch_up(EVERY_5M, T0, T0 + 5 * MINUTE + 3000, HOUR)
    assert plan == CatchUp([T0 + 5 * MINUTE], 0)
    assert plan_catch_up(HOURLY_CRON, T0, T0 + HOUR + 1, 3 * HOUR) == CatchUp([T0 + HOUR])


def test_nothing_due_yet():
    assert plan_catch_up(EVERY_5M, T0, T0 + 4 * MINUTE, HOUR) == CatchUp()


def test_gap_inside_horizon_runs_every_missed_slot_oldest_first():
    plan = plan_catch_up(EVERY_5M, T0, T0 + 21 * MINUTE, HOUR)
    assert plan.slots == [T0 + k * 5 * MINUTE for k in (1, 2, 3, 4)]
    assert plan.skipped == 0
    cron = plan_catch_up(HOURLY_CRON, T0, T0 + 3 * HOUR + 10, 4 * HOUR)
    assert cron == CatchUp([T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR], 0)


def test_gap_beyond_horizon_counts_older_slots_as_skipped():
    now = T0 + 60 * MINUTE
    plan = plan_catch_up(EVERY_5M, T0, now, 15 * MINUTE)
    assert plan.slots == [T0 + 45 * MINUTE, T0 + 50 * MINUTE, T0 + 55 * MINUTE, now]
    assert plan.skipped == 8  # 5m .. 40m
    cron = plan_catch_up(HOURLY_CRON, T0, T0 + 10 * HOUR, 2 * HOUR)
    assert cron == CatchUp([T0 + 8 * HOUR, T0 + 9 * HOUR, T0 + 10 * HOUR], 7)


def test_cron_in_a_time_zone():
    # 09:00 in Berlin (UTC+1 in March before DST) is 08:00 UTC.
    berlin = Schedule.parse("0 9 * * *", "Europe/Berlin")
    day_start = int(datetime(2024, 3, 1, 8, 0, tzinfo=UTC).timestamp() * 1000)
    plan = plan_catch_up(berlin, day_start, day_start + 2 * 24 * HOUR + 5, 3 * 24 * HOUR)
    assert plan.slots == [day_start + 24 * HOUR, day_start + 48 * HOUR]


def test_last_done_in_the_future_runs_nothing():
    assert plan_catch_up(EVERY_5M, T0 + HOUR, T0, HOUR) == CatchUp()
    assert plan_catch_up(HOURLY_CRON, T0 + 5 * HOUR, T0, HOUR) == CatchUp()
