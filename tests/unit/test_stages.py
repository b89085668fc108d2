"""The stage clock: parts marked deep in the code add to the stage being timed."""

import time

import pytest

from openanomaly.domain.stages import StageClock, part


def test_a_part_adds_to_the_stage_it_runs_in():
    clock = StageClock()
    with clock.stage("query"):
        with part("http"):
            time.sleep(0.02)
        with part("decode"):
            pass
    with clock.stage("write"), part("http"):
        time.sleep(0.01)
    assert set(clock.stages) == {"query", "write"}
    assert set(clock.parts) == {"query.http", "query.decode", "write.http"}
    assert clock.parts["query.http"] >= 0.02
    assert clock.stages["query"] >= clock.parts["query.http"] + clock.parts["query.decode"]


def test_a_part_outside_any_stage_records_nothing():
    clock = StageClock()
    with part("http"):
        value = 1
    assert value == 1 and clock.parts == {} and clock.stages == {}


def test_time_adds_up_over_repeated_stages_and_survives_errors():
    clock = StageClock()
    for _ in range(2):
        with clock.stage("history"), part("http"):
            time.sleep(0.005)
    with pytest.raises(RuntimeError), clock.stage("history"), part("http"):
        raise RuntimeError("the database went away")
    assert clock.parts["history.http"] >= 0.01
    # After the failed stage no stage is current: a later part records nothing.
    with part("http"):
        pass
    assert set(clock.parts) == {"history.http"}
