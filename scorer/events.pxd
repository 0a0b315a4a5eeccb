# The compiled core's view of scorer/events.py (see scorer/native.py).
cdef class Event:
    cdef public str event_id
    cdef public str type
    cdef public str occurred_at
    cdef public double at
    cdef public object account
    cdef public object path
    cdef public object lead_id
    cdef public object title
