# The compiled core's view of scorer/stream/account_codec.py (see scorer/native.py):
# account records written at C level for every changed account at every commit.
cimport cython

from scorer.scoring.state cimport AccountState, IcpState
from scorer.stream.id_window cimport ChunkedIds


@cython.locals(encoded=object)
cdef bytes _short_text(object value)

@cython.locals(icps=dict, icp=IcpState, chunks=dict, parts=list, head=bytes)
cpdef bytes encode_record(AccountState state, ChunkedIds ids)

cpdef void store_account(object table, bytes account, AccountState state, ChunkedIds ids)
