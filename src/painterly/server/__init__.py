"""The web studio served by ``painterly serve`` (needs the ``web`` extra: starlette, uvicorn).

``create_app()`` builds the ASGI app; ``StudioServer`` serves it. Importing this package
imports starlette, so nothing outside it and ``painterly.cli.serve`` does.
"""

from .app import StudioServer, create_app
from .form import Limits

__all__ = ["Limits", "StudioServer", "create_app"]
