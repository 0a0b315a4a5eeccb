"""icp-scorer: real-time ICP scoring on Kafka, with reasons for every point."""

from scorer import native

if native.pure_requested():  # before any compiled module is imported
    native.use_source_only()

from scorer.events import Event, decode_event
from scorer.icp import CompiledICP, ICPDocument, compile_icp, load_icp
from scorer.scoring import AccountState, Engine, Score, build_document

__version__ = "0.1.0"

__all__ = [
    "AccountState",
    "CompiledICP",
    "Engine",
    "Event",
    "ICPDocument",
    "Score",
    "__version__",
    "build_document",
    "compile_icp",
    "decode_event",
    "load_icp",
]
