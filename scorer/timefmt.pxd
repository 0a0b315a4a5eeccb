# The compiled core's view of scorer/timefmt.py (see scorer/native.py): the
# common event time read with C integers.
cimport cython

cdef bint _COMPILED
# C constants: as module globals, each comparison boxed the year (callgrind).
cdef int _FIRST_YEAR, _LAST_YEAR, _DAYS_BEFORE_1970
cdef double _NOT_COMMON


# timefmt.py's first line turns off bounds and wraparound checks for the module:
# its only indexing is of the event time's bytes here, where every index is checked
# against the length before it is read.
cdef int _DASH, _COLON, _DOT, _PLUS, _T, _Z, _ZERO, _NINE

@cython.locals(value=cython.int, digit=cython.int, i=cython.Py_ssize_t)
cdef int _digits(const unsigned char *data, Py_ssize_t start, Py_ssize_t count) noexcept

@cython.locals(data=bytes)
cpdef double common_event_time(str text)

@cython.locals(
    end=cython.Py_ssize_t, i=cython.Py_ssize_t, year=cython.int, month=cython.int,
    day=cython.int, hour=cython.int, minute=cython.int, second=cython.int,
    micro=cython.int, offset=cython.int, zone_hours=cython.int, zone_minutes=cython.int,
    leap=cython.bint, last=cython.int, y=cython.int, era=cython.int, year_of_era=cython.int,
    day_of_year=cython.int, day_of_era=cython.int, days=cython.longlong,
    seconds=cython.longlong, micros=cython.longlong,
)
cpdef double common_time_at(const unsigned char *data, Py_ssize_t start, Py_ssize_t n) noexcept

cpdef double parse_event_time(object text, str field=*) except? -1.0

cdef dict _record_times
