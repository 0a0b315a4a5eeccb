"""The ICP document: models, loading and validation, compiled criteria (pure)."""

from scorer.icp.compiled import CompanyFit, CompiledICP, compile_icp
from scorer.icp.document import ICPDocument
from scorer.icp.loader import load_icp, loads_icp, parse_icp

__all__ = [
    "CompanyFit",
    "CompiledICP",
    "ICPDocument",
    "compile_icp",
    "load_icp",
    "loads_icp",
    "parse_icp",
]
