# The compiled core's view of scorer/scoring/state.py (see scorer/native.py).
cdef class SeenIds:
    cpdef bint contains(self, str event_id, double at)

    cpdef void clear(self)

    cpdef void add(self, str event_id, double at, double horizon, object link=*)

cdef class WindowedIds(SeenIds):
    cdef public object order
    cdef public set ids

cdef class IcpState:
    cdef public double raw
    cdef public double _clock
    cdef public double _alert_at
    cdef public object alert_tier

cdef class AccountState:
    cdef public double _clock
    cdef public object last_event_id
    cdef public dict icps
    cdef public SeenIds seen
    cdef public object leads
