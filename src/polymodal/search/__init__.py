"""Fusion architecture search by a genetic algorithm over `FusionSpec` genomes, with warm-started
candidates (a weight cache keyed by block key), resumable, on one of three backends (in-process, a
process pool, Ray). See docs/search.md.
"""

from polymodal.search.backends import BACKENDS
from polymodal.search.config import SearchConfig, load_search_config, validate_search_config
from polymodal.search.loop import run_search
from polymodal.search.space import MUTATIONS, crossover, make_space, mutate, pairings, repair, sample

__all__ = [
    "BACKENDS",
    "MUTATIONS",
    "SearchConfig",
    "crossover",
    "load_search_config",
    "make_space",
    "mutate",
    "pairings",
    "repair",
    "run_search",
    "sample",
    "validate_search_config",
]
