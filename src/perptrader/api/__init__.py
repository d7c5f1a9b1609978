"""The HTTP API, its WebSocket event stream and the dashboard (``perptrader serve``).

``create_app(settings)`` builds the FastAPI application; see docs/api.md.
"""

from perptrader.api.app import create_app

__all__ = ["create_app"]
