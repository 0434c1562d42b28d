"""Catalogue index build time and offline reading speed, per dataset, against loading the data.

For each dataset, in one process: ``load_s`` loads the dataset (the reference measured in the same
run), ``build_s`` builds its catalogue index (median of the repeats, cache bypassed) and
``build_over_load`` is their ratio; ``cached_ms`` is a cache hit (the catalogue fingerprint);
``exact_ms`` / ``fuzzy_ms`` resolve one title as written / misspelt (one letter dropped from its
longest word); ``read_ms`` reads one message mentioning two catalogue titles with a count and a
constraint. Resolution and reading figures are means over a seeded sample, memo cold.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from dataio.datasets import load_dataset
from roles.catalogue_index import CatalogueIndex, catalogue_index
from roles.offline_understand import read_offline

NAME = "catalogue"
DATASETS = ["ml-100k", "amazon-scientific", "amazon-games"]
METHOD = __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else ""
TEMPLATES = (
    "I loved {a} and {b}, recommend three more",
    "I didn't like {a} but {b} was great. Something else please",
    "not {a}, give me 2 like {b}",
)


def _misspelt(title: str) -> str:
    words = title.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    if len(word) >= 6:
        words[longest] = word[:2] + word[3:]
    return " ".join(words)


def _mean_ms(fn: Any, inputs: list[Any]) -> dict[str, float]:
    times = []
    for value in inputs:
        started = time.perf_counter()
        fn(value)
        times.append((time.perf_counter() - started) * 1000.0)
    return summary(times)


def _measure(name: str, opts: BenchOptions, repeats: int, sample: int) -> dict[str, Any]:
    started = time.perf_counter()
    dataset = load_dataset(name, opts.data_dir)
    load_s = time.perf_counter() - started
    builds = []
    for _ in range(repeats):
        started = time.perf_counter()
        CatalogueIndex(dataset)
        builds.append(time.perf_counter() - started)
    index = catalogue_index(dataset)
    started = time.perf_counter()
    assert catalogue_index(dataset) is index
    cached_ms = (time.perf_counter() - started) * 1000.0
    rng = random.Random(f"{NAME}:{name}")
    titles = [dataset.item_titles[c] for c in rng.sample(range(dataset.n_items), sample)]
    messages = [
        TEMPLATES[i % len(TEMPLATES)].format(a=titles[i], b=titles[-1 - i]) for i in range(sample)
    ]
    fresh = CatalogueIndex(dataset)  # cold memo for the timed look-ups
    exact = _mean_ms(lambda t: fresh.match_title(t), titles)
    fuzzy = _mean_ms(lambda t: fresh.match_title(t), [_misspelt(t) for t in titles])
    reads = _mean_ms(lambda m: read_offline(m, fresh), messages)
    return {
        "dataset": name,
        "items": dataset.n_items,
        "terms": len(index.terms),
        "has_eras": index.has_eras,
        "load_s": round(load_s, 3),
        "build_s": round(statistics.median(builds), 3),
        "build_over_load": round(statistics.median(builds) / max(load_s, 1e-9), 2),
        "cached_ms": round(cached_ms, 2),
        "exact_ms": exact["mean"],
        "fuzzy_ms": fuzzy["mean"],
        "read_ms": reads["mean"],
        "read_p99_ms": reads["p99"],
    }


def run(opts: BenchOptions) -> BenchResult:
    """Run the catalogue benchmark and write ``catalogue.json``."""
    repeats, sample = opts.size(3, 2, 1), opts.size(200, 50, 10)
    datasets = opts.datasets if opts.datasets is not None else DATASETS
    result = new_result(NAME, opts, METHOD, datasets=datasets, repeats=repeats, sample=sample)
    for name in datasets:
        result.rows.append(_measure(name, opts, repeats, sample))
    games = next((r for r in result.rows if r["dataset"] == "amazon-games"), None)
    if games is not None:
        ok = games["build_s"] <= 5.0
        result.targets.append(target("amazon-games index build (s)", "<= 5", games["build_s"], ok))
    finish(result, opts)
    return result
