"""Leaderboard in the spirit of the paper's Table 1: the best configuration per space and method.

Completed trials of all sweeps are grouped into configurations by their `config_id` (every
setting but the seed and the runtime ones, tune/results.py): trials that differ only in `seed`
form one configuration, across sweeps too.
Each configuration gets mean ± std (sample std, n - 1) over its seeds of full-split and test
top-1/top-5 in percent. Per (space, method) the best configuration is the one with the highest
mean full-split top-1 (ties: first seen) among the configurations with the most seeds: after
seed repeats (`s4l-sweep --reseed-top K --seeds S`) those are the finalists, whose means are
not the lucky single draws that made them finalists; the test columns are reported, never used
to choose. `separation` says whether the best finalist stands out from the runner-up beyond
seed noise (Welch's t-test over their seeds, scipy.stats.ttest_ind).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .load import FULL, Sweep, setting_columns
from .sensitivity import axis_cell

METRICS = (FULL, "val_full_top5", "test_top1", "test_top5")


def _trials(sweeps: list[Sweep]) -> tuple[pd.DataFrame, list[str], dict[str, list[str]]]:
    frames, settings, axes = [], [], {}
    for s in sweeps:
        df = s.completed.copy()
        df.insert(0, "space", s.space_name)
        df.insert(1, "sweep", s.name)
        if "method" not in df.columns:
            df["method"] = "?"
        frames.append(df)
        settings += [c for c in setting_columns(s.completed) if c not in settings]
        axes.setdefault(s.space_name, [])
        axes[s.space_name] += [a for a in s.axes if a not in axes[s.space_name] and a != "seed"]
    df = pd.concat(frames, ignore_index=True)
    for m in METRICS:
        if m not in df.columns:
            df[m] = np.nan
    config = [c for c in settings if c not in ("seed", "method")]
    for c in config:
        df[c] = df[c].map(axis_cell).map(lambda v: "" if v is None or (
            isinstance(v, float) and np.isnan(v)) else str(v))
    return df, config, axes


def configurations(sweeps: list[Sweep]) -> pd.DataFrame:
    """One row per configuration (trials differing only in seed), metrics mean/std in percent."""
    df, config, axes = _trials(sweeps)
    # a configuration = its config_id (tune/results.py: every setting but the seed and the
    # runtime ones), within a space; the loader gives older tables theirs
    keys = ["space", "method", "config_id"]
    rows = []
    for _, g in df.groupby(keys, sort=False, dropna=False):
        # a random or Optuna search can run one configuration twice with the same seed: that
        # is the same run again, not a seed repeat (it would show a seed std of 0 and count
        # towards "most seeds"); the first in trial order stands for it, the others counted
        n_runs = len(g)
        if "seed" in g.columns:
            g = g.drop_duplicates("seed", keep="first")
        first = g.iloc[0]
        shown = axes.get(first["space"]) or [c for c in config if df[c].nunique() > 1]
        row = {
            "space": first["space"], "method": first["method"],
            "config": ", ".join(f"{a}={first[a]}" for a in shown if a in g.columns),
            "n_seeds": len(g),
            "same_seed_reruns": n_runs - len(g),
            "seeds": " ".join(str(v) for v in g["seed"]) if "seed" in g.columns else "",
            "trials": " ".join(g["trial_id"]),
            # the full-split top-1 [%] of each seed, for the seed-noise test (`separation`)
            "val_full_top1_per_seed": " ".join(f"{100 * v:.4f}" for v in g[FULL]),
        }
        for m in METRICS:
            v = 100 * g[m].to_numpy(float)
            v = v[np.isfinite(v)]
            row[f"{m}_mean"] = v.mean() if len(v) else np.nan
            row[f"{m}_std"] = v.std(ddof=1) if len(v) > 1 else np.nan
            row[f"{m}_n"] = len(v)
        for c in ("dataset", "labels"):
            if c in g.columns:
                row[c] = first[c]
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard(sweeps: list[Sweep]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(best configuration per space/method, all configurations), best first; the best is
    chosen among the configurations with the most seeds of their space and method (the first
    in trial order on a tie; `n_tied_others` counts the others with the same mean)."""
    configs = configurations(sweeps)
    most = configs.groupby(["space", "method"], sort=False)["n_seeds"].transform("max")
    eligible = configs[configs["n_seeds"] == most]
    best = (eligible.sort_values(f"{FULL}_mean", ascending=False, kind="stable")
            .groupby(["space", "method"], sort=False).head(1)).copy()
    # how many other eligible configurations share the best mean: the first in trial order is
    # shown, and the page must say it is one of several
    top = eligible.groupby(["space", "method"], sort=False)[f"{FULL}_mean"].transform("max")
    tied = (eligible[f"{FULL}_mean"] >= top - 1e-9).groupby(
        [eligible["space"], eligible["method"]], sort=False).sum()
    best["n_tied_others"] = [int(tied[(r.space, r.method)]) - 1 for r in best.itertuples()]
    best = best.sort_values(["space", f"{FULL}_mean"], ascending=[True, False], kind="stable")
    return best.reset_index(drop=True), configs


def seed_noise_ci(configs: pd.DataFrame, level: float = 0.95) -> dict:
    """The pooled seed-to-seed std of full-split top-1 (points) with its exact interval: the
    seed-to-seed noise against which differences between configurations are to be read.

    sd = sqrt(sum (n_i - 1) s_i^2 / df), df = sum (n_i - 1) over the configurations with
    repeated seeds (n_i finite seeds, sample std s_i). Under normal seed noise with one std
    sigma shared by the configurations, df * sd^2 / sigma^2 ~ chi^2(df), so the exact
    `level` interval of sigma is sd * sqrt(df / chi2.ppf(1 - a/2, df)) to
    sd * sqrt(df / chi2.ppf(a/2, df)), a = 1 - level (scipy.stats.chi2). With few df it is
    wide: 3 configurations x 3 seeds (df 6) give [0.64, 2.2] x sd.

    Keys: sd, df, n_configs, lo, hi, level; diff_sd = sqrt(2) * sd, the std of the difference
    between two configurations each run with ONE seed; resolve = 2 * sqrt(2) * sd, the band
    within which such a difference is within seed noise (~95% two-sided under normal noise),
    and resolve_hi = 2 * sqrt(2) * hi, the same at the interval's upper end. NaN (df 0) when
    no configuration has repeated seeds.
    """
    nan = float("nan")
    out = {"sd": nan, "df": 0, "n_configs": 0, "lo": nan, "hi": nan, "level": level,
           "diff_sd": nan, "resolve": nan, "resolve_hi": nan}
    if f"{FULL}_n" not in configs.columns:
        return out
    rep = configs[(configs[f"{FULL}_n"] > 1) & configs[f"{FULL}_std"].notna()]
    if rep.empty:
        return out
    out["n_configs"] = int(len(rep))
    dof = rep[f"{FULL}_n"].astype(float) - 1
    df = float(dof.sum())
    sd = float(np.sqrt((dof * rep[f"{FULL}_std"] ** 2).sum() / df))
    a = 1 - level
    lo = sd * float(np.sqrt(df / sps.chi2.ppf(1 - a / 2, df)))
    hi = sd * float(np.sqrt(df / sps.chi2.ppf(a / 2, df)))
    out.update(sd=sd, df=int(round(df)), lo=lo, hi=hi, diff_sd=float(np.sqrt(2) * sd),
               resolve=float(2 * np.sqrt(2) * sd), resolve_hi=float(2 * np.sqrt(2) * hi))
    return out


def seed_noise_words(noise: dict) -> str:
    """The seed-noise sentence of the report (`seed_noise_ci`'s dict); '' without repeats."""
    if not noise["n_configs"]:
        return ""
    pct = f"{100 * noise['level']:.0f}%"
    return (
        f"Seed-to-seed noise: over {noise['n_configs']} configurations run with several "
        f"seeds ({noise['df']} degrees of freedom), the pooled standard deviation of "
        f"full-split top-1 is σ = {noise['sd']:.2f} pt (exact {pct} CI {noise['lo']:.2f}–"
        f"{noise['hi']:.2f} pt, chi-square with {noise['df']} df). A difference between two "
        f"configurations each run with one seed has standard deviation √2·σ = "
        f"{noise['diff_sd']:.2f} pt, so differences between single-seed configurations within "
        f"about 2·√2·σ = {noise['resolve']:.2f} pt are within seed noise (≈95% two-sided under "
        f"normal seed noise; {noise['resolve_hi']:.2f} pt at the upper end of σ's interval).")


def finalists(configs: pd.DataFrame) -> pd.DataFrame:
    """Configurations run with several seeds (the seed repeats' finalists), best mean first."""
    rep = configs[configs[f"{FULL}_n"] > 1]
    return rep.sort_values(f"{FULL}_mean", ascending=False, kind="stable").reset_index(drop=True)


def separation(configs: pd.DataFrame, alpha: float = 0.05) -> dict | None:
    """Is the best finalist better than the runner-up beyond seed noise?

    Welch's t-test (two-sided) on the full-split top-1 of their seeds; None with fewer than two
    finalists. `separable` is p < alpha; with 3 seeds each only gaps of several seed standard
    deviations reach it, which is the honest answer for so few repeats."""
    fin = finalists(configs)
    fin = fin[fin["space"] == fin["space"].iloc[0]] if len(fin) else fin
    if len(fin) < 2:
        return None
    a, b = ([float(v) for v in fin.iloc[i]["val_full_top1_per_seed"].split() if v != "nan"]
            for i in (0, 1))
    res = sps.ttest_ind(a, b, equal_var=False)
    p = float(res.pvalue) if np.isfinite(res.pvalue) else 1.0
    return {
        "best": fin.iloc[0]["config"], "runner_up": fin.iloc[1]["config"],
        "best_mean": float(np.mean(a)), "best_std": float(np.std(a, ddof=1)), "best_n": len(a),
        "runner_up_mean": float(np.mean(b)), "runner_up_std": float(np.std(b, ddof=1)),
        "runner_up_n": len(b), "gap_pt": float(np.mean(a) - np.mean(b)), "p": p,
        "separable": bool(p < alpha), "alpha": alpha,
    }


def separation_words(sep: dict) -> str:
    """The finalists' comparison in one sentence."""
    head = (f"Seed repeats: the best finalist ({sep['best']}) reaches "
            f"{pm(sep['best_mean'], sep['best_std'], sep['best_n'])} % full-split top-1, the "
            f"runner-up ({sep['runner_up']}) {pm(sep['runner_up_mean'], sep['runner_up_std'], sep['runner_up_n'])} %; "
            f"gap {sep['gap_pt']:.2f} pt, Welch's t-test p = {sep['p']:.3f}: ")
    if sep["separable"]:
        return head + "the pick stands out from seed noise."
    return head + ("the pick is not separable from seed noise (another seed could reverse the "
                   "order).")


def pm(mean: float, std: float, n: int) -> str:
    """'56.35 ± 0.21 (n=3)', or '56.35' for one seed, '—' when absent."""
    if not np.isfinite(mean):
        return "—"
    if n > 1 and np.isfinite(std):
        return f"{mean:.2f} ± {std:.2f} (n={n})"
    return f"{mean:.2f}"


def display(best: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as text cells for the HTML page."""
    out = pd.DataFrame({
        "space": best["space"], "method": best["method"], "configuration": best["config"],
        "seeds": best["n_seeds"],
    })
    names = {FULL: "val top-1", "val_full_top5": "val top-5", "test_top1": "test top-1",
             "test_top5": "test top-5"}
    for m, name in names.items():
        out[name + " [%]"] = [pm(a, b, int(n)) for a, b, n in
                              zip(best[f"{m}_mean"], best[f"{m}_std"], best[f"{m}_n"])]
    return out
