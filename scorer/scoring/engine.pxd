# The compiled core's view of scorer/scoring/engine.py (see scorer/native.py):
# the engine's state and the locals of its inner loop as C types.
cimport cython

from scorer.events cimport Event
from scorer.icp.compiled cimport CompanyFit, CompiledICP
from scorer.scoring.decision cimport should_alert
from scorer.scoring.state cimport AccountState, IcpState, SeenIds, lead_key


cdef class Score:
    cdef public CompiledICP icp
    cdef public str account
    cdef public Event event
    cdef public object company
    cdef public double fit
    cdef public double intent
    cdef public double total
    cdef public double quality
    cdef public object tier
    cdef public bint hot
    cdef public bint disqualified
    cdef public bint excluded
    cdef public bint alert
    cdef public double points
    cdef public object persona


cdef class Engine:
    cdef public double dedup_window
    cdef public double account_ttl
    cdef public dict _icps
    cdef public tuple _active
    cdef public dict _points
    cdef public Py_ssize_t _memo_size

    cpdef list company_fits(self, object company)

    @cython.locals(
        window=cython.double, at=cython.double, raw=cython.double, points=cython.double,
        intent=cython.double, weight=cython.double, fit=cython.double, total=cython.double,
        disqualified=cython.bint, hot=cython.bint, alert=cython.bint, is_lead=cython.bint,
        icp=CompiledICP, company_fit=CompanyFit, icp_state=IcpState, icp_states=dict,
        link=bytes, i=cython.Py_ssize_t, count=cython.Py_ssize_t, active=tuple, fits=list,
        signal_points=tuple, by_path=dict, entry=tuple, account_at=cython.double, known=cython.bint,
        clock=cython.double,
        stamp_at=cython.double, timed_window=cython.double, timed_weight=cython.double,
        must_have=cython.bint, persona_points=cython.double,
    )
    cpdef tuple apply(
        self, AccountState state, Event event, object company,
        object company_token=*, bint every=*,
    )
