# The compiled core's view of scorer/stream/id_window.py (see scorer/native.py):
# an account's ids as an extension type, applied on the engine's inner loop.
cimport cython

from scorer.scoring.state cimport SeenIds


cdef class ChunkedIds(SeenIds):
    cdef public dict ids
    cdef public bytearray recent
    cdef public Py_ssize_t recent_count
    cdef public double recent_newest
    cdef public dict chunks
    cdef public Py_ssize_t next_chunk
    cdef public object dead
    cdef public object legacy
    cdef public object rewritten
    cdef public double slack
    cdef public double sweep_at

    cpdef bint contains(self, str event_id, double at)

    cpdef void clear(self)

    @cython.locals(due=cython.double, data=bytes, recent=bytearray, ids=dict, count=Py_ssize_t)
    cpdef bint add(self, str event_id, double at, double horizon, object link=*)

    cpdef void remember(self, str event_id, double at)
