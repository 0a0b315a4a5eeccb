# The compiled core's view of scorer/kafka/partition.py (see scorer/native.py):
# murmur2 on C integers over the key's bytes (64 bits hold h * m before the mask),
# read through a pointer: a memoryview's set-up cost more than the hash of a domain.
cimport cython


@cython.locals(
    data="const unsigned char*", length=Py_ssize_t, end=Py_ssize_t, i=Py_ssize_t,
    rest=Py_ssize_t, m=cython.ulonglong, mask=cython.ulonglong, seed=cython.ulonglong,
    h=cython.ulonglong, k=cython.ulonglong,
)
cpdef Py_ssize_t default_partition(bytes key, Py_ssize_t count)
