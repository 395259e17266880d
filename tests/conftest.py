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
