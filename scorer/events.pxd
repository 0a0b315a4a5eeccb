# The compiled core's view of scorer/events.py (see scorer/native.py). The
# decoder calls the time parser and the domain functions at C level, and reads
# the common event's bytes through a C pointer.
cimport cython

from scorer.enrichment.domains cimport lead_account, normalise_domain
from scorer.timefmt cimport common_time_at, parse_event_time


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

cpdef Event _typed_decode(object raw)

@cython.locals(event=Event)
cdef Event _from_fields(
    object raw, str event_id, str kind, str occurred_at, str company_domain, str page_url,
    str lead_id, str email, str title, double at,
)

# events.py's first line turns off bounds and wraparound checks for the module: its
# only indexing is of the event's bytes in these functions, each index checked
# against the length before it is read.
cdef bint _COMPILED
cdef double _UNPARSED
cdef int _QUOTE, _COLON, _COMMA, _OPEN, _CLOSE, _SPACE
cdef bytes _STOPS

@cython.locals(
    data="const unsigned char *", n=Py_ssize_t, i=Py_ssize_t, c=cython.int, seen=cython.int,
    key_start=Py_ssize_t, key_end=Py_ssize_t, value_start=Py_ssize_t, value_end=Py_ssize_t,
    field=cython.int, more=cython.bint, value=str, event_id=str, kind=str, occurred_at=str,
    company_domain=str, page_url=str, lead_id=str, email=str, title=str, at=cython.double,
)
cpdef Event _scan_common(bytes raw)

@cython.locals(stops="const unsigned char *")
cdef Py_ssize_t _string_end(const unsigned char *data, Py_ssize_t i, Py_ssize_t n) noexcept

cdef Py_ssize_t _KINDS_LIMIT
cdef list _kind_bytes, _kind_texts

@cython.locals(size=Py_ssize_t, k=Py_ssize_t, known=bytes, text=str)
cdef str _kind(bytes raw, const unsigned char *data, Py_ssize_t start, Py_ssize_t end)

@cython.locals(c=cython.int)
cdef Py_ssize_t _skip_space(const unsigned char *data, Py_ssize_t i, Py_ssize_t n) noexcept

@cython.locals(size=Py_ssize_t, first=cython.int)
cdef int _field_number(const unsigned char *data, Py_ssize_t start, Py_ssize_t end) noexcept

@cython.locals(text="const unsigned char *", j=Py_ssize_t)
cdef bint _same(const unsigned char *data, Py_ssize_t start, bytes name) noexcept

cdef object _decode_fields

cdef dict _paths
