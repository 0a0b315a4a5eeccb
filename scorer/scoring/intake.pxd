# The compiled core's view of scorer/scoring/intake.py (see scorer/native.py).
from scorer.events cimport Event
from scorer.scoring.engine cimport Engine
from scorer.scoring.state cimport AccountState


cdef class AccountStates:
    cdef public dict states

    cpdef AccountState account(self, str domain)

    cpdef Py_ssize_t expire(self, double before)


cdef class CompanyMap:
    cdef public object records

    cpdef tuple company(self, str domain)


cpdef tuple take_event(
    Engine engine, object raw, object accounts, object companies, bint every=*,
    Py_ssize_t max_bytes=*, object placement=*, object erasures=*,
)

cpdef tuple apply_event(
    Engine engine, Event event, str domain, object accounts, object companies, bint every=*,
)
