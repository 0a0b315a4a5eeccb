# The compiled core's view of scorer/scoring/state.py (see scorer/native.py).
cdef class WindowedIds:
    cdef public object order
    cdef public set ids

cdef class IcpState:
    cdef public double raw
    cdef public object clock
    cdef public object alert_at
    cdef public object alert_tier

cdef class AccountState:
    cdef public object clock
    cdef public object last_event_id
    cdef public dict icps
    cdef public object seen
    cdef public object leads
