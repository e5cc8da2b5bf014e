"""The compiler behind tg.function: trace a Python function of tensors once, replay it as a plan.

function.py is tg.function itself (signatures, the cache of plans), trace.py records
the NumPy calls of one traced call, and plan.py compiles such a record into
straight-line NumPy code over preallocated buffers. The eager core knows nothing of
this package: a trace reaches it through tensor.tracing() and the TraceHook protocol.
"""

from service.engine.compile.function import Function, function
from service.engine.compile.trace import TraceError

__all__ = ["Function", "TraceError", "function"]
