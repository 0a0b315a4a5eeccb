# The compiled core's view of scorer/stream/tables.py (see scorer/native.py): the
# firmographics table as an extension type, so the engine reaches an account's
# company record through a C call.
from scorer.scoring.intake cimport CompanySource


cdef class Firmographics(CompanySource):
    cdef public object metrics
    cdef public object table
    cdef public dict records
    cdef public Py_ssize_t hits
    cdef public Py_ssize_t misses

    cpdef tuple company(self, str domain)
