"""`sdn.sde`: `SDE` and `sgd_sde` (defined in `sdn.engine.sde`)."""

from sdn.engine.sde import SDE, sgd_sde

__all__ = ["SDE", "sgd_sde"]
