# The compiled core's view of scorer/stream/tables.py (see scorer/native.py): the
# firmographics table as an extension type, so the engine reaches an account's
# company record through a C call.
cimport cython

from scorer.scoring.intake cimport CompanySource


cdef class Firmographics(CompanySource):
    cdef public object metrics
    cdef public object table
    cdef public dict records
    cdef public Py_ssize_t hits
    cdef public Py_ssize_t misses
    cdef public Py_ssize_t applied
    cdef public dict changed
    cdef public Py_ssize_t logged_from

    cpdef tuple company(self, str domain)

    cpdef Py_ssize_t changes(self)

    @cython.locals(last=object)
    cpdef bint unchanged(self, str domain, Py_ssize_t since, object record)
