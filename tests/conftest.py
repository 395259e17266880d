"""Shared test setup: Ray's local-cluster settings for this machine, small-run helpers."""

from __future__ import annotations

import os
import tempfile

import pytest

# Ray 2.59+ turns on token auth for local clusters; tests run local throwaway clusters.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray's socket paths must stay short.
os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "s4l-ray-tests"))
os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs) per test module that asks for it; the sweeps' `main()`
    reuses a running Ray instead of starting its own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


class Killed(BaseException):
    """A process that dies: nothing after the point it is raised at runs (not an Exception, so
    no handler of the code under test catches it)."""


@pytest.fixture()
def kill_after_checkpoint(monkeypatch):
    """`arm(when)`: the next trainer checkpoint for which `when(trainer, state)` holds is written,
    then the run dies (raises `Killed`) before anything after it, such as its progress line;
    `when` decides whether to keep killing. Returns the Killed class to expect."""
    from s4l_models.trainer import Trainer

    save = Trainer.save_checkpoint

    def arm(when):
        def save_then_die(self, state, history):
            path = save(self, state, history)
            if when(self, state):
                raise Killed
            return path

        monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
        return Killed

    return arm
