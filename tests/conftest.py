"""Shared test setup: Ray's local-cluster settings for this machine, small-run helpers."""

from __future__ import annotations

import os
import tempfile

# Ray 2.59+ turns on token auth for local clusters; tests run local throwaway clusters.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray's socket paths must stay short.
os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), "s4l-ray-tests"))
os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)
