"""`sdn.domains`: the engine's domains (`sdn.engine.domains`), under their short name."""

from sdn.engine.domains import Box, FromFunction, box, from_function, interval

__all__ = ["Box", "FromFunction", "box", "from_function", "interval"]
