"""Placement groups a dead actor left behind (a stopped study trial's Ray Train controller whose
worker group was still waiting for CPUs) are freed by the driver; the driver's own groups and
those of live actors are not touched."""

from __future__ import annotations

import pytest

from mtp_core.ray_env import reap_orphan_placement_groups
from tests.support.wait import wait_for

pytestmark = pytest.mark.ray


def test_only_groups_of_dead_actors_are_removed(ray_session: None) -> None:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self) -> str:
            pg = placement_group([{"CPU": 0.25}])
            ray.get(pg.ready(), timeout=60)
            return str(pg.id.hex())

    mine = placement_group([{"CPU": 0.25}])
    ray.get(mine.ready(), timeout=60)
    dead, alive = Maker.remote(), Maker.remote()
    orphan = ray.get(dead.make.remote(), timeout=120)
    kept = ray.get(alive.make.remote(), timeout=120)
    try:
        ray.kill(dead)
        # seen, within its grace (other tests' leftovers may be reaped alongside: not ours)
        assert orphan not in reap_orphan_placement_groups(grace_s=3600)
        removed = wait_for(lambda: reap_orphan_placement_groups(grace_s=0), 60, interval_s=0.5,
                           what="the dead actor's placement group to be reaped")
        assert orphan in removed and kept not in removed and mine.id.hex() not in removed
        table = ray.util.placement_group_table()
        assert table[orphan]["state"] == "REMOVED"
        assert table[kept]["state"] == "CREATED"
        assert table[mine.id.hex()]["state"] == "CREATED"
        assert reap_orphan_placement_groups(grace_s=0) == []  # nothing left to do
    finally:
        remove_placement_group(mine)
        ray.kill(alive)
        # the live actor's group is an orphan now: freed here, not left to later tests
        wait_for(lambda: kept in reap_orphan_placement_groups(grace_s=0), 60, interval_s=0.5,
                 what="the second actor's placement group to be reaped")
