"""`s4l-report`: the analysis report of one or more finished sweeps.

    s4l-report RUN_DIR [RUN_DIR ...] --out DIR      (or: python -m analysis.cli ...)

RUN_DIR is a sweep directory written by `s4l-sweep` (results.parquet, space.json,
predictions.npz, splits.npz). Writes DIR/index.html (one self-contained page: figures embedded,
key numbers in words), DIR/figure3.png/.svg (the paper's Figure 3: tiny validation subsets
against the full split, and against the rest of the split, r with its bootstrap interval and a
p-value against the null that keeps the overlap, the pick on the tiny subset in red, seed means
± std where configurations have several seeds), the validation-size study (DIR/valsize*.png/.svg:
regret and P(best / within 0.5 / 1 pt) against images per class, judged on a held-out half of
the split, with the paper's nested construction dashed beside it and a one-line recommendation
with its Monte-Carlo error), the sensitivity per sweep axis (ω² and a permutation p per axis;
DIR/sensitivity*.png/.svg), the leaderboard by seed means and the seed repeats' finalists, and
every table as CSV. It prints the key numbers (also in DIR/summary.txt), then the page's path.
Without --out it writes to RUN_DIR/report (one RUN_DIR; several need --out).
A RUN_DIR may be an object-store URI (`s3://bucket/prefix/name`, a sweep run with
`--storage s3://...`): its files are downloaded into a local mirror first, and the report is
uploaded to URI/report when it is written to its default place. Trials marked short_run (too short to mean anything)
are left out and counted on the page unless --include-short-runs.

Every resampled figure carries its Monte-Carlo standard error; the defaults (2,000 draws,
bootstrap resamples and permutations) put at most 0.005 on a probability near 0.95, and the
sweep's own report uses the same defaults and seed, so one directory gives one page.
Runtime: bench/report_cost.py measures it (seconds for a thousand trials).
Bad input (no results, an empty table, no completed trial, an older results format) exits with
status 2 and one line that names the problem and the fix.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from s4l_models.errors import ArgumentParser, UserError, exit_on_user_error
from tune.provenance import driver_gone
from tune.results import SHORT_RULE, SPACE_JSON
from tune.storage import SWEEP_FILES, RemoteSweep, is_uri
from tune.summary import sweep_state


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="s4l-report",
        description="Figure 3, validation-size study, sensitivity and leaderboard of sweeps.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="sweep directories, or object-store URIs of sweeps (s3://...)")
    p.add_argument("--out", help="output directory (default, for one RUN_DIR: RUN_DIR/report; "
                   "required for several)")
    # Monte-Carlo sizes default to the analysis modules' own (valsize.DRAWS, stats.BOOT,
    # sensitivity.PERMUTATIONS: an error <= 0.005 on a probability near 0.95), which the sweep's
    # report uses too, so one directory gives one page either way.
    p.add_argument("--draws", type=int,
                   help="random draws per k and design in the validation-size study (default 2000)")
    p.add_argument("--boot", type=int,
                   help="bootstrap resamples for the CIs, Monte-Carlo null draws for Figure 3's "
                        "p-values and random subsets for the spread of r (default 2000; 0 skips "
                        "all three)")
    p.add_argument("--permutations", type=int,
                   help="permutations of each sweep axis in the sensitivity test (default 2000)")
    p.add_argument("--forests", type=int,
                   help="random forests fANOVA importance is averaged over (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets, bootstrap and permutations (default 0)")
    p.add_argument("--include-short-runs", action="store_true",
                   help=f"keep trials too short to mean anything ({SHORT_RULE}; left out by "
                   "default)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the report's path, not progress and key numbers")
    p.add_argument("--watch", action="store_true",
                   help="keep rebuilding the report while the sweeps run (when their tables "
                   "change; the page reloads itself), then build the final one and exit")
    p.add_argument("--every", type=float, default=60.0, metavar="S",
                   help="with --watch: look for changes every S seconds, and rebuild no more "
                   "often than 20x the last build's time (default 60)")
    p.add_argument("--refresh", type=int, metavar="S",
                   help="the page reloads itself every S seconds (a live report; the sweep "
                   "sets it while it runs)")
    return p


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.draws is not None and args.draws < 1) or (args.boot is not None and args.boot < 0) \
            or (args.permutations is not None and args.permutations < 1) \
            or (args.forests is not None and args.forests < 1):
        raise UserError("--draws, --permutations and --forests must be >= 1 and --boot >= 0")
    from .report import build_report  # heavy imports after argument checks

    if args.every <= 0 or (args.refresh is not None and args.refresh < 1):
        raise UserError("--every must be > 0 and --refresh >= 1 seconds")
    # sweeps on an object store are read from a local mirror, refreshed before each build
    remotes = [RemoteSweep(d) if is_uri(d) else None for d in args.run_dirs]
    dirs = [r.local if r is not None else Path(d) for r, d in zip(remotes, args.run_dirs)]
    if not args.out and len(dirs) > 1:
        # the first sweep's own report/ would be replaced by the combined one, silently
        raise UserError(f"{len(dirs)} RUN_DIRs make one combined report: give --out DIR for it "
                        "(without --out a report goes to its one RUN_DIR's report/)")
    out = Path(args.out) if args.out else dirs[0] / "report"
    upload = remotes[0] if not args.out and remotes[0] is not None else None
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    def sync():
        for r in remotes:
            if r is not None and not r.pull(*SWEEP_FILES):
                raise UserError(f"{r.uri}: no sweep there (no {SPACE_JSON} or results table); "
                                "check the URI and the store's credentials")

    def build(refresh_s):
        sync()
        index = build_report(dirs, out, n_draws=args.draws, n_boot=args.boot,
                             n_permutations=args.permutations, n_forests=args.forests,
                             seed=args.seed, log=log,
                             include_short=args.include_short_runs, refresh_s=refresh_s)
        if upload is not None:
            upload.push("report")
            log and log(f"report uploaded to {upload.uri_of('report')}")
        return index

    if args.watch:
        return watch(args, dirs, build, sync)
    index = build(args.refresh)
    if not args.quiet:
        print((index.parent / "summary.txt").read_text(encoding="utf-8"), end="")
    print(f"report: {index}", flush=True)
    return 0


def running(run_dir: Path) -> bool:
    """Whether a sweep is still running: its last session (space.json provenance) has no end
    recorded and its driver, where this machine can tell (`driver_gone`), still lives; a sweep
    without provenance is running while its table lacks planned trials or has running ones."""
    import json

    try:
        space = json.loads((run_dir / SPACE_JSON).read_text())
    except (OSError, ValueError):
        return False
    sessions = (space.get("provenance") or {}).get("sessions") or []
    if sessions:
        last = sessions[-1]
        return last.get("finished") is None and "outcome" not in last and not driver_gone(last)
    return not sweep_state(run_dir, int(space.get("num_trials") or 0))[0]


def _pause(seconds: float) -> None:
    """The wait between looks at a watched sweep (replaced in tests)."""
    time.sleep(seconds)


def watch(args, dirs: list[Path], build, sync=lambda: None) -> int:
    """Rebuild while any sweep runs and its table changed, at most every 20x the last build's
    time (and no more often than --every); the final build has no reload. Ctrl-C stops."""
    seen, wait = None, args.every
    try:
        while True:
            sync()  # sweeps on an object store: their latest files into the mirror
            live = any(running(d) for d in dirs)
            stamp = tuple((d / "results.parquet").stat().st_mtime_ns
                          if (d / "results.parquet").is_file() else 0 for d in dirs)
            if stamp != seen or not live:
                t0 = time.monotonic()
                try:
                    index = build(max(1, int(args.every)) if live else None)
                    print(f"report: {index}" + (" (live)" if live else ""), flush=True)
                except UserError as err:  # e.g. no completed trial yet: wait for one
                    if not live:
                        raise
                    print(f"report: not yet ({err})", flush=True)
                seen = stamp
                wait = max(args.every, 20 * (time.monotonic() - t0))
            if not live:
                return 0
            _pause(wait)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
