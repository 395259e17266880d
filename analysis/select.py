"""Model selection with few labels: which validation images to label, and label-free criteria.

The question (S4L's Figure 3 asks it for random subsets): a sweep has trained T candidates; a
person can label only a few validation images; which ones, and how sure is the pick? Everything
here reads the sweep's stored per-example predictions (`predictions.npz`: each candidate's
predicted class and confidence on every validation image, and for models with a rotation head
how many rotations it names), never the models.

Strategies (`propose`) order the unlabeled images of a pool:

- `random`: uniformly at random.
- `stratified`: round-robin over the candidates' plurality-vote class, random within each, so
  the labels spread over the classes without knowing them (the report's k-per-class subsets
  stratify by the true class, which a person labeling images does not have beforehand).
- `disagreement` (ours, after Okanovic et al., AISTATS 2025, "Model Selector"): a posterior
  over which candidate is the best, under the single-parameter noise model "the best candidate
  names the true class with probability eps, and is wrong uniformly over the other C - 1
  classes otherwise", updated after every label (Bayes' rule). The next image is the one whose
  label is least predictable under that posterior: the maximum entropy of the posterior-weighted
  vote (with the noise folded in). Because the noise model's entropy given the best candidate
  is the same for every image, this is the image whose label carries the most information
  about which candidate is best (the mutual information). Images on which all candidates agree
  carry none and are never asked for first. eps is label-free: the candidates' mean stored
  confidence, clipped to [1/C + 0.05, 0.99].

Every strategy picks the same way once labels are in: the candidate with the most correct
labeled images (ties: uniformly at random); under the noise model that is also the posterior's
mode, so the strategies differ only in what they ask to label.

The statistical model behind "the probability that it is the best" (`posterior`) is the noise
model above with a uniform prior over the candidates. The pick's accuracy gets two intervals:
the exact binomial (Clopper-Pearson) interval on the labeled images, which is what the labels
prove (for `random` it is an interval for the whole split; for `disagreement` the labeled
images are the contested ones, so it understates the split), and a model-based one for the
whole split (labeled images exact, each unlabeled one correct with its posterior-predictive
probability of the pick's class; a sum of independent Bernoullis, mean +- 1.96 sd). Both model-
based numbers are only as good as the noise model, which ignores that candidates err on the
same hard images and takes eps from the candidates' confidence; `s4l-select --simulate`
measures how often the picks are in fact within 0.5 / 1 point on held-out images, which is the
number to trust.

Label-free criteria (`criterion_scores`): `confidence` (mean max-softmax probability),
`agreement` (agreement with the plurality vote of all candidates), `rotation` (mean
rotation-prediction accuracy of models with a rotation head; Deng, Gould and Zheng, ICML 2021)
and `atc` (Garg et al., ICLR 2022: per candidate, the confidence threshold at which the share
of labeled images above it equals its labeled accuracy, applied to every image; it needs a few
labels, the ones given so far).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s4l_models.errors import UserError
from s4l_models.predictions import conf_of

from .stats import mcnemar_p

STRATEGIES = ("random", "stratified", "disagreement")
CRITERIA = ("confidence", "agreement", "rotation", "atc")
EPS_MARGIN = 0.05  # eps >= 1/C + this: the best candidate is better than chance


@dataclass
class Candidates:
    """The candidates' stored predictions on the validation images (rows aligned to ids)."""

    trial_ids: np.ndarray  # [T] str
    pred: np.ndarray  # [T, N] predicted class
    conf: np.ndarray  # [T, N] float32 confidence of that class
    label: np.ndarray  # [N] true class (hidden from strategies; revealed by `--simulate`)
    index: np.ndarray  # [N] example ids of the validation split
    n_classes: int
    rot: np.ndarray | None = None  # [T, N] rotations named (0-4), rows of has_rot only valid
    has_rot: np.ndarray | None = None  # [T] bool

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.label[None, :]


def candidates_from(raw: dict, keep: list[str], n_classes: int | None = None) -> Candidates:
    """`Candidates` from a loaded `predictions.npz` (s4l_models.predictions) for the trial ids
    `keep`, in that order. A sweep written before predicted classes were stored cannot be used."""
    if "pred" not in raw or "conf" not in raw:
        raise UserError(
            "this sweep's predictions.npz holds only per-example correctness, not each "
            "candidate's predicted class and confidence (written by s4l-tune before 0.9); "
            "rerun the sweep with the current s4l-sweep to select with few labels")
    row = {t: i for i, t in enumerate(np.asarray(raw["trial_ids"]).astype(str))}
    missing = [t for t in keep if t not in row]
    if missing:
        raise UserError(f"{len(missing)} candidate trial(s) have no stored predictions "
                        f"(e.g. {missing[0]}); rerun the sweep's report or the sweep")
    sel = np.array([row[t] for t in keep], dtype=np.int64)
    label = np.asarray(raw["label"], dtype=np.int64)
    pred = np.asarray(raw["pred"], dtype=np.int64)[sel]
    c = max(int(n_classes or 0), int(label.max()) + 1, int(pred.max()) + 1)
    has_rot = raw.get("has_rot")
    return Candidates(
        trial_ids=np.asarray(keep, dtype=str), pred=pred,
        conf=conf_of(np.asarray(raw["conf"])[sel]), label=label,
        index=np.asarray(raw["index"]), n_classes=c,
        rot=np.asarray(raw["rot"])[sel] if has_rot is not None else None,
        has_rot=np.asarray(has_rot, bool)[sel] if has_rot is not None else None,
    )


# --- the noise model --------------------------------------------------------------------------
def default_eps(c: Candidates) -> float:
    """Label-free: the candidates' mean confidence, clipped to (chance + margin, 0.99)."""
    lo = 1.0 / c.n_classes + EPS_MARGIN
    return float(np.clip(c.conf.mean(), lo, 0.99))


def log_weights(pred: np.ndarray, labeled: np.ndarray, y: np.ndarray, eps: float,
                n_classes: int) -> np.ndarray:
    """Log posterior (unnormalised, uniform prior) of "candidate t is the best" [T]."""
    hits = (pred[:, labeled] == y[None, :]).sum(axis=1)
    misses = len(labeled) - hits
    return hits * np.log(eps) + misses * np.log((1 - eps) / (n_classes - 1))


def posterior(pred, labeled, y, eps, n_classes) -> np.ndarray:
    lw = log_weights(pred, labeled, y, eps, n_classes)
    w = np.exp(lw - lw.max())
    return w / w.sum()


def vote_entropy(onehot_votes: np.ndarray, eps: float, n_classes: int) -> np.ndarray:
    """Entropy of each image's label under the posterior-weighted vote [N, C] with noise."""
    p = eps * onehot_votes + (1 - eps) / (n_classes - 1) * (1 - onehot_votes)
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)


ENTROPY_DECIMALS = 12  # entropies (nats) equal to this many decimals are tied
ONEHOT_MAX = 50_000_000  # elements of the [N, C, T] one-hot votes kept in memory (200 MB)


def onehot_votes(pred: np.ndarray, n_classes: int) -> np.ndarray | None:
    """[N, C, T] float32: candidate t names class c on image n; None when too large (then
    `weighted_votes` loops over candidates)."""
    t, n = pred.shape
    if t * n * n_classes > ONEHOT_MAX:
        return None
    out = np.zeros((n, n_classes, t), dtype=np.float32)
    out[np.arange(n)[:, None], pred.T, np.arange(t)[None, :]] = 1.0
    return out


def weighted_votes(pred: np.ndarray, w: np.ndarray, cols: np.ndarray, n_classes: int,
                   onehot: np.ndarray | None = None) -> np.ndarray:
    """Posterior-weighted share of candidates naming each class, for images `cols` [n, C], in
    float64: once the posterior concentrates, the weights left to the other candidates are far
    below float32's resolution next to 1, and in float32 every image's vote (so its entropy)
    rounded to the same value, which made the maximum-entropy choice a random one."""
    if onehot is not None:
        return onehot[cols] @ w.astype(np.float64)
    p = pred[:, cols]  # [T, n]
    out = np.zeros((len(cols), n_classes))
    for t in np.nonzero(w > 1e-12)[0]:  # candidates with weight; no [T, n, C] array
        out[np.arange(len(cols)), p[t]] += w[t]
    return out


def plurality(pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Each image's plurality-vote class over the candidates [N] (ties: the lowest class)."""
    counts = np.zeros((pred.shape[1], n_classes), dtype=np.int64)
    for row in pred:
        counts[np.arange(pred.shape[1]), row] += 1
    return counts.argmax(axis=1)


# --- strategies ---------------------------------------------------------------------------------
def propose(strategy: str, c: Candidates, pool: np.ndarray, labeled: np.ndarray,
            y: np.ndarray, n: int, rng: np.random.Generator, eps: float | None = None,
            vote: np.ndarray | None = None, onehot: np.ndarray | None = None) -> np.ndarray:
    """The next `n` images (positions into the validation split) from `pool` minus `labeled`,
    given the labels `y` of `labeled` so far. `vote`, `onehot`: the plurality classes and
    one-hot votes (`plurality`, `onehot_votes`), cached by callers that propose many times."""
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: unknown; choose one of {', '.join(STRATEGIES)}")
    rest = np.setdiff1d(pool, labeled, assume_unique=False)
    n = min(n, len(rest))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if strategy == "random":
        return rng.permutation(rest)[:n]
    if strategy == "stratified":
        vote = plurality(c.pred, c.n_classes) if vote is None else vote
        return _round_robin(rest, vote, labeled, n, rng)
    eps = default_eps(c) if eps is None else eps
    w = posterior(c.pred, labeled, y, eps, c.n_classes)
    h = vote_entropy(weighted_votes(c.pred, w, rest, c.n_classes, onehot), eps, c.n_classes)
    # greedy top-n with random tie-breaks (a batch; one at a time when n is 1); entropies equal
    # to 12 decimals tie, so that the pick does not depend on a machine's rounding
    order = np.lexsort((rng.random(len(rest)), -np.round(h, ENTROPY_DECIMALS)))
    return rest[order[:n]]


def _round_robin(rest, vote, labeled, n, rng) -> np.ndarray:
    """n images spread over predicted classes: the least-labeled class first, random within."""
    have = np.bincount(vote[labeled], minlength=vote.max() + 1) if len(labeled) else \
        np.zeros(vote.max() + 1, dtype=np.int64)
    by_class = {k: list(rng.permutation(rest[vote[rest] == k])) for k in np.unique(vote[rest])}
    out = []
    while len(out) < n:
        k = min(by_class, key=lambda q: (have[q], rng.random()))
        out.append(by_class[k].pop())
        have[k] += 1
        if not by_class[k]:
            del by_class[k]
    return np.asarray(out, dtype=np.int64)


# --- the pick and what it is worth ---------------------------------------------------------------
@dataclass
class Pick:
    trial: int  # row of the candidates
    trial_id: str
    labeled: int
    hits: int  # correct among the labeled images
    p_best: float  # posterior probability that it is the best (noise model; overconfident)
    labeled_low: float  # 95% Clopper-Pearson interval of its accuracy on the labeled images
    labeled_high: float
    tied: int  # candidates tied with it on the labeled images
    posterior: np.ndarray  # [T] P(candidate is the best) under the noise model
    all_hits: np.ndarray  # [T] correct labeled images of every candidate
    eps: float  # the noise model's accuracy of the best candidate
    runner_up: int | None  # row of the next candidate by labeled hits (None with one candidate);
    # of several with those hits, the one the labels separate least from the pick (largest
    # McNemar p), so that a tie cannot hide a closer competitor behind table order
    runner_up_tied: int  # candidates with the runner-up's hits, the runner-up included
    pick_only: int  # labeled images the pick gets right and the runner-up does not
    runner_only: int  # ... and the other way round
    mcnemar_p: float  # exact McNemar p of the two on the labeled images


def pick(c: Candidates, labeled: np.ndarray, y: np.ndarray,
         rng: np.random.Generator, eps: float | None = None) -> Pick:
    """The candidate with the most correct labeled images (random among ties), with what the
    labels prove about it: the exact (Clopper-Pearson) interval of its accuracy on the labeled
    images and an exact McNemar test against the runner-up on them (of the candidates next by
    labeled hits, the one least separated from the pick). Also the noise model's
    probability that it is the best, which is overconfident (the model treats the candidates'
    errors as independent, while trials of one sweep err on the same hard images); no estimate
    of its accuracy on the whole split is made from labels chosen where the candidates
    disagree (an earlier model-based one missed the truth by 4 points on digits)."""
    from scipy.stats import binomtest

    eps = default_eps(c) if eps is None else eps
    right = c.pred[:, labeled] == y[None, :]
    hits = right.sum(axis=1)
    top = np.nonzero(hits == hits.max())[0]
    t = int(rng.choice(top))
    w = posterior(c.pred, labeled, y, eps, c.n_classes)
    ci = binomtest(int(hits[t]), max(1, len(labeled))).proportion_ci(method="exact")
    others = [int(j) for j in np.argsort(-hits, kind="stable") if j != t]
    r, a_only, b_only, p_r, n_r = None, 0, 0, 1.0, 0
    if others:
        nxt = [j for j in others if hits[j] == hits[others[0]]]
        # (McNemar p, discordant pairs fewer first, table order): the least separated
        sep = [(mcnemar_p(a, b), -(a + b), -i, j, a, b) for i, j in enumerate(nxt)
               for a, b in [(int((right[t] & ~right[j]).sum()), int((right[j] & ~right[t]).sum()))]]
        p_r, _, _, r, a_only, b_only = max(sep)
        n_r = len(nxt)
    return Pick(t, str(c.trial_ids[t]), len(labeled), int(hits[t]), float(w[t]),
                float(ci.low), float(ci.high), len(top), w, hits, float(eps), r, n_r, a_only,
                b_only, p_r)


# --- label-free criteria -------------------------------------------------------------------------
def criterion_scores(criterion: str, c: Candidates, cols: np.ndarray,
                     labeled: np.ndarray | None = None, y: np.ndarray | None = None
                     ) -> np.ndarray:
    """Each candidate's score under a criterion on images `cols` (higher: predicted better);
    NaN for candidates it cannot score (no rotation head)."""
    if criterion == "confidence":
        return c.conf[:, cols].mean(axis=1).astype(np.float64)
    if criterion == "agreement":
        vote = plurality(c.pred[:, cols], c.n_classes)
        return (c.pred[:, cols] == vote[None, :]).mean(axis=1)
    if criterion == "rotation":
        if c.rot is None or not c.has_rot.any():
            raise UserError("--criterion rotation needs candidates with a rotation head "
                            "(S4L-Rotation or MOAM trials); this sweep has none")
        out = c.rot[:, cols].mean(axis=1) / 4.0
        return np.where(c.has_rot, out, np.nan)
    if criterion == "atc":
        if labeled is None or len(labeled) == 0:
            raise UserError("--criterion atc fits its thresholds on labeled images: give "
                            "--labels FILE (a few labels suffice), or use another criterion")
        return atc_scores(c, cols, labeled, y)
    raise UserError(f"--criterion {criterion}: unknown; choose one of {', '.join(CRITERIA)}")


def atc_scores(c: Candidates, cols, labeled, y) -> np.ndarray:
    """ATC: per candidate, the threshold t with share(conf > t on labeled) = labeled accuracy;
    the predicted accuracy is the share of `cols` above t."""
    out = np.empty(len(c.trial_ids))
    for i in range(len(c.trial_ids)):
        acc = float((c.pred[i, labeled] == y).mean())
        conf_l = np.sort(c.conf[i, labeled])
        # the (1 - acc) quantile of the labeled confidences: that share lies at or below it
        t = np.quantile(conf_l, 1 - acc) if 0 < acc < 1 else (-np.inf if acc >= 1 else np.inf)
        out[i] = float((c.conf[i, cols] > t).mean()) if np.isfinite(t) else float(acc >= 1)
    return out


__all__ = ["STRATEGIES", "CRITERIA", "Candidates", "candidates_from", "propose", "pick", "Pick",
           "posterior", "criterion_scores", "default_eps", "plurality"]
