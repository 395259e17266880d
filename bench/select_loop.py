"""The README's s4l-select labeling loop, replayed: the sweep's stored labels stand in for a person.

    python bench/select_loop.py [SWEEP_DIR] [OUT_DIR]   # default docs/figure3_digits -> docs/select_loop_digits

Runs `s4l-select SWEEP --budget 30 --batch 10` (strategy disagreement), fills each labeling
sheet's empty `label` cells with the true classes from the sweep's predictions.npz, reruns with
`--labels` as the tool asks, until it names a pick. OUT_DIR keeps every sheet, selection.json
and the printed lines (output.txt), the data behind the README's worked example.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from s4l_models.predictions import load_sweep_predictions  # noqa: E402


def main() -> int:
    sweep = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/figure3_digits")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/select_loop_digits")
    if out.exists():
        ours = ("labels_round", "selection", "output.txt")
        foreign = [p.name for p in out.iterdir() if not p.name.startswith(ours)]
        if foreign:  # never delete a folder this script did not write
            print(f"error: {out} holds {foreign[0]}, which this script did not write; give another "
                  "OUT_DIR", file=sys.stderr)
            return 2
    shutil.rmtree(out, ignore_errors=True)
    raw = load_sweep_predictions(sweep / "predictions.npz")
    truth = dict(zip(raw["index"].tolist(), raw["label"].tolist()))
    cmd = ["s4l-select", str(sweep), "--budget", "30", "--batch", "10", "--out", str(out)]
    printed = [" ".join(cmd)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    printed.append(res)
    for _ in range(10):
        if "selected trial" in res:
            break
        sheet = res.split("--labels ")[-1].split()[0]
        df = pd.read_csv(sheet, dtype={"label": "string"})
        blank = df["label"].isna()
        df.loc[blank, "label"] = [str(truth[int(i)]) for i in df.loc[blank, "id"]]
        df.to_csv(sheet, index=False)  # the person's answers
        printed.append(" ".join(cmd + ["--labels", sheet]))
        res = subprocess.run(cmd + ["--labels", sheet], capture_output=True, text=True,
                             check=True).stdout
        printed.append(res)
    (out / "output.txt").write_text("\n".join(printed))
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
