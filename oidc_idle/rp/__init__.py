"""The relying-party plugin: a Flask extension plus a browser snippet.

Public names: :class:`OidcIdle`, :data:`PASSIVE_HEADER`.
"""

from .extension import PASSIVE_HEADER, OidcIdle

__all__ = ["PASSIVE_HEADER", "OidcIdle"]
