"""Kafka's default partition of a key, as the Java client and aiokafka choose it:
murmur2 of the key bytes, made positive, modulo the partition count.

Compiled with the scoring core (scorer/native.py, typed by partition.pxd):
aiokafka's murmur2 is pure Python, about 3 us a key, and the collector hashes
a key for nearly every record it produces. The pure-Python build runs this
same source; tests/unit/test_key_partitions.py compares both with aiokafka's
`DefaultPartitioner`.
"""

from __future__ import annotations


def default_partition(key: bytes, count: int) -> int:
    data = key
    length = len(key)  # not len(data): compiled, `data` is a pointer
    # The constants in typed locals: compiled, a literal above 2**31 is a Python int,
    # and every operation with one would be too.
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    seed = 0x9747B28C
    h = (seed ^ length) & mask
    end = length - length % 4
    i = 0
    while i < end:
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
        i += 4
    rest = length - end
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return int((h & 0x7FFFFFFF) % count)
