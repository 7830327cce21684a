"""The router: weighted random picks, sticky keys, shadows out of the split."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from scipy.stats import binom

from modelport.registry import ModelVersion, Variant
from modelport.serving.router import Router, key_point
from tests.unit.monitoring.test_logwriter import make_version


def version(name: str, number: int) -> ModelVersion:
    return make_version(name, number)


def router(*variants: Variant) -> Router:
    return Router.build(variants, {v.name: version(v.model, v.version) for v in variants})


def names(r: Router, keys: Any) -> list[str]:
    return [r.choose(k)[0].name for k in keys]


KEYS = [f"user-{i}" for i in range(5000)]


def test_weights_are_normalised_into_cumulative_bounds() -> None:
    r = router(Variant("m", 1, weight=3), Variant("m", 2, weight=1))
    assert r.bounds == pytest.approx((0.75, 1.0))
    assert r.bounds[-1] == 1.0
    same = router(Variant("m", 1, weight=75), Variant("m", 2, weight=25))
    assert same.bounds == pytest.approx(r.bounds)
    three = router(Variant("m", 1, weight=1), Variant("m", 2, weight=1), Variant("m", 3, 1))
    assert three.bounds == pytest.approx((1 / 3, 2 / 3, 1.0))


def test_random_picks_at_ten_percent_fall_in_the_binomial_interval() -> None:
    random.seed(12345)
    r = router(Variant("m", 1, weight=90), Variant("m", 2, weight=10))
    n = 10_000
    counts = Counter(names(r, [None] * n))
    low, high = binom.interval(0.99, n, 0.10)
    assert low <= counts["m-v2"] <= high, counts
    assert counts["m-v1"] + counts["m-v2"] == n


def test_the_same_key_always_gets_the_same_variant() -> None:
    r = router(Variant("m", 1, weight=50), Variant("m", 2, weight=50))
    first = names(r, KEYS)
    for _ in range(3):
        assert names(r, KEYS) == first
    rebuilt = router(Variant("m", 1, weight=50), Variant("m", 2, weight=50))
    assert names(rebuilt, KEYS) == first  # no process state: another server agrees
    share = first.count("m-v2") / len(KEYS)
    low, high = binom.interval(0.99, len(KEYS), 0.5)
    assert low / len(KEYS) <= share <= high / len(KEYS)


def test_key_points_are_in_the_unit_interval_and_deterministic() -> None:
    points = [key_point(k) for k in KEYS]
    assert all(0.0 <= p <= 1.0 for p in points)
    assert points == [key_point(k) for k in KEYS]
    assert len(set(points)) == len(points)


def test_a_growing_first_variant_keeps_every_key_it_had() -> None:
    """A rollout lists the candidate first: 5 -> 25 percent only adds keys to it."""
    before = router(Variant("m", 2, weight=5), Variant("m", 1, weight=95))
    after = router(Variant("m", 2, weight=25), Variant("m", 1, weight=75))
    had = {k for k, n in zip(KEYS, names(before, KEYS), strict=True) if n == "m-v2"}
    has = {k for k, n in zip(KEYS, names(after, KEYS), strict=True) if n == "m-v2"}
    assert had and had <= has
    assert len(has) > 3 * len(had)
    # and every key the old version keeps after the step, it had before
    kept = {k for k, n in zip(KEYS, names(after, KEYS), strict=True) if n == "m-v1"}
    assert kept <= set(KEYS) - had


def test_shadows_get_no_traffic() -> None:
    variants = (
        Variant("m", 1, weight=70),
        Variant("m", 3, weight=50, shadow=True),
        Variant("m", 2, weight=30),
    )
    r = router(*variants)
    assert [v.name for v, _ in r.live] == ["m-v1", "m-v2"]
    assert [v.name for v, _ in r.shadows] == ["m-v3"]
    assert r.bounds == pytest.approx((0.7, 1.0))
    random.seed(7)
    picked = set(names(r, [None] * 2000)) | set(names(r, KEYS))
    assert picked == {"m-v1", "m-v2"}


def test_a_zero_weight_variant_gets_no_traffic() -> None:
    r = router(Variant("m", 1, weight=100), Variant("m", 2, weight=0))
    assert [v.name for v, _ in r.live] == ["m-v1"]
    assert r.shadows == ()


def test_one_live_variant_short_circuits(monkeypatch: pytest.MonkeyPatch) -> None:
    r = router(Variant("m", 1), Variant("m", 2, shadow=True))

    def fail(*_: object) -> float:
        raise AssertionError("neither drawn nor hashed")

    monkeypatch.setattr(random, "random", fail)
    monkeypatch.setattr("modelport.serving.router.key_point", fail)
    assert r.choose(None) is r.live[0]
    assert r.choose("user-1") is r.live[0]


def test_no_live_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="live variant"):
        Router.build([Variant("m", 1, shadow=True)], {"m-v1": version("m", 1)})
