"""Serving over HTTP: `create_app` (an ASGI app to run with uvicorn or mount in a service), the models it serves
(`load_servable`, which asks the file's task for its servable) and the micro-batcher behind it. Needs the
`[serve]` extra."""

from .app import create_app
from .batching import MicroBatcher
from .servable import Servable, load_servable

__all__ = ["MicroBatcher", "Servable", "create_app", "load_servable"]
