# The compiled core's view of scorer/scoring/decision.py (see scorer/native.py):
# rule 10, called by the engine at C level.
from scorer.icp.compiled cimport CompiledICP


cpdef bint should_alert(
    CompiledICP icp, object tier, double clock, object last_alert_at, object last_alert_tier,
) except -1

cpdef double _rank(CompiledICP icp, object tier) except? -1.0
