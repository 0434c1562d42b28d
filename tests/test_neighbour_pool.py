"""Curation sees every user who shares an item: no co-count pre-cut before the rules score them.

Only a user with more than USER_POOL co-occurring users is bounded, by the strongest plus a seeded
sample of the rest, so low-overlap peers keep a chance to be curated and the cost stays flat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memory_store.features import STRONG_USERS, USER_POOL, bounded_pool, user_neighbour_features
from memory_store.graph import InteractionGraph


def test_a_low_overlap_peer_reaches_the_rules() -> None:
    # user 0 has items 0..9; users 1..100 share all ten; user 101 shares only item 0
    rows = [(0, i, float(i)) for i in range(10)]
    rows += [(u, i, float(i)) for u in range(1, 101) for i in range(10)]
    rows += [(101, 0, 1.0), (101, 10, 2.0)]
    graph = InteractionGraph.build(
        pd.DataFrame(rows, columns=["user", "item", "ts"]), 102, 11, [["a"]] * 11
    )
    features = user_neighbour_features(graph, 0)
    codes = features.codes.tolist()
    assert sorted(codes) == list(range(1, 102))  # everyone sharing an item, the weakest included
    assert features.features["co_count"][codes.index(101)] == 1.0
    assert codes[0] != 101 and codes[-1] == 101  # ordered by shared items, not cut by them


def test_past_the_pool_the_strongest_stay_and_the_rest_are_sampled() -> None:
    rng = np.random.default_rng(0)
    shared = np.zeros(10_000)
    peers = rng.choice(np.arange(1, 10_000), size=6_000, replace=False)
    shared[peers] = 1.0
    strong = peers[:300]
    shared[strong] = np.arange(300) + 2.0  # distinct co-counts above every weak peer
    pool = bounded_pool(shared, user=0)
    assert len(pool) == len(set(pool.tolist())) == USER_POOL
    assert set(strong[-STRONG_USERS:].tolist()) <= set(pool.tolist())  # the 256 strongest
    weak = [u for u in pool.tolist() if shared[u] == 1.0]
    assert len(weak) > USER_POOL // 2  # low-overlap peers are in the sample
    assert np.array_equal(np.sort(pool), np.sort(bounded_pool(shared, user=0)))  # seeded
    assert not np.array_equal(np.sort(pool), np.sort(bounded_pool(shared, user=1)))
    small = np.zeros(100)
    small[[3, 5, 7]] = 1.0
    assert bounded_pool(small, user=0).tolist() == [3, 5, 7]  # under the pool: all of them
