# The compiled core's view of scorer/stream/store.py (see scorer/native.py): the
# task's store as an extension type, so the engine reaches an account in memory
# through a C call (no Python method frames per event).
cimport cython

from scorer.scoring.intake cimport AccountTable
from scorer.scoring.state cimport AccountState
from scorer.stream.account_codec cimport store_account


cdef class AccountStore(AccountTable):
    cdef public object backing
    cdef public double window
    cdef public double bucket_width
    cdef public Py_ssize_t cache_limit
    cdef public double flush_interval
    cdef public dict pending
    cdef public dict inflight
    cdef public dict unflushed
    cdef public object unflushed_offset
    cdef public dict flushing
    cdef public object flushing_offset
    cdef public Py_ssize_t flush_slice
    cdef public double flushed_at
    cdef public object cache
    cdef public set dirty
    cdef public bint complete
    cdef public set dropped
    cdef public double swept_before

    cpdef AccountState account(self, str domain)

    @cython.locals(entry=tuple)
    cpdef AccountState account_by_key(self, bytes key)
