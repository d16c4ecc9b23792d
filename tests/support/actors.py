"""Named actors of the shared test Ray session."""

from __future__ import annotations

from tests.support.wait import wait_for

__all__ = ["stop_named_actor"]


def stop_named_actor(name: str, namespace: str = "mtp") -> None:
    """Kill the actor named ``name`` (without restart) and wait, bounded, until the name is
    free: the next lookup meets the actor the test creates, or none."""
    import ray

    def gone() -> bool:
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            return True
        ray.kill(handle, no_restart=True)
        return False

    wait_for(gone, 60, interval_s=0.5, what=f"the {name} actor to be gone")
