# The compiled core's view of scorer/offline.py (see scorer/native.py).
cimport cython

from scorer.events cimport Event
from scorer.scoring.engine cimport Engine
from scorer.scoring.intake cimport AccountStates, CompanyMap, take_event


@cython.locals(
    event=Event, number=cython.Py_ssize_t, every=cython.bint, idle=cython.double,
    newest=cython.double, swept=cython.double, step=cython.double, scored=cython.Py_ssize_t,
    table=CompanyMap,
)
cpdef object score_lines(
    object lines, Engine engine, object companies, object out, str emit=*, bint strict=*,
    object errors=*, object progress=*, object clock=*, object totals=*,
    AccountStates accounts=*, object erasures=*,
)
