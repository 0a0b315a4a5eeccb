# The compiled core's view of scorer/stream/processor.py (see scorer/native.py):
# the processor as an extension type, so a record goes from its bytes to the
# engine, the store and the tables through C calls, and `take_event` asks
# `belongs` through one too.
cimport cython

from scorer.events cimport Event
from scorer.kafka.partition cimport default_partition
from scorer.scoring.engine cimport Engine
from scorer.scoring.intake cimport Placement, take_event
from scorer.stream.store cimport AccountStore
from scorer.stream.tables cimport Firmographics


cdef class Processor(Placement):
    cdef public object settings
    cdef public object erasures
    cdef public object in_force
    cdef public object topics
    cdef public Engine engine
    cdef public Firmographics firmographics
    cdef public object metrics
    cdef public Py_ssize_t partitions
    cdef public Py_ssize_t max_bytes
    cdef public bint emit_scores
    cdef public bint hash_each
    cdef public object partition_of
    cdef public dict _partition_of
    cdef public double now
    cdef public dict _counts
    cdef public object first_event_at
    cdef public str lead_topic
    cdef public str rekey_topic
    cdef public str record_topic
    cdef public object record_key
    cdef public Py_ssize_t record_partition
    cdef public bytes key
    cdef public Py_ssize_t partition
    cdef public double newest

    cpdef void count(self, str stream, str outcome)

    @cython.locals(partition=Py_ssize_t, found=object, placed=cython.bint)
    cpdef bint belongs(self, str domain)

    @cython.locals(
        event=Event, scores=list, at=cython.double, now=cython.double,
        produced_at=cython.double, key=bytes, outcome=str, topic=str, stream=str,
    )
    cpdef void handle(self, object task, AccountStore store, object record)
