# The compiled core's view of scorer/events.py (see scorer/native.py). The
# decoder calls the time parser and the domain functions at C level.
from scorer.enrichment.domains cimport lead_account, normalise_domain
from scorer.timefmt cimport parse_event_time


# Strings (or None) and a number only: Cython then leaves the type out of the cyclic
# garbage collector, which an event, made and freed on every line, never needs.
cdef class Event:
    cdef public str event_id
    cdef public str type
    cdef public str occurred_at
    cdef public double at
    cdef public str account
    cdef public str path
    cdef public str lead_id
    cdef public str title


cpdef object url_path(object page_url)

cpdef Event decode_event(object raw, Py_ssize_t max_bytes=*)

cdef object _decode_fields

cdef dict _paths
