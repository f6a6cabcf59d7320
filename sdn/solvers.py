"""`sdn.solvers`: the engine's solvers (`sdn.engine.solvers`), under their short name."""

from sdn.engine.solvers import (  # noqa: F401
    SGD,
    SOLVERS,
    EulerMaruyama,
    Heun,
    Milstein,
    Solver,
    StepFunction,
    euler_maruyama,
    get,
    heun,
    milstein,
    resolve,
    sgd,
)

__all__ = [
    "SGD",
    "SOLVERS",
    "EulerMaruyama",
    "Heun",
    "Milstein",
    "Solver",
    "StepFunction",
    "euler_maruyama",
    "get",
    "heun",
    "milstein",
    "resolve",
    "sgd",
]
