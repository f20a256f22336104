"""A grain input pipeline over any random-access source, with a checkpointable iterator.

Train: seeded global shuffle, reshuffled every epoch, repeated forever, sharded by host.
Eval: one pass in source order. `iter(pipeline)` is a `grain.DatasetIterator` whose
`get_state()` / `set_state()` (or grain's orbax handlers) resume the exact same sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain


def input_pipeline(
    source: Sequence[Any],
    *,
    seed: int,
    train: bool,
    map_fn: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
    batch_fn: Callable[[Sequence[Any]], Any] | None = list,
    shard_index: int = 0,
    shard_count: int = 1,
    num_threads: int = 2,
    prefetch: int = 64,
) -> grain.IterDataset:
    """Records of `source` -> `map_fn` -> batches of `batch_size` (None: single elements).

    `batch_fn=list` keeps non-array elements such as `Problem`s; None stacks pytrees of
    arrays (grain's default). Train batches drop the remainder so shapes stay static; eval
    keeps it so every record is seen. Shards are strided slices of the (shuffled) source, so
    hosts see disjoint records.
    """
    ds = grain.MapDataset.source(source)
    if train:
        ds = ds.shuffle(seed=seed)
    ds = ds[shard_index::shard_count]
    if train:
        ds = ds.repeat(None)
    if map_fn is not None:
        ds = ds.map(map_fn)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=train, batch_fn=batch_fn)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return ds.to_iter_dataset(options)
