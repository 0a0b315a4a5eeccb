# The compiled core's view of scorer/scoring/state.py (see scorer/native.py).
cimport cython

cdef object _LEAD_HASH

cpdef bytes lead_key(str lead_id)

cdef class SeenIds:
    cpdef bint contains(self, str event_id, double at)

    cpdef void clear(self)

    cpdef bint add(self, str event_id, double at, double horizon, object link=*)

cdef class WindowedIds(SeenIds):
    cdef public dict ids
    cdef public Py_ssize_t limit

    @cython.locals(ids=dict, count=Py_ssize_t)
    cpdef bint add(self, str event_id, double at, double horizon, object link=*)

# Numbers and a string only: Cython leaves such a type out of the cyclic garbage
# collector, and a dict of them stays untracked too, so the collector never walks
# the ICP states of the accounts.
cdef class IcpState:
    cdef public double raw
    cdef public double _clock
    cdef public double _alert_at
    cdef public str alert_tier

cdef class AccountState:
    cdef public double _clock
    cdef public object last_event_id
    cdef public dict icps
    cdef public SeenIds seen
    cdef public object leads
    cdef public tuple fits
    cdef public Py_ssize_t company_seen
