"""gruq: mixed-precision, integer-only quantization search for GRUs.

The library knows nothing of any user interface: the Streamlit pages and the
command line call into it, never the other way round. For notebooks and
scripts, the calls of `gruq.api` are available here: `gruq.load_task`,
`gruq.score`, `gruq.run_search`, `gruq.front`, `gruq.export_model`,
`gruq.train_model` (imported on first use, so `import gruq` stays light).
"""

from gruq.errors import GruqError

__version__ = "0.1.0"
__all__ = ["GruqError", "export_model", "front", "genome", "load_task", "run_search", "score", "train_model"]

_API = {"export_model", "front", "genome", "load_task", "run_search", "score", "train_model"}


def __getattr__(name: str):
    if name in _API:
        from gruq import api

        return getattr(api, name)
    raise AttributeError(f"module 'gruq' has no attribute {name!r}")
