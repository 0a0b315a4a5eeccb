# The compiled core's view of scorer/enrichment/domains.py (see scorer/native.py):
# C-level entry points for the event decoder (scorer/events.pxd cimports them).
cimport cython

cpdef str normalise_domain(str domain)

@cython.locals(length=Py_ssize_t, ch=Py_UCS4)
cdef bint _plain(str domain)

cpdef object lead_account(object company_domain, object email)

cdef dict _normalised, _normalised_old
cdef bint _COMPILED
