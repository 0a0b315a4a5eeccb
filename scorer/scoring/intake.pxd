# The compiled core's view of scorer/scoring/intake.py (see scorer/native.py).
cimport cython

from scorer.events cimport Event, decode_event
from scorer.scoring.engine cimport Engine
from scorer.scoring.state cimport AccountState


cdef class AccountTable:
    cpdef AccountState account(self, str domain)


cdef class CompanySource:
    cpdef tuple company(self, str domain)

    cpdef Py_ssize_t changes(self)

    cpdef bint unchanged(self, str domain, Py_ssize_t since, object record)


cdef class Placement:
    cpdef bint belongs(self, str domain)


cdef class AccountStates(AccountTable):
    cdef public dict states

    cpdef AccountState account(self, str domain)

    @cython.locals(state=AccountState, gone=list)
    cpdef Py_ssize_t expire(self, double before)


cdef class CompanyMap(CompanySource):
    cdef public dict records
    cdef public Py_ssize_t base

    cpdef tuple company(self, str domain)

    cpdef Py_ssize_t changes(self)

    cpdef bint unchanged(self, str domain, Py_ssize_t since, object record)


cpdef tuple take_event(
    Engine engine, object raw, AccountTable accounts, CompanySource companies, bint every=*,
    Py_ssize_t max_bytes=*, Placement placement=*, object erasures=*,
)

@cython.locals(state=AccountState, kept=tuple, seen=Py_ssize_t)
cpdef tuple apply_event(
    Engine engine, Event event, str domain, AccountTable accounts, CompanySource companies,
    bint every=*,
)
