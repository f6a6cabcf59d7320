"""Tiny experiment configurations shared by several test files."""

from __future__ import annotations

import dataclasses

from sdn.experiments.large_batch import LargeBatchConfig


def tiny_large_batch(**changes) -> LargeBatchConfig:
    """A §6.4 configuration of a few seconds; `changes` override its fields."""
    sizes = dict(
        hidden=(16,),
        n_train=200,
        n_test=100,
        steps=20,
        seeds=2,
        eval_every=10,
        power_iters=3,
        large_batch=64,
    )
    return dataclasses.replace(LargeBatchConfig.quick(), **{**sizes, **changes})
