"""KeyPartitions gives the partition aiokafka's (and Kafka's) default partitioner gives."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from scorer.kafka.client import KeyPartitions


@given(keys=st.lists(st.binary(max_size=64), max_size=50), count=st.integers(1, 64))
def test_same_partition_as_the_default_partitioner(keys: list[bytes], count: int) -> None:
    partitions = KeyPartitions(count, limit=8)  # small: the memo clears and refills
    default = DefaultPartitioner()
    every = list(range(count))
    for key in keys + keys:
        assert partitions(key) == default(key, every, every)
    assert len(partitions.memo) <= 8


def test_a_topic_has_partitions() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        KeyPartitions(0)
