# The compiled core's view of scorer/events.py (see scorer/native.py). The
# decoder calls the time parser and the domain functions at C level.
from scorer.enrichment.domains cimport lead_account, normalise_domain
from scorer.timefmt cimport parse_event_time


cdef class Event:
    cdef public str event_id
    cdef public str type
    cdef public str occurred_at
    cdef public double at
    cdef public object account
    cdef public object path
    cdef public object lead_id
    cdef public object title


cpdef object url_path(object page_url)

cdef dict _paths
