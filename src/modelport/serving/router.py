"""Which variant of an endpoint answers a request: weighted, random or sticky.

A deployment's live variants split traffic by weight. Without a key the pick is
random; with one (a request header or an input field named by the deployment's
``routing``) the key is hashed to a point in [0, 1) and the variant owning that point
answers, so the same key gets the same variant for as long as the split is unchanged.
Variants own consecutive ranges in the order the deployment lists them, and a rollout
lists the candidate first: when its weight grows from 5 to 25, the keys it already had
stay with it.

Shadow variants get no range; the data plane sends them a copy of the request after
the live answer (see `modelport.serving.shadow`).

Example::

    router = Router.build(spec.variants, versions)
    variant, version = router.choose(None)        # random by weight
    variant, version = router.choose("user-42")   # always the same for user-42
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelport.registry import ModelVersion, Variant

_SCALE = float(1 << 64)


def key_point(key: str) -> float:
    """Where a sticky key falls in [0, 1): the first 8 bytes of its BLAKE2b hash."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Router:
    """An endpoint's live variants, their cumulative shares, and its shadows."""

    live: tuple[tuple[Variant, ModelVersion], ...]
    bounds: tuple[float, ...]  # cumulative share where each live variant's range ends
    shadows: tuple[tuple[Variant, ModelVersion], ...]

    @classmethod
    def build(cls, variants: Sequence[Variant], versions: Mapping[str, ModelVersion]) -> Router:
        live = tuple((v, versions[v.name]) for v in variants if not v.shadow and v.weight > 0)
        if not live:
            raise ValueError("a deployment needs at least one live variant with a weight above 0")
        total = sum(v.weight for v, _ in live)
        bounds, acc = [], 0.0
        for variant, _ in live:
            acc += variant.weight / total
            bounds.append(acc)
        bounds[-1] = 1.0  # no gap from rounding at the top
        shadows = tuple((v, versions[v.name]) for v in variants if v.shadow)
        return cls(live=live, bounds=tuple(bounds), shadows=shadows)

    def choose(self, key: str | None = None) -> tuple[Variant, ModelVersion]:
        """The variant for a request: by ``key`` if given, else at random by weight."""
        if len(self.live) == 1:
            return self.live[0]
        point = random.random() if key is None else key_point(key)
        return self.live[min(bisect.bisect_right(self.bounds, point), len(self.live) - 1)]
