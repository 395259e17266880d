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

from . import figure3 as fig3
from . import leaderboard as lb
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


def _ci(v, lo, hi) -> str:
    if not np.isfinite(v):
        return "—"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{v:.2f}"


def _tiny_display(df: pd.DataFrame, multi: bool) -> pd.DataFrame:
    """Compact text version of tiny_subsets.csv for the page."""
    out = pd.DataFrame({"sweep": df["sweep"]}) if multi else pd.DataFrame(index=df.index)
    out["subset"] = df["subset"]
    out["trials"] = df["n_trials"]
    for name, sym in (("pearson", "Pearson r"), ("spearman", "Spearman ρ"),
                      ("kendall", "Kendall τ")):
        out[f"{sym} [95% CI]"] = [_ci(v, a, b) for v, a, b in
                                   zip(df[name], df[name + "_lo"], df[name + "_hi"])]
        out[f"{sym} p"] = [st.fmt_p(p).removeprefix("p = ") for p in df[name + "_p"]]
    out["picked (tiny %, full %)"] = [f"{t} ({100 * a:.1f}, {100 * b:.2f})" for t, a, b in
                                      zip(df["picked"], df["picked_tiny"], df["picked_full"])]
    out["best on full (%)"] = [f"{t} ({100 * b:.2f})" for t, b in zip(df["best"], df["best_full"])]
    out["same"] = df["same_trial"].map({True: "yes", False: "no"})
    out["regret [pt]"] = df["regret_pt"].map(lambda v: f"{v:.2f}")
    out["tied"] = df["n_tied"]
    out["E[regret] random tie-break [pt]"] = df["expected_regret_pt"].map(lambda v: f"{v:.2f}")
    for k in st.TOPK:
        out[f"top-{k} overlap"] = df[f"top{k}_overlap"].map(lambda v: f"{v:.2f}")
    return out


def tiny_words(r: st.TinyResult, n_images: int | None) -> str:
    """One paragraph on one tiny subset: correlations, the pick, ties, overlap."""
    c, s = r.corr, r.selection
    imgs = f" ({n_images} images)" if n_images else ""

    def coef(sym, key):
        if not np.isfinite(c[key]):
            return f"{sym} undefined"
        ci = (f", 95% CI {c[key + '_lo']:.2f}–{c[key + '_hi']:.2f}"
              if np.isfinite(c[key + "_lo"]) else "")
        return f"{sym} = {c[key]:.2f} ({st.fmt_p(c[key + '_p'])}{ci})"

    text = (f"{r.k}/class{imgs}, {r.n_trials} trials: Pearson {coef('r', 'pearson')}, "
            f"Spearman {coef('ρ', 'spearman')}, Kendall {coef('τ', 'kendall')}. ")
    text += (f"Picked on {r.k}/class: {s.picked} ({100 * s.picked_tiny:.1f}% on the subset, "
             f"{100 * s.picked_full:.2f}% on the full split); best on the full split: {s.best} "
             f"({100 * s.best_full:.2f}%). ")
    text += ("Same trial: regret 0.00 pt. " if s.same_trial else
             f"Not the same trial: regret {_pt(s.regret_pt)}. ")
    if s.n_tied > 1:
        text += (f"{s.n_tied} trials tie at the top subset score (first in trial order taken); "
                 f"a uniformly random choice among them has expected regret "
                 f"{_pt(s.expected_regret_pt)} and picks a best trial with probability "
                 f"{s.p_best_random:.2f}. ")
    ov = ", ".join(f"top-{k} {v * min(k, r.n_trials):.0f}/{min(k, r.n_trials)}"
                   for k, v in r.overlap.items())
    return text + f"Overlap of the best trials on subset and full split: {ov}."


def build_report(
    run_dirs: list[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    n_draws: int = 1000,
    n_boot: int = 1000,
    seed: int = 0,
    log=None,
    include_short: bool = False,
) -> Path:
    """Analyse the sweeps in `run_dirs`, write figures, CSVs and index.html to `out_dir`.

    Returns the path of index.html. Raises UserError (one line, names the fix) on bad input.
    `n_draws` random subsets per k in the validation-size study, `n_boot` bootstrap resamples.
    Trials too short to mean anything are left out unless `include_short` (a note says so).
    """
    t0 = time.time()
    say = log or (lambda msg: None)
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    sweeps = load_sweeps(list(run_dirs), include_short=include_short)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output directory {out} ({err.strerror}); "
                        f"choose another --out") from None
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
    overview.to_csv(out / "sweeps.csv", index=False)

    # --- Figure 3 and the tiny-subset statistics -------------------------------------------
    say("tiny-subset statistics and Figure 3")
    tiny = {s.name: st.tiny_study(s, n_boot=n_boot, seed=seed) for s in sweeps}
    tiny_df = st.tiny_table([r for rs in tiny.values() for r in rs])
    tiny_df.to_csv(out / "tiny_subsets.csv", index=False)
    fig, _ = fig3.figure3(sweeps, tiny)
    save_figure(fig, out / "figure3")
    body.append("<h2>Figure 3: tiny validation subsets against the full split</h2>")
    body.append(_p(
        "As in the paper's Figure 3: one point per completed trial, x = top-1 on the tiny "
        "subset (k images per class), y = top-1 on the full validation split, Pearson r and p "
        "on each panel. Red: the trial picked on the tiny subset (ties: first in trial order; "
        "red rings: the other tied trials). Black star: the best trial on the full split. The "
        "paper reports r = 0.99 for 1 and 5 images per class on ImageNet (1% labels) and the "
        "same best model on 1 image per class as on the full split."))
    body.append(_img(out / "figure3.png", "Figure 3"))
    for s in sweeps:
        for r in tiny[s.name]:
            words = tiny_words(r, fig3.n_images(s, r.k))
            body.append(_p((f"{s.name}: " if multi else "") + words))
            sel = r.selection
            key.append(
                f"{s.name + ', ' if multi else ''}{r.k}/class: r = {r.corr['pearson']:.2f} "
                f"({st.fmt_p(r.corr['pearson_p'])}); the pick on the subset "
                + ("is the best trial on the full split." if sel.same_trial else
                   f"loses {_pt(sel.regret_pt)} against the best on the full split.")
                + (f" {sel.n_tied} trials tie on the subset (random tie-break: expected regret "
                   f"{_pt(sel.expected_regret_pt)})." if sel.n_tied > 1 else ""))
    if not tiny_df.empty:
        shown = _tiny_display(tiny_df, multi)
        body.append("<h3>Statistics per tiny subset</h3>")
        body.append(_p("Coefficients with scipy.stats p-values and 95% percentile-bootstrap "
                       f"intervals over trials ({n_boot} resamples); accuracies in %, regret = "
                       "best full-split top-1 minus the picked trial's, in points; overlap = "
                       "share of the k best trials on the full split that are among the k best "
                       "on the subset.", "meta"))
        body.append(_table(shown))

    # --- validation-size study -------------------------------------------------------------
    body.append("<h2>Beyond the paper: how many validation images per class are enough?</h2>")
    body.append(_p(
        f"For each k, {n_draws} random class-stratified subsets of k images per class are drawn "
        "from the full validation split; every trial is scored on each subset from its stored "
        "per-example correctness, the top trial is picked (ties broken uniformly at random, in "
        "expectation) and judged on the full split. Left: distribution of the selection regret. "
        "Right: probability of picking the best trial or one within 0.5 / 1 pt, and how often a "
        "pair of close trials (within 1 pt on the full split, not tied) is ranked the wrong way "
        "round (ties count half) — the concern of Oliver et al."))
    vs_tables = []
    for s in sweeps:
        if s.predictions is None:
            body.append(_p(f"{s.name}: skipped, no per-example predictions.", "note"))
            continue
        say(f"validation-size study for {s.name} ({n_draws} draws per k)")
        res = vs.study(s.predictions.top1, s.predictions.label, n_draws=n_draws, seed=seed)
        table = res.table.copy()
        table.insert(0, "sweep", s.name)
        vs_tables.append(table)
        fig, _ = vs.plot_valsize(res, title=s.name if multi else "")
        save_figure(fig, stem("valsize", s))
        if multi:
            body.append(f"<h3>{html.escape(s.name)}</h3>")
        body.append(_img(stem("valsize", s).with_suffix(".png"),
                         f"validation-size study{' — ' + s.name if multi else ''}"))
        body.append(_p(res.recommendation + ".", "rec"))
        key.append((f"{s.name}: " if multi else "") + res.recommendation + ".")
        row1 = res.table.iloc[0]
        words = (f"With {row1['k_per_class']} image(s) per class ({int(row1['images'])} images) "
                 f"the pick is the best trial with probability {row1['p_best']:.2f}, within "
                 f"0.5 pt with {row1['p_within_0.5pt']:.2f}, mean regret "
                 f"{_pt(row1['regret_mean_pt'])} (95th percentile {_pt(row1['regret_q95_pt'])}).")
        if res.n_pairs:
            words += (f" Of {res.n_pairs} pairs of trials within 1 pt of each other, "
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
        shown = table.drop(columns=["sweep"]) if not multi else table
        body.append(_table(shown))
    if vs_tables:
        pd.concat(vs_tables, ignore_index=True).to_csv(out / "valsize.csv", index=False)

    # --- sensitivity -----------------------------------------------------------------------
    say("sensitivity per axis")
    body.append("<h2>Sensitivity: which axes of the sweep matter?</h2>")
    body.append(_p("Full-split top-1 per value of every axis (box: quartiles; points: trials). "
                   "η² = share of the variance of full-split top-1 explained by the axis alone; "
                   "spreads = max − min over the axis values of the per-value best / median, in "
                   "points. Architecture names are split into depth and version."))
    rankings, values = [], []
    for s in sweeps:
        ranking, per_value = sens.sensitivity(s)
        rankings.append(ranking)
        values.append(per_value)
        fig, _ = sens.plot_sensitivity(s, ranking)
        save_figure(fig, stem("sensitivity", s))
        if multi:
            body.append(f"<h3>{html.escape(s.name)}</h3>")
        body.append(_img(stem("sensitivity", s).with_suffix(".png"),
                         f"sensitivity{' — ' + s.name if multi else ''}"))
        words = sens.verdict(ranking)
        body.append(_p(words))
        key.append((f"{s.name}: " if multi else "") + words)
        body.append(_table(ranking.drop(columns=["sweep"]) if not multi else ranking))
    pd.concat(rankings, ignore_index=True).to_csv(out / "sensitivity.csv", index=False)
    pd.concat(values, ignore_index=True).to_csv(out / "sensitivity_values.csv", index=False)

    # --- leaderboard -----------------------------------------------------------------------
    best, configs = lb.leaderboard(sweeps)
    best.to_csv(out / "leaderboard.csv", index=False)
    configs.to_csv(out / "configurations.csv", index=False)
    body.append("<h2>Leaderboard (in the spirit of Table 1)</h2>")
    body.append(_p("Best configuration per search space and method, chosen on mean full-split "
                   "top-1 over seeds (trials that differ only in seed form one configuration); "
                   "mean ± sample std over seeds where repeated. Test accuracy is reported, "
                   "never used to choose."))
    body.append(_table(lb.display(best)))
    for row in best.itertuples():
        val = lb.pm(getattr(row, FULL + "_mean"), getattr(row, FULL + "_std"), row.n_seeds)
        test = lb.pm(row.test_top1_mean, row.test_top1_std, row.test_top1_n)
        key.append(f"Best {row.method} on {row.space}: {row.config or '(one configuration)'}; "
                   f"top-1 [%] on the full validation split {val}, on test {test}.")
    noise, n_rep = lb.seed_noise(configs)
    if n_rep:
        words = (f"Seed-to-seed noise: over {n_rep} configurations run with several seeds, the "
                 f"pooled standard deviation of full-split top-1 is {_pt(noise)}; differences "
                 f"between configurations smaller than that are not resolved.")
        body.append(_p(words))
        key.append(words)

    # --- notes and page --------------------------------------------------------------------
    notes = [f"{s.name}: {n}" for s in sweeps for n in s.notes]
    elapsed = time.time() - t0
    title = "S4L sweep report: " + ", ".join(s.name for s in sweeps)
    head = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{len(sweeps)} sweep(s), "
        f"{sum(len(s.df) for s in sweeps)} trials, {sum(len(s.completed) for s in sweeps)} "
        f"completed; generated {time.strftime('%Y-%m-%d %H:%M:%S')} in {elapsed:.1f} s by "
        f"s4l-report. Tables as CSV beside this page: "
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
              "<li>Trial order: the row order of results.parquet.</li>"
              "<li>Tie rule in Figure 3 and its table: among trials tied on the top subset "
              "score, the first in trial order is picked; the expected regret over a uniformly "
              "random tie-break is reported beside it. The validation-size study always uses "
              "the random tie-break, in expectation.</li>"
              "<li>Regret: best full-split top-1 minus the full-split top-1 of the picked trial, "
              "in points (≥ 0).</li></ul>")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "".join(head) + "".join(body) + method + "</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / "summary.txt").write_text("".join(f"{k}\n" for k in key), encoding="utf-8")
    say(f"wrote {index} in {elapsed:.1f} s")
    return index
