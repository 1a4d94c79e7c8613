"""gruq: mixed-precision, integer-only quantization search for GRUs.

The library knows nothing of any user interface: the Streamlit pages and the
command line call into it, never the other way round.
"""

__version__ = "0.1.0"
