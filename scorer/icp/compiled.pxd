# The compiled core's view of scorer/icp/compiled.py (see scorer/native.py).
cdef class CompanyFit:
    cdef public double static_weight
    cdef public bint static_disqualified
    cdef public double quality
    cdef public tuple timed

cdef class CompiledICP:
    cdef readonly str id
    cdef readonly object version
    cdef readonly object document
    cdef readonly tuple criteria
    cdef readonly double total_weight
    cdef readonly object signals
    cdef readonly tuple personas
    cdef readonly double half_life
    cdef readonly double w_fit
    cdef readonly double w_intent
    cdef readonly tuple tiers
    cdef readonly object tier_rank
    cdef readonly double min_total
    cdef readonly double min_fit
    cdef readonly double cooldown
    cdef readonly frozenset excluded
    cdef readonly bint shadow
