"""The error every exporter and reader raises: what the format cannot express, or a malformed
file read back; it names the node (and the file).
"""

from __future__ import annotations

__all__ = ["ExportError"]


class ExportError(ValueError):
    """The model holds an operation the target format cannot express, or a NIR graph read
    back is malformed; names the node (and the file)."""
