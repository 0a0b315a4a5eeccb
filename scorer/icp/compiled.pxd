# The compiled core's view of scorer/icp/compiled.py (see scorer/native.py): the
# compiled ICP and its criteria as extension types, and the helpers a company's
# fit is computed with as C-level functions.
cimport cython


cdef class CompanyFit:
    cdef public double static_weight
    cdef public bint static_disqualified
    cdef public double quality
    cdef public tuple timed

cdef class Matcher:
    cdef readonly int kind
    cdef readonly frozenset allowed
    cdef readonly double low
    cdef readonly double high

    @cython.locals(kind=cython.int, found=cython.bint)
    cpdef bint matches(self, object value) except -1

cdef class CompiledCriterion:
    cdef readonly str field
    cdef readonly tuple path
    cdef readonly str operator
    cdef readonly object operand
    cdef readonly double weight
    cdef readonly bint must_have
    cdef readonly Matcher match
    cdef readonly double window

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

    @cython.locals(
        c=CompiledCriterion, static_weight=cython.double, quality=cython.double,
        disqualified=cython.bint, timed=list, sources=dict,
    )
    cpdef CompanyFit company_fit(self, object record)

    cpdef tuple persona(self, object title)

    @cython.locals(threshold=cython.double)
    cpdef object tier(self, double total)


cdef int ANY_OF, NONE_OF, ALL_OF, IN_RANGE

cpdef object _norm(object value)

cpdef object _number(object value)

cpdef list _items(object value)

cpdef list _members(object value)

cdef bint _is_mapping(object value) except -1

@cython.locals(flat=dict)
cpdef object lookup(object record, tuple path)

@cython.locals(entry=dict)
cpdef double _confidence(object origin) except? -1.0

cpdef object judge(CompiledCriterion c, object value, object at)
