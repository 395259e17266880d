"""The report: every figure, table and key number of the analysis in one self-contained page.

`build_report(run_dirs, out_dir)` reads the sweeps, runs the tiny-validation-set study
(Figure 3 and its statistics), the validation-size study, the sensitivity analysis and the
leaderboard, and writes into `out_dir`:

    index.html                 one page, figures embedded as base64 PNG, numbers in words
    summary.txt                the key numbers of the page, one per line (s4l-report prints it)
    figure3.png / .svg         Figure 3 (one row per sweep, one panel per tiny subset)
    valsize[-SWEEP].png/.svg   validation-size study (per sweep with predictions.npz)
    sensitivity[-SWEEP].png/.svg
    sweeps.csv, tiny_subsets.csv, valsize.csv, sensitivity.csv, sensitivity_values.csv,
    leaderboard.csv, configurations.csv   every table of the page

File names get the `-SWEEP` suffix only when several sweeps are reported together.
"""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from s4l_models.errors import UserError
from s4l_models.io import atomic_write, atomic_write_csv

from . import cost
from . import figure3 as fig3
from . import hpo_views as hv
from . import leaderboard as lb
from . import select_report as sel
from . import sensitivity as sens
from . import stats as st
from . import valsize as vs
from .figure3 import save as save_figure
from .load import FULL, Sweep, load_sweeps

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1280px;
margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0.2em}
h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:1.8em} h3{margin-bottom:0.3em}
.meta{color:#666;font-size:0.9em}
img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;font-size:0.82em;margin:8px 0 16px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.key{background:#f6f9ff;border-left:4px solid #4c72b0;padding:8px 14px;margin:12px 0}
.wide{overflow-x:auto} .rec{font-weight:600} .note{color:#8a6d3b;font-size:0.9em}
code{background:#f4f4f4;padding:0 3px}
"""


RETRY = "rerun s4l-report"  # after a full disk: nothing the sweep computed is lost
# every file the report writes: these names, and each figure's PNG and SVG (`_save`), named by
# its stem alone or, in a report of several sweeps, `<stem>-<sweep>` (`stem` in build_report)
OWN_FILES = ("index.html", "summary.txt", "sweeps.csv", "tiny_subsets.csv", "valsize.csv",
             "select_curves.csv", "select_criteria.csv", "sensitivity.csv",
             "sensitivity_values.csv", "fanova.csv", "leaderboard.csv", "configurations.csv",
             "cost_by_axis.csv")
FIGURE_STEMS = ("figure3", "valsize", "select", "sensitivity", "parallel")
FIGURE_SUFFIXES = (".png", ".svg")
MARK = "by s4l-report"  # in every page's header line
# written first into the output folder: a report stopped before its page (a live rebuild ended
# by the final one) still marks the folder as the report's to rewrite
OWN_MARKER = ".s4l-report"


def _write_utf8(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), retry=RETRY)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_csv(path, df, retry=RETRY)


def _save(fig, stem: Path) -> list[str]:
    return save_figure(fig, stem, retry=RETRY)


def owned(name: str) -> bool:
    """Whether the report writes a file of this name (and would replace one found there)."""
    if name in OWN_FILES:
        return True
    stem, dot, ext = name.rpartition(".")
    return (bool(dot) and f".{ext}" in FIGURE_SUFFIXES
            and any(stem == s or stem.startswith(f"{s}-") for s in FIGURE_STEMS))


def check_out(out: Path) -> None:
    """Refuse an output folder whose files the report would replace unless they are a previous
    report's (its index.html says it was made by s4l-report): a user's own index.html or
    leaderboard.csv there would be overwritten without a word."""
    if (out / OWN_MARKER).is_file():  # a report began here, perhaps stopped before its page
        return
    page = out / "index.html"
    try:
        if page.is_file() and MARK in page.read_text(encoding="utf-8", errors="replace"):
            return
    except OSError:
        pass
    try:
        clash = sorted(f.name for f in out.iterdir() if owned(f.name))
    except (FileNotFoundError, NotADirectoryError):  # a new folder, or a file (mkdir says)
        clash = []
    if clash:
        raise UserError(f"--out {out} holds {clash[0]}, not from an earlier s4l-report, which "
                        "the report would overwrite; choose a new or empty folder")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "sweep"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    svg = path.with_suffix(".svg").name
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f'<figcaption class="meta">{html.escape(alt)} — vector: '
            f'<a href="{svg}">{svg}</a></figcaption></figure>')


def _table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    if df.empty:
        return "<p class='meta'>(empty)</p>"

    def cell(v, c):
        if pd.isna(v):
            return "—"
        if c.endswith("_p"):  # p-values: scientific when small
            return st.fmt_p(v).removeprefix("p = ").replace("p < ", "< ")
        return floats.format(v)

    fmt = {c: (lambda v, c=c: cell(v, c)) for c in df.columns
           if pd.api.types.is_float_dtype(df[c])}
    return ("<div class='wide'>" + df.to_html(index=False, border=0, escape=True,
                                               formatters=fmt, na_rep="—") + "</div>")


def _p(text: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<p{c}>{html.escape(text)}</p>"


def _pt(x: float) -> str:
    return f"{x:.2f} pt"


def _pse(row, col: str) -> str:
    """A resampled probability with its Monte-Carlo standard error: '0.64 ± 0.01'."""
    return f"{row[col]:.2f} ± {row[col + '_se']:.3f}"


def _ci(v, lo, hi) -> str:
    if not np.isfinite(v):
        return "—"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{v:.2f}"


def _tiny_display(df: pd.DataFrame, multi: bool) -> pd.DataFrame:
    """Compact text version of tiny_subsets.csv for the page (one row per subset and
    yardstick)."""
    out = pd.DataFrame({"sweep": df["sweep"]}) if multi else pd.DataFrame(index=df.index)
    out["subset"] = df["subset"]
    out["yardstick"] = df["yardstick"]
    out["trials"] = df["n_trials"]
    for name, sym in (("pearson", "Pearson r"), ("spearman", "Spearman ρ"),
                      ("kendall", "Kendall τ")):
        out[f"{sym} [95% CI]"] = [_ci(v, a, b) for v, a, b in
                                   zip(df[name], df[name + "_lo"], df[name + "_hi"])]
        out[f"{sym}: mean under H0"] = df[name + "_null"].map(
            lambda v: f"{v:.2f}" if np.isfinite(v) else "—")
        p_min = df[name + "_p_min"] if name + "_p_min" in df else [None] * len(df)
        out[f"{sym} p"] = [st.fmt_p(p, m).removeprefix("p = ") for p, m in
                           zip(df[name + "_p"], p_min)]
    out["tied at top"] = df["n_tied"]
    out["P(pick is best)"] = df["p_pick_best"].map(lambda v: f"{v:.2f}")
    out["E[regret] [pt]"] = df["expected_regret_pt"].map(lambda v: f"{v:.2f}")
    out["best on yardstick (%)"] = [f"{t} ({100 * b:.2f})" for t, b in
                                    zip(df["best"], df["best_yard"])]
    for k in st.TOPK:
        out[f"E[top-{k} overlap]"] = df[f"top{k}_overlap"].map(lambda v: f"{v:.2f}")
    return out


def _binom(ci: st.BinomCI | None) -> str:
    if ci is None or not ci.n:
        return "n/a"
    return (f"{ci.correct}/{ci.n} = {100 * ci.acc:.0f}% (exact 95% CI "
            f"{100 * ci.lo:.0f}–{100 * ci.hi:.0f}%)")


def _coef(c: dict, key: str, sym: str) -> str:
    if not np.isfinite(c[key]):
        return f"{sym} undefined"
    ci = (f" [{c[key + '_lo']:.2f}, {c[key + '_hi']:.2f}]" if np.isfinite(c[key + "_lo"]) else "")
    return f"{sym} = {c[key]:.2f}{ci}"


def _pick(sel: st.Selection, where: str) -> str:
    if sel.n_tied == 1:
        head = f"the pick ({sel.tied[0]}) "
    else:
        head = f"{sel.n_tied} trials tie at the top ({100 * sel.top_tiny:.0f}%); a random one "
    if sel.p_pick_best >= 1:
        return head + f"is the best trial on {where}"
    if sel.n_tied == 1:
        return head + f"is not the best on {where}: regret {_pt(sel.expected_regret_pt)}"
    return (head + f"is the best on {where} with probability {sel.p_pick_best:.2f}, "
            f"expected regret {_pt(sel.expected_regret_pt)}")


def _other_subsets(r: st.TinyResult) -> str:
    """How r varies with the images drawn: the coefficients above hold for this one subset."""
    parts = []
    for y, where in ((r.nested, "the full split"), (r.disjoint, "the rest")):
        c = y.corr if y is not None else {}
        if np.isfinite(c.get("pearson_subsets_median", np.nan)):
            parts.append(f"{c['pearson_subsets_lo']:.2f} to {c['pearson_subsets_hi']:.2f} "
                         f"(median {c['pearson_subsets_median']:.2f}) against {where}")
    if not parts:
        return ""
    c = r.nested.corr
    undefined = c.get("pearson_subsets_undefined", 0.0)
    tie = (f"; {100 * undefined:.1f}% of them define no r, every trial tying on them"
           if undefined > 0 else "")
    return (f"; these coefficients hold for this sweep's subset: other random {r.k}/class "
            f"subsets of the same split give r {' and '.join(parts)} (central "
            f"{100 * st.LEVEL:.0f}% of {int(c['subset_draws']):,} draws{tie})")


def tiny_key(r: st.TinyResult) -> str:
    """The key-numbers line of one tiny subset: both yardsticks, the tie rule in expectation."""
    n, d = r.nested, r.disjoint
    c = n.corr
    text = f"{r.k}/class: " + _coef(c, "pearson", "r")
    if np.isfinite(c["pearson_p"]):
        text += (f" against the full split, where overlap alone gives r = "
                 f"{c['pearson_null']:.2f} (mean r under H0, over the simulated null's draws; "
                 f"{st.fmt_p(c['pearson_p'], c.get('pearson_p_min'))} vs that null)")
    elif np.isfinite(c["pearson"]) and n.null == st.NO_DRAWS:
        text += " against the full split (no p-value: no null draws were asked for, --boot 0)"
    elif np.isfinite(c["pearson"]):
        text += " against the full split (no p-value: without per-example predictions the null "
        text += "that keeps the overlap cannot be computed)"
    else:
        text += (" against the full split (fewer than 3 trials)" if r.n_trials < 3 else
                 " against the full split (the scores do not vary on the subset or on the "
                 "split, so no correlation is defined)")
    if d is not None:
        text += f"; {_coef(d.corr, 'pearson', 'r')} against the rest of the split"
        if np.isfinite(d.corr["pearson_p"]):
            text += f" ({st.fmt_p(d.corr['pearson_p'], d.corr.get('pearson_p_min'))} vs 0)"
    text += _other_subsets(r)
    text += "; " + _pick(n.selection, "the full split")
    if d is not None:
        sd = d.selection
        text += (f" (on the rest of the split: P(best) {sd.p_pick_best:.2f}, expected regret "
                 f"{_pt(sd.expected_regret_pt)})")
    return text + "."


def tiny_words(r: st.TinyResult) -> str:
    """One paragraph on one tiny subset: correlations and their nulls, the pick, exact binomial
    intervals, the McNemar test of the top two, warnings."""
    text = tiny_key(r) + " "
    imgs = f" ({r.n_images} images)" if r.n_images else ""
    text += (f"On {r.k}/class{imgs}, the top score is {_binom(r.ci.get('pick'))}; the best "
             f"full-split trial scores {_binom(r.ci.get('best_full'))}. ")
    if r.mcnemar is not None:
        text += r.mcnemar.verdict.rstrip(".") + ". "
    ov = ", ".join(f"top-{k} {v * min(k, r.n_trials):.1f}/{min(k, r.n_trials)}"
                   for k, v in r.nested.overlap.items())
    text += (f"Overlap of the best trials on subset and full split, expected over uniformly "
             f"random tie-breaks of both rankings: {ov}.")
    return text


def build_report(
    run_dirs: list[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    n_draws: int | None = None,
    n_boot: int | None = None,
    n_permutations: int | None = None,
    n_forests: int | None = None,
    seed: int = 0,
    log=None,
    include_short: bool = False,
    refresh_s: int | None = None,
) -> Path:
    """Analyse the sweeps in `run_dirs`, write figures, CSVs and index.html to `out_dir`.

    Returns the path of index.html. Raises UserError (one line, names the fix) on bad input.
    `n_draws` random subsets per k in the validation-size study, `n_boot` bootstrap resamples.
    Trials too short to mean anything are left out unless `include_short` (a note says so).
    `refresh_s`: a live report of a running sweep; the page reloads itself every that many
    seconds and says so.
    """
    t0 = time.time()
    say = log or (lambda msg: None)
    # Defaults sized so that a probability near 0.95 carries a Monte-Carlo error <= 0.005.
    n_draws = vs.DRAWS if n_draws is None else n_draws
    n_boot = st.BOOT if n_boot is None else n_boot
    n_permutations = sens.PERMUTATIONS if n_permutations is None else n_permutations
    n_forests = hv.FORESTS if n_forests is None else n_forests
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    sweeps = load_sweeps(list(run_dirs), include_short=include_short)
    out = Path(out_dir)
    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output directory {out} ({err.strerror}); "
                        f"choose another --out") from None
    _write_utf8(out / OWN_MARKER, "s4l-report writes this folder; the next report rewrites "
                "its files\n")
    multi = len(sweeps) > 1

    def stem(base: str, s: Sweep) -> Path:
        return out / (f"{base}-{_slug(s.name)}" if multi else base)

    body: list[str] = []
    key: list[str] = []

    # --- overview -------------------------------------------------------------------------
    overview = pd.DataFrame([{
        "sweep": s.name, "space": s.space_name, "directory": str(s.run_dir),
        "trials": len(s.df), "completed": len(s.completed),
        **{f"status_{k}": int(v) for k, v in s.df["status"].value_counts().items()},
        "axes": " ".join(s.axes), "optimised": f"{s.metric} ({s.mode})",
        "tiny_subsets": " ".join(f"{k}/class" for k in s.tiny_ks),
        "predictions": "yes" if s.predictions is not None else "no",
    } for s in sweeps]).fillna(0)
    _write_csv(overview, out / "sweeps.csv")

    # --- Figure 3 and the tiny-subset statistics -------------------------------------------
    say("tiny-subset statistics and Figure 3")
    tiny = {s.name: st.tiny_study(s, n_boot=n_boot, seed=seed) for s in sweeps}
    tiny_df = st.tiny_table([r for rs in tiny.values() for r in rs])
    _write_csv(tiny_df, out / "tiny_subsets.csv")
    fig, _ = fig3.figure3(sweeps, tiny)
    _save(fig, out / "figure3")
    body.append("<h2>Figure 3: tiny validation subsets against the full split</h2>")
    body.append(_p(
        "As in the paper's Figure 3: one point per completed trial, x = top-1 on the tiny "
        "subset (k images per class), y = top-1 on the full validation split (top row, the "
        "paper's construction: the full split contains the subset) and on the rest of the "
        "split, the images not in the subset (second row, when the sweep stored per-example "
        "predictions). A subset inside its yardstick correlates with it even when all trials "
        "are equally good (roughly sqrt(subset / split)), so the top row's p-value tests r "
        "against the overlap-only null, simulated (H0: all trials equally good, each image "
        "answered correctly at its observed rate, Monte-Carlo over the same number of draws as "
        "the bootstrap), never against 0; 'mean r under H0' (the panels, the table and the "
        "words) is the mean r of those draws. The second row's p tests r against 0. Intervals: 95% "
        "percentile bootstrap over trials. Red: the trial picked on the subset when ties go to "
        "the first in trial order (red rings: the other tied trials); the numbers in words are "
        "expectations over a random choice among the tied. Black star: the best trial on the "
        "yardstick. Orange squares: configurations run with several seeds, mean ± std over "
        "seeds. The paper reports r = 0.99 for 1 and 5 images per class on ImageNet (1% labels) "
        "and the same best model on 1 image per class as on the full split."))
    body.append(_img(out / "figure3.png", "Figure 3"))
    for s in sweeps:
        for r in tiny[s.name]:
            body.append(_p((f"{s.name}: " if multi else "") + tiny_words(r)))
            key.append((f"{s.name}, " if multi else "") + tiny_key(r))
            for w in r.warnings:
                body.append(_p(w, "note"))
                key.append((f"{s.name}, " if multi else "") + f"{r.k}/class: caution: {w}")
    if not tiny_df.empty:
        shown = _tiny_display(tiny_df, multi)
        body.append("<h3>Statistics per tiny subset and yardstick</h3>")
        mc = tiny_df[[c for c in tiny_df.columns if c.endswith("_mcse")]].to_numpy(float)
        mc_words = (f"at most {float(np.nanmax(mc)):.3f} here" if np.isfinite(mc).any() else
                    f"none here: no interval is given below {st.MIN_TRIALS} trials, where a "
                    "bootstrap over so few pairs does not hold its level")
        body.append(_p(
            f"Coefficients with 95% percentile-bootstrap intervals over trials ({n_boot} "
            "resamples; the Monte-Carlo standard error of every interval endpoint is in "
            f"tiny_subsets.csv, *_mcse, {mc_words}), the coefficient expected "
            "under H0 and the one-sided Monte-Carlo p-value against it; P(pick is best) and "
            "E[regret]: a uniformly random choice among the trials tied at the top of the "
            "subset, judged on the yardstick (regret = best yardstick top-1 minus the pick's, "
            "in points); E[top-k overlap] = expected share of the k best trials on the "
            "yardstick that are among the k best on the subset, ties at the k-th place broken "
            "uniformly at random, independently on the two rankings (exact: the sum over trials "
            "of P(in the subset's top k) × P(in the yardstick's top k), divided by k), so it "
            "never depends on trial order.", "meta"))
        body.append(_table(shown))

    # --- validation-size study -------------------------------------------------------------
    body.append("<h2>Beyond the paper: how many validation images per class are enough?</h2>")
    body.append(_p(
        f"For each k, {n_draws} random draws: each draw halves the validation split at random "
        "(class-stratified) into a selection pool and a held-out half, takes k images per class "
        "from the pool, scores every trial on them from its stored per-example correctness, "
        "picks the top trial (ties broken uniformly at random, in expectation) and judges the "
        "pick on the held-out half, which the subset never overlaps. Left: distribution of the "
        "selection regret. Right: probability of picking the held-out best or a trial within "
        "0.5 / 1 pt of it, and how often a pair of close trials (within 1 pt on the held-out "
        "half, not tied) is ranked the wrong way round (ties count half) — the concern of "
        "Oliver et al. Error bars: ±2 Monte-Carlo standard errors. Dashed: the paper's nested "
        "construction (subsets drawn from the full split and judged on the full split, which "
        "contains them, so agreement rises to 1 by construction), shown for comparison only; "
        "the recommendation uses the held-out design. 'pool' is the whole pool, half the split: "
        "the most a validation set of that size can do."))
    vs_tables = []
    for s in sweeps:
        if s.predictions is None:
            body.append(_p(f"{s.name}: skipped, no per-example predictions.", "note"))
            continue
        say(f"validation-size study for {s.name} ({n_draws} draws per k and design)")
        top1, label = s.predictions.top1, s.predictions.label
        res = vs.study(top1, label, design="heldout", n_draws=n_draws, seed=seed)
        nested = vs.study(top1, label, design="nested", n_draws=n_draws, seed=seed)
        fig, table = vs.plot_valsize(res, nested, title=s.name if multi else "")
        table = table.copy()
        table.insert(0, "sweep", s.name)
        vs_tables.append(table)
        _save(fig, stem("valsize", s))
        if multi:
            body.append(f"<h3>{html.escape(s.name)}</h3>")
        body.append(_img(stem("valsize", s).with_suffix(".png"),
                         f"validation-size study{' — ' + s.name if multi else ''}"))
        body.append(_p(res.recommendation + ".", "rec"))
        key.append((f"{s.name}: " if multi else "") + res.recommendation + ".")
        key.append((f"{s.name}: " if multi else "") + "for comparison only, "
                   + nested.recommendation.removeprefix("for this sweep, ") + ".")
        row1 = res.table.iloc[0]
        words = (f"With {row1['k_per_class']} image(s) per class ({int(row1['images'])} images) "
                 f"the pick is the held-out best with probability {_pse(row1, 'p_best')}, "
                 f"within 0.5 pt with {_pse(row1, 'p_within_0.5pt')}, mean regret "
                 f"{row1['regret_mean_pt']:.2f} ± {row1['regret_mean_pt_se']:.2f} pt (95th "
                 f"percentile {_pt(row1['regret_q95_pt'])}).")
        if res.n_pairs:
            words += (f" Of the pairs of trials within 1 pt of each other on the held-out half "
                      f"({res.n_pairs:.0f} per draw on average), "
                      f"{100 * row1['pair_misrank']:.0f}% are ranked wrongly at k = "
                      f"{row1['k_per_class']}")
            mid = res.table[res.table["k"] >= 10]
            if len(mid) and mid.iloc[0]["k_per_class"] != row1["k_per_class"]:
                words += (f" and {100 * mid.iloc[0]['pair_misrank']:.0f}% at k = "
                          f"{mid.iloc[0]['k_per_class']}")
            words += (" (a coin flip would be 50%: that is how far a subset of this size "
                      "resolves gaps of 1 pt or less).")
        else:
            words += " No two trials lie within 1 pt of each other, so no close pair to rank."
        body.append(_p(words))
        body.append(_table(table.drop(columns=["sweep"]) if not multi else table))
    if vs_tables:
        _write_csv(pd.concat(vs_tables, ignore_index=True), out / "valsize.csv")

    # --- few-label selection (s4l-select) ----------------------------------------------------
    body.append("<h2>How many labels does this sweep need?</h2>")
    body.append(_p(
        "A person labels validation images one at a time; which ones decides how few are "
        "enough (s4l-select). Same yardstick as above: every draw halves the split, strategies "
        "label images from the pool half only (true labels revealed only when asked for) and "
        "the pick, the trial with the most correct labeled images, is judged on the held-out "
        "half. random: uniformly; stratified: round-robin over the trials' voted class; "
        "disagreement: the image whose label says most about which trial is best (maximum "
        "entropy of the posterior-weighted vote under a one-parameter noise model, "
        "analysis/select.py); dashed: the report's k random images per true class. Error bars "
        "±2 Monte-Carlo SE. Below: label-free criteria, each trial ranked by mean confidence, "
        "agreement with the trials' vote, rotation-prediction accuracy (trials with a rotation "
        "head) or ATC (thresholds fitted on 1 random labeled image per class), with the regret "
        "of the trial each ranks first (points, full split) and Spearman's rho with full-split "
        "accuracy."))
    sel_curves, sel_crit = [], []
    for s in sweeps:
        say(f"few-label selection for {s.name}")
        try:
            got = sel.study(s, seed=seed)
        except sel.TooLarge as err:
            body.append(_p(f"{s.name}: skipped: {err}.", "note"))
            continue
        if got is None:
            body.append(_p(f"{s.name}: skipped: its predictions.npz stores only per-example "
                           "correctness, not each trial's predicted class and confidence "
                           "(written before s4l-tune stored them); rerun the sweep to see this.",
                           "note"))
            continue
        table, crit, need, sv = got
        _save(sel.curves_figure(table, s.name if multi else ""), stem("select", s))
        if multi:
            body.append(f"<h3>{html.escape(s.name)}</h3>")
        body.append(_img(stem("select", s).with_suffix(".png"), "labels needed per strategy"))
        text = sel.words(need, sv, crit, sel.pool_size(s))
        body.append(_p(text, "rec"))
        key.append((f"{s.name}: " if multi else "") + text)
        body.append(_table(crit))
        sel_curves.append(table.assign(sweep=s.name))
        sel_crit.append(crit.assign(sweep=s.name))
    if sel_curves:
        _write_csv(pd.concat(sel_curves, ignore_index=True), out / "select_curves.csv")
        _write_csv(pd.concat(sel_crit, ignore_index=True), out / "select_criteria.csv")

    # --- sensitivity -----------------------------------------------------------------------
    say("sensitivity per axis")
    body.append("<h2>Sensitivity: which axes of the sweep matter?</h2>")
    body.append(_p(
        "Full-split top-1 per value of every axis (box: quartiles; points: the search's "
        "trials; seed repeats of its best configurations are left out of this section, as they "
        "would count those configurations several times). Axes are "
        "ranked by ω² (Hays' omega squared, (SS_between − (k − 1)·MS_within) / (SS_total + "
        "MS_within)), a chance-corrected share of the variance of full-split top-1 the axis "
        "explains: 0 when the axis explains exactly what chance would (F = 1), negative = no "
        "detectable effect. η² and its chance level (k − 1)/(n − 1) are beside it. p: "
        f"permutation test ({n_permutations} permutations of the accuracies across the axis "
        "values, scipy.stats.permutation_test; ± its Monte-Carlo standard error), Holm-corrected "
        "over the axes; each axis is tested alone, so a dominant axis's effect counts as noise "
        "for the others ('not distinguishable' means not shown, never shown absent). Spreads "
        "= max − min over the axis values of the per-value best / median, in points. "
        "Architecture names are split into depth and version (derived axes, not independent "
        "tests)."))
    rankings, values = [], []
    for s in sweeps:
        ranking, per_value = sens.sensitivity(s, n_permutations=n_permutations, seed=seed)
        rankings.append(ranking)
        values.append(per_value)
        fig, _ = sens.plot_sensitivity(s, ranking)
        _save(fig, stem("sensitivity", s))
        if multi:
            body.append(f"<h3>{html.escape(s.name)}</h3>")
        body.append(_img(stem("sensitivity", s).with_suffix(".png"),
                         f"sensitivity{' — ' + s.name if multi else ''}"))
        words = sens.words(s, ranking)
        body.append(_p(words))
        key.append((f"{s.name}: " if multi else "") + words)
        body.append(_table(ranking.drop(columns=["sweep"]) if not multi else ranking))
    _write_csv(pd.concat(rankings, ignore_index=True), out / "sensitivity.csv")
    _write_csv(pd.concat(values, ignore_index=True), out / "sensitivity_values.csv")
    # Optuna's views beside ours: fANOVA importance and the parallel-coordinates plot
    body.append("<h3>Optuna's fANOVA importance and parallel coordinates</h3>")
    body.append(_p(
        f"fANOVA (optuna.importance.FanovaImportanceEvaluator, the mean over {n_forests} "
        "random forests seeded from the seed above, ± its Monte-Carlo standard error): the "
        "share of the variance of a random forest fitted to full-split top-1 that each of the "
        "sweep's own axes explains, summing to 1. It is what Optuna and W&B users read; unlike ω² it is not "
        "corrected for chance and has no p-value, so on a small sweep it gives noise a share "
        "too: read it beside the permutation test above. Below it, Optuna's parallel-coordinates "
        "plot: one line per trial of the search through its axis values, coloured by its "
        "score."))
    fanovas = []
    for s in sweeps:
        table = hv.fanova(s, seed=seed, forests=n_forests)
        fanovas.append(table)
        if multi:
            body.append(f"<h4>{html.escape(s.name)}</h4>")
        if len(table):
            words = hv.fanova_words(table)
            body.append(_p(words))
            key.append((f"{s.name}: " if multi else "") + words)
            fig = hv.plot_parallel(s)
            _save(fig, stem("parallel", s))
            body.append(_img(stem("parallel", s).with_suffix(".png"),
                             f"parallel coordinates{' — ' + s.name if multi else ''}"))
        else:
            body.append(_p(hv.fanova_missing(s)))
    _write_csv(pd.concat(fanovas, ignore_index=True), out / "fanova.csv")

    # --- leaderboard -----------------------------------------------------------------------
    best, configs = lb.leaderboard(sweeps)
    _write_csv(best, out / "leaderboard.csv")
    _write_csv(configs, out / "configurations.csv")
    body.append("<h2>Leaderboard (in the spirit of Table 1)</h2>")
    body.append(_p("Best configuration per search space and method, chosen on mean full-split "
                   "top-1 over seeds (trials that differ only in seed form one configuration); "
                   "mean ± sample std over seeds where repeated. Test accuracy is reported, "
                   "never used to choose."))
    body.append(_table(lb.display(best)))
    for row in best.itertuples():
        val = lb.pm(getattr(row, FULL + "_mean"), getattr(row, FULL + "_std"), row.n_seeds)
        test = lb.pm(row.test_top1_mean, row.test_top1_std, row.test_top1_n)
        tie = (f" (tied with {row.n_tied_others} other configuration"
               f"{'s' if row.n_tied_others > 1 else ''} at the same mean; the first in trial "
               "order is shown)" if row.n_tied_others else "")
        key.append(f"Best {row.method} on {row.space}: {row.config or '(one configuration)'}"
                   f"{tie}; top-1 [%] on the full validation split {val}, on test {test}.")
    fin = lb.finalists(configs)
    if len(fin):
        body.append("<h3>Seed repeats: configuration effect or seed noise?</h3>")
        body.append(_p(
            "Configurations run with several seeds (s4l-sweep --reseed-top K --seeds S trains "
            "the K best of the search again with more seeds): mean ± sample std of full-split "
            "top-1 over seeds. The leaderboard above chooses among these by their mean, not by "
            "the single lucky draw that made them finalists. Welch's t-test "
            "(scipy.stats.ttest_ind) compares the best two over their seeds."))
        shown = pd.DataFrame({
            "space": fin["space"], "configuration": fin["config"], "seeds": fin["n_seeds"],
            "val top-1 [%]": [lb.pm(a, b, int(n)) for a, b, n in
                              zip(fin[f"{FULL}_mean"], fin[f"{FULL}_std"], fin[f"{FULL}_n"])],
            "per seed [%]": fin["val_full_top1_per_seed"],
            "test top-1 [%]": [lb.pm(a, b, int(n)) for a, b, n in
                               zip(fin["test_top1_mean"], fin["test_top1_std"],
                                   fin["test_top1_n"])],
        })
        body.append(_table(shown))
        sep = lb.separation(configs)
        if sep is not None:
            words = lb.separation_words(sep)
            body.append(_p(words))
            key.append(words)
    noise = lb.seed_noise_ci(configs)
    if noise["n_configs"]:
        words = lb.seed_noise_words(noise)
        body.append(_p(words))
        key.append(words)

    # --- cost and provenance ---------------------------------------------------------------
    body.append("<h2>What the sweeps cost and what produced them</h2>")
    body.append(_p(
        "Cost: per trial, the CPUs and GPUs Ray reserved for it times its wall time "
        "(device-seconds; errored and stopped trials count: they were paid for), summed per "
        "sweep and per value of each axis (cost_by_axis.csv). Provenance: each session that "
        "ran the sweep (the first run and every --resume), from space.json."))
    by_axis = pd.concat([cost.cost_by_axis(s) for s in sweeps], ignore_index=True)
    _write_csv(by_axis, out / "cost_by_axis.csv")
    for s in sweeps:
        words = cost.sweep_cost(s).words()
        body.append(_p(words))
        key.append(f"Cost: {words}.")
        lines = cost.provenance_lines(s)
        body.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
                    if lines else _p(f"{s.name}: space.json records no provenance (a sweep "
                                     "written before it was recorded)."))
    if len(by_axis):
        body.append(_table(by_axis.drop(columns=[] if multi else ["sweep"])))

    # --- notes and page --------------------------------------------------------------------
    notes = [f"{s.name}: {n}" for s in sweeps for n in s.notes]
    elapsed = time.time() - t0
    title = "S4L sweep report: " + ", ".join(s.name for s in sweeps)
    head = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{len(sweeps)} sweep(s), "
        f"{sum(len(s.df) for s in sweeps)} trials, {sum(len(s.completed) for s in sweeps)} "
        f"analysed (completed, short runs left out unless --include-short-runs); generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} in {elapsed:.1f} s {MARK}. Tables as CSV beside "
        "this page: "
        + ", ".join(f"<a href='{f}'>{f}</a>" for f in sorted(p.name for p in out.glob("*.csv")))
        + ".</p>",
        "<div class='key'><b>Key numbers</b><ul>"
        + "".join(f"<li>{html.escape(k)}</li>" for k in key) + "</ul></div>",
        _table(overview),
    ]
    if notes:
        head.append("<div class='note'><b>Notes</b><ul>"
                    + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></div>")
    method = ("<h2>Definitions</h2><ul>"
              "<li>Completed trial: status <code>completed</code> with a full-split score; "
              "other statuses are left out.</li>"
              "<li>Which trials: Figure 3, the validation-size study, the few-label section and "
              "the leaderboard use every completed trial, seed repeats (s4l-sweep --reseed-top) "
              "included, since each is a model one could pick; the sensitivity section, fANOVA "
              "and the parallel plot use the search's trials only, since a repeat reruns a "
              "configuration chosen for scoring best and would count it several times.</li>"
              "<li>Trial order: the row order of results.parquet.</li>"
              "<li>Ties: every number in words and in the tables is an expectation over a "
              "uniformly random choice among the trials tied at the top of a subset, never an "
              "artefact of trial order (top-k overlaps: an expectation over random tie-breaks "
              "at the k-th place of both rankings); only Figure 3's red point is the first "
              "tied trial in trial order (its rings mark the others). On a yardstick, every "
              "trial tied at its top counts as the best.</li>"
              "<li>Regret: best yardstick top-1 minus the yardstick top-1 of the pick, in "
              "points (≥ 0).</li>"
              f"<li>Monte-Carlo error: every resampled or bootstrapped figure is an estimate "
              f"from random draws and carries its Monte-Carlo standard error (± or a _se / "
              f"_mcse column): validation-size study {n_draws} draws per k and design, "
              f"bootstrap, null draws and other random subsets of the split {n_boot}, permutations {n_permutations} per axis, "
              f"fANOVA random forests {n_forests}; "
              f"sized so that a probability near 0.95 is off by at most 0.005 (one standard "
              f"error). The sweep's own report and s4l-report use the same sizes and seed, so "
              f"they give the same page for the same directory.</li>"
              "<li>Exact binomial intervals: Clopper–Pearson (scipy.stats.binomtest). McNemar: "
              "exact, on the discordant images of the two best trials on the subset (when more "
              "than two tie for them, the first two in trial order, said as such, and the "
              "rest-of-split counts are left out).</li>"
              "<li>Which images: Figure 3's coefficients, intervals and p-values are for the "
              "sweep's own tiny subsets (splits.npz), resampling trials; the spread of r over "
              "other random subsets of the same size from the same split is given beside them "
              "(tiny_subsets.csv, pearson_subsets_*).</li>"
              "<li>What each p-value tests: Figure 3 top row, H0 = all trials equally good "
              "(keeps the overlap of subset and full split); second row and Welch's test, no "
              "difference; sensitivity, the axis has no effect (permutation, Holm-corrected)."
              "</li></ul>")
    reload = ""
    if refresh_s:
        reload = f"<meta http-equiv='refresh' content='{int(refresh_s)}'>"
        head.insert(1, "<div class='note'><b>Live report of a running sweep</b>: rebuilt as "
                    f"trials finish; this page reloads itself every {int(refresh_s)} s. The "
                    "numbers are those of the trials finished so far.</div>")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>" + reload
            + f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(head) + "".join(body) + method + "</body></html>")
    index = out / "index.html"
    # replaced atomically: a browser reloading a live report never reads half a page
    _write_utf8(index, page)
    _write_utf8(out / "summary.txt", "".join(f"{k}\n" for k in key))
    say(f"wrote {index} in {elapsed:.1f} s")
    return index
