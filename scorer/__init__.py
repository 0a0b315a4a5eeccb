"""icp-scorer: real-time ICP scoring on Kafka, with reasons for every point."""

from scorer import native

# Before any compiled module is imported: the source when asked, and always
# rather than a partial build (see scorer/native.py).
if native.pure_requested() or native.partial_build():
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
