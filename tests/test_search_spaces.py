"""Tests for search_spaces: the paper's grid sizes, validation, sampling, serialisation, tables."""

from __future__ import annotations

import json
import pickle
import statistics

import pytest

from s4l_models.config import TrainConfig
from s4l_models.errors import UserError
from s4l_models.methods import PAPER_METHODS
from search_spaces import (
    Axis,
    SearchSpace,
    estimate_trial_epochs,
    format_axes_table,
    get_space,
    list_spaces,
    validate_space,
)

SPACES = list_spaces()
NAMES = [s.name for s in SPACES]


def _cost(point: dict) -> float:
    # Rough compute of a baseline_1pct trial: epochs x width^2 (batch size only changes speed).
    return point["epochs"] * point["width"] ** 2


def _key(point: dict) -> tuple:
    return tuple(sorted(point.items()))


# --- sizes and names ------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("baseline_10pct", 2160), ("baseline_1pct", 8640)])
def test_baseline_sizes_match_the_paper(name, size):
    space = get_space(name)
    assert space.size == size
    points = list(space.points())
    assert len(points) == size
    assert len({_key(p) for p in points}) == size


def test_every_paper_method_has_its_spaces():
    expected = {"baseline_10pct", "baseline_1pct", "baseline_1pct_lr001", "moam_10pct"}
    for method in PAPER_METHODS:
        if method not in ("supervised", "moam"):
            expected |= {f"{method}_10pct", f"{method}_1pct"}
    assert set(NAMES) == expected
    assert len(NAMES) == len(set(NAMES))
    assert NAMES[:2] == ["baseline_10pct", "baseline_1pct"]
    assert get_space("moam_10pct").size == 1
    assert list(get_space("moam_10pct").points()) == [{}]


def test_the_lr_variant_adds_the_papers_best_1pct_lr_to_the_stated_grid():
    stated, variant = get_space("baseline_1pct"), get_space("baseline_1pct_lr001")
    lrs = {a.key: a.values for a in stated.axes}["lr"]
    assert 0.01 not in lrs  # the paper's best 1% lr (S4L §4.1) is outside its stated grid
    assert {a.key: a.values for a in variant.axes}["lr"] == (*lrs, 0.01)
    assert variant.size == stated.size // 3 * 4 and variant.fixed == stated.fixed
    assert "0.01" in variant.description


def test_method_spaces_follow_the_paper_grids():
    assert get_space("vat_10pct").size == 3 * 3 * 2 * 4
    assert get_space("vat_entmin_1pct").size == 3 * 3 * 2 * 5
    assert get_space("s4l_rotation_10pct").size == 3 * 3 * 2
    lr = {a.key: a.values for a in get_space("s4l_exemplar_1pct").axes}["lr"]
    assert lr == (0.03, 0.01, 0.003)
    assert get_space("s4l_rotation_1pct").fixed["epochs"] == 1000.0
    assert get_space("s4l_rotation_10pct").fixed["arch"] == "resnet50_v2"


def test_unknown_space_lists_the_names():
    with pytest.raises(UserError) as err:
        get_space("baseline_5pct")
    msg = str(err.value)
    assert "unknown space 'baseline_5pct'" in msg and "--list" in msg
    for name in NAMES:
        assert name in msg


# --- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("space", SPACES, ids=NAMES)
def test_every_space_validates(space):
    validate_space(space)
    fields = set(TrainConfig.field_names())
    assert set(space.fixed) <= fields and set(space.keys) <= fields
    assert "dataset" not in space.fixed and "data_dir" not in space.fixed
    assert space.description.strip() and "\n" not in space.description
    for axis in space.axes:
        assert axis.source.strip()
    assert set(space.fixed_sources) == set(space.fixed)
    assert all(s.strip() for s in space.fixed_sources.values())


def _tiny(**changes) -> SearchSpace:
    base = dict(
        name="tiny",
        description="a test space",
        fixed={"method": "supervised"},
        fixed_sources={"method": "test"},
        axes=(Axis("lr", (0.1, 0.3), "test"),),
    )
    return SearchSpace(**{**base, **changes})


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"axes": (Axis("learning_rate", (0.1,), "test"),)}, "not a TrainConfig setting"),
        ({"axes": (Axis("lr", ("fast",), "test"),)}, "type"),
        ({"axes": (Axis("batch_size", (256.5,), "test"),)}, "type"),
        ({"axes": (Axis("lr", (-0.1,), "test"),)}, "rejected"),
        ({"axes": (Axis("lr", (0.1,), ""),)}, "no source"),
        ({"axes": (Axis("lr", (0.1, 0.1), "test"),)}, "repeats"),
        (
            {
                "fixed": {"method": "supervised", "lr": 0.1},
                "fixed_sources": {"method": "t", "lr": "t"},
            },
            "also a fixed",
        ),
        ({"fixed": {"dataset": "digits"}, "fixed_sources": {"dataset": "t"}}, "command line"),
        ({"fixed_sources": {}}, "no source"),
        ({"fixed": {"method": "nope"}}, "rejected"),
    ],
)
def test_validate_space_names_the_space_and_problem(changes, needle):
    with pytest.raises(UserError) as err:
        validate_space(_tiny(**changes))
    assert "'tiny'" in str(err.value) and needle in str(err.value)


# --- sampling -------------------------------------------------------------------------------
def test_sample_points_covers_every_value_without_duplicates():
    space = get_space("baseline_1pct")
    points = space.sample_points(24, seed=3)
    assert len(points) == 24
    assert len({_key(p) for p in points}) == 24
    for axis in space.axes:
        assert {p[axis.key] for p in points} == set(axis.values), axis.key
    grid = space.size
    assert all(set(p) == set(space.keys) for p in points) and grid == 8640


def test_sample_points_is_seeded():
    space = get_space("baseline_1pct")
    assert space.sample_points(24, seed=1) == space.sample_points(24, seed=1)
    assert space.sample_points(24, seed=1) != space.sample_points(24, seed=2)


def test_sample_points_with_cost_prefers_cheap_points():
    space = get_space("baseline_1pct")
    plain, cheap = [], []
    for seed in range(5):
        plain += [_cost(p) for p in space.sample_points(24, seed)]
        with_cost = space.sample_points(24, seed, cost=_cost)
        for axis in space.axes:  # still a cover
            assert {p[axis.key] for p in with_cost} == set(axis.values)
        assert len({_key(p) for p in with_cost}) == 24
        cheap += [_cost(p) for p in with_cost]
    assert statistics.mean(cheap) < 0.5 * statistics.mean(plain)


def test_sample_points_rejects_impossible_requests():
    space = get_space("baseline_10pct")
    with pytest.raises(UserError, match="at least 6"):
        space.sample_points(5, seed=0)
    with pytest.raises(UserError, match="only 2 points"):
        get_space("pseudolabel_10pct").sample_points(3, seed=0)
    with pytest.raises(UserError, match="positive"):
        space.sample_points(24, seed=0, cost=lambda p: 0.0)


def test_sample_points_of_small_spaces():
    space = get_space("vat_10pct")
    assert sorted(map(_key, space.sample_points(space.size, 0))) == sorted(
        map(_key, space.points())
    )
    assert get_space("moam_10pct").sample_points(1, seed=0) == [{}]


def test_point_at_matches_points_order():
    space = get_space("baseline_10pct")
    points = list(space.points())
    for i in (0, 1, 7, 1234, space.size - 1):
        assert space.point_at(i) == points[i]


# --- configs and serialisation --------------------------------------------------------------
def test_config_merges_fixed_and_point():
    space = get_space("baseline_10pct")
    point = next(space.points())
    config = space.config(point)
    assert config == {**space.fixed, **point}
    assert config["method"] == "supervised" and config["labels"] == "10%"
    assert config["wd"] == 1e-2 and "dataset" not in config
    cfg = TrainConfig.from_dict(config)
    assert cfg.arch == point["arch"] and cfg.epochs == point["epochs"]
    assert space.fixed["method"] == "supervised"  # not mutated


@pytest.mark.parametrize("space", SPACES, ids=NAMES)
def test_to_dict_is_json_and_round_trips(space):
    data = json.loads(json.dumps(space.to_dict()))
    assert data["size"] == space.size and data["name"] == space.name
    assert [a["key"] for a in data["axes"]] == list(space.keys)
    assert all(a["source"] for a in data["axes"])
    again = SearchSpace.from_dict(data)
    assert again == space and again.size == space.size
    assert pickle.loads(pickle.dumps(space)) == space


def test_format_axes_table_mentions_every_axis():
    for space in SPACES:
        table = format_axes_table(space)
        for axis in space.axes:
            assert axis.key in table and axis.source in table
    assert "2160" in format_axes_table(get_space("baseline_10pct"))


def test_estimate_trial_epochs():
    space = get_space("baseline_10pct")
    assert estimate_trial_epochs(space, space.points()) == 2160 / 4 * (30 + 100 + 200 + 500)
    assert estimate_trial_epochs(get_space("moam_10pct"), [{}]) == 200.0
    assert estimate_trial_epochs(space, []) == 0.0


def test_the_scaled_protocol_never_shrinks_a_batch_below_two():
    # one epoch over digits' 130 labeled images cannot reach 200 steps at any batch; the
    # protocol used to map 256 to 1, and every trial died in batch norm
    import dataclasses

    from s4l_models.config import MIN_BATCH
    from search_spaces.protocol import DatasetFacts, adapt
    from search_spaces.space import Axis

    base = get_space("baseline_1pct")
    one_epoch = dataclasses.replace(
        base, axes=tuple(Axis("epochs", (1.0,), "test") if a.key == "epochs" else a
                         for a in base.axes))
    space, note = adapt(one_epoch, DatasetFacts.nominal("digits"))
    old, new, _ = note.changes["batch_size"]
    assert min(new) == MIN_BATCH and max(new) < max(old)
