"""Two Ray Tune 2.60 bugs that cost a sweep its trials, worked around in one place.

1. `tolerate_memory_kills`: a trial whose worker Ray's memory monitor kills fails like any
   crashed trial (below). 2. `count_actor_deaths_once`: a reused worker killed while Ray
   resets it for its next trial counts as one failure, not two (see its docstring).
   `apply_ray_fixes()` applies both; tune/run_sweep.py calls it before `Tuner.fit()`.

When a node runs low on memory, Ray's memory monitor kills a worker process. If that worker is a
Tune trial's actor busy with a task (`train`, `save`, `reset`, ...), the task's future fails with
`ray.exceptions.OutOfMemoryError`, which is neither a `RayActorError` nor a `RayTaskError`;
`RayActorManager._actor_task_failed` (ray/air/execution/_internal/actor_manager.py) only knows
those two and raises `RuntimeError("Caught unexpected exception: 1 worker(s) were killed due to
the node running low on memory ...")` out of `Tuner.fit()`, which ended the whole sweep with a
traceback. (A worker killed while its actor is still being created fails the actor's start
instead, which Tune already treats as a trial failure.)

`tolerate_memory_kills()` makes the manager see that error as what it is, the death of the
trial's actor (a `RayActorError`): Tune then retries the trial from its last checkpoint under
`FailureConfig(max_failures=...)` and, past that, marks it errored, and the sweep goes on.
"""

from __future__ import annotations

try:
    from ray.exceptions import OutOfMemoryError, RayActorError
except ImportError:  # another Ray: nothing to fix here
    OutOfMemoryError = RayActorError = None

# What Ray's memory monitor says when it kills a worker (the trial's error.txt has it).
MEMORY_KILL_TEXT = "killed due to the node running low on memory"


if RayActorError is not None:

    class KilledForMemory(RayActorError):
        """The trial's actor was killed by Ray's memory monitor (its message kept)."""

        def __init__(self, message: str = ""):
            super().__init__(error_msg=message)
            self.args = (message,)  # pickled into the trial's error file: rebuildable


def _wrap_method(cls, name: str, wrap) -> bool:
    """Replace `cls.name` by `wrap(original)` once per process (a marker on the replacement
    makes a second call a no-op); False when this Ray's class has no such method."""
    original = getattr(cls, name, None)
    if original is None:
        return False
    if getattr(original, "_s4l_fix", False):
        return True
    patched = wrap(original)
    patched._s4l_fix = True
    setattr(cls, name, patched)
    return True


def tolerate_memory_kills() -> bool:
    """Patch Ray Tune's actor manager (once per process); False when this Ray has no such
    manager (then nothing is changed)."""
    try:
        from ray.air.execution._internal.actor_manager import RayActorManager
    except ImportError:
        return False
    if OutOfMemoryError is None:
        return False

    def wrap(original):
        def _actor_task_failed(self, tracked_actor_task, exception):
            if isinstance(exception, OutOfMemoryError) and not isinstance(exception, RayActorError):
                exception = KilledForMemory(str(exception))
            return original(self, tracked_actor_task, exception)

        return _actor_task_failed

    return _wrap_method(RayActorManager, "_actor_task_failed", wrap)


def count_actor_deaths_once() -> bool:
    """Count a reused worker's death once (Ray 2.60), so `--max-failures` means what it says.

    With `reuse_actors=True`, a worker killed while Ray resets it for its next trial reports the
    death twice: `TuneController._actor_failed` counts failure 1 and puts the trial back as
    PENDING, then the failed `reset` task's `_trial_task_failure` counts failure 2, and
    `_process_trial_failure` errors any PENDING trial without asking `should_recover()`.
    bench/chaos.py found 17 of 2,000 trials errored this way (each with two failures in the
    same second and no start) despite `--max-failures 20`. The second report of a death for a
    PENDING trial is ignored here, and the trial always leaves `_resetting_trials` (else the
    requeued trial never starts). A worker that fails while starting is set RUNNING by Ray
    before this is called, so that path is unchanged. False when this Ray lacks the method."""
    try:
        from ray.tune.execution.tune_controller import TuneController
        from ray.tune.experiment import Trial
    except ImportError:
        return False
    if RayActorError is None:
        return False

    def wrap(original):
        def _process_trial_failure(self, trial, exception):
            resetting = getattr(self, "_resetting_trials", None)
            if isinstance(resetting, set):
                resetting.discard(trial)
            if isinstance(exception, RayActorError) and trial.status == Trial.PENDING:
                return  # counted by _actor_failed, which requeued the trial
            return original(self, trial, exception)

        return _process_trial_failure

    return _wrap_method(TuneController, "_process_trial_failure", wrap)


def apply_ray_fixes() -> None:
    """Every fix of this module (each idempotent, each a no-op on a Ray without the bug's code)."""
    tolerate_memory_kills()
    count_actor_deaths_once()


__all__ = [
    "apply_ray_fixes", "count_actor_deaths_once", "tolerate_memory_kills", "KilledForMemory",
    "MEMORY_KILL_TEXT",
]
