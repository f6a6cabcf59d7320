"""`EngineConfig`: every setting of the engine that is chosen for speed, in one object.

The drivers (`simulate`, `simulate_trajectory`, `first_exit_time`,
`first_exit_time_per_path`) and the built-in sweeps take it as `config=`; it is a static
argument of their compiled programs (frozen, hence hashable: two equal configs share a
compilation). `EngineConfig.for_backend()` gives the defaults of the machine at hand;
`save` and `load` keep a tuned one (`benchmarks/ensemble.py --parts tune` writes one).

Each field says whether it changes any number. Most change none: a path's numbers
depend only on its key, whatever the chunk, the lanes or the loop's unrolling. Three
(`block_steps`, `two_point_words`, `two_point_exit_words`) fix how a path's key stream
is cut into blocks, so they change which random numbers each step gets (not their law):
results with other values are other, equally valid, samples.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

_CPU = "cpu"


@dataclass(frozen=True)
class EngineConfig:
    """The engine's speed settings (defaults: the CPU's; see `for_backend`).

    Attributes:
      block_steps: Gaussian steps per block of increments drawn at once for one path.
        **Changes numbers**: a path's normals are drawn per block from
        `fold_in(path_key, block)`, so another block size gives other draws.
      two_point_words: random 32-bit words per coordinate per block of `simulate` in the
        two-point mode (one step per bit, `32 · two_point_words` steps per block).
        **Changes numbers**, as `block_steps`.
      two_point_exit_words: the same for first exits (shorter blocks, since a block that
        comes near a wall runs twice). **Changes numbers**, as `block_steps`.
      chunk_size: paths per compiled chunk when a driver's `chunk_size` is not given.
        Changes no number.
      unroll: unroll each block's steps into one program (every loop iteration costs a
        kernel launch on an accelerator; on the CPU a loop is as fast). Changes no
        number.
      bit_unroll: two-point steps per loop iteration on the CPU (when not `unroll`).
        Changes no number.
      word_unroll: two-point words unrolled per iteration when `unroll` (32 steps each).
        Changes no number.
      steps_per_round: first exits: steps between two looks of the host at the lanes
        (to refill or compact them). Changes no number.
      tail_rounds: rounds of the smallest batch of lanes (and rounds while lanes refill)
        run up to this many times longer. Changes no number.
      bucket_base: batches of lanes have sizes `n_devices · smallest_bucket ·
        bucket_base^k` (a short ladder bounds the compilations). Changes no number.
      smallest_bucket: the smallest batch of lanes per device: below it, running a few
        idle lanes is cheaper than compiling. Changes no number.
      quiet_blocks: first exits with two-point steps: blocks far from every wall run
        without the per-step exit test, and the others are replayed exactly. Changes no
        number.
      replay_fraction: those replays run in batches of `1/replay_fraction` of the lanes.
        Changes no number.
      refill_above: chunks of more paths per device than this run in refilled lanes...
        Changes no number.
      lane_fraction: ... about `1/lane_fraction` of the chunk's paths. Changes no number.

    >>> cfg = EngineConfig(chunk_size=1 << 12)
    >>> cfg.replace(unroll=True).unroll
    True
    """

    block_steps: int = 50
    two_point_words: int = 8
    two_point_exit_words: int = 2
    chunk_size: int = 1 << 16
    unroll: bool = False
    bit_unroll: int = 4
    word_unroll: int = 2
    steps_per_round: int = 250
    tail_rounds: int = 16
    bucket_base: int = 4
    smallest_bucket: int = 256
    quiet_blocks: bool = True
    replay_fraction: int = 8
    refill_above: int = 4096
    lane_fraction: int = 4

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "bool" or isinstance(field.default, bool):
                if not isinstance(value, bool):
                    raise TypeError(
                        f"EngineConfig.{field.name} must be True or False, got {value!r}"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"EngineConfig.{field.name} must be an int, got {type(value).__name__} "
                    f"{value!r}"
                )
            least = 2 if field.name == "bucket_base" else 1
            if value < least:
                raise ValueError(f"EngineConfig.{field.name} must be >= {least}, got {value}")

    @classmethod
    def for_backend(cls, backend: str | None = None) -> EngineConfig:
        """The defaults for `backend` (`"cpu"`, `"gpu"`, `"tpu"`; default: JAX's).

        On a GPU or TPU: chunks of `2**20` paths (an accelerator needs many at once to be
        busy), each block unrolled into one program, and lanes of first exits never
        compacted below `2**14` (a GPU runs that many as fast as fewer).
        """
        backend = jax.default_backend() if backend is None else backend
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a string like 'cpu' or 'gpu', got {backend!r}")
        if backend.lower() == _CPU:
            return cls()
        return cls(chunk_size=1 << 20, unroll=True, smallest_bucket=1 << 14)

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with `changes` (checked like the constructor's arguments)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"EngineConfig has no field {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    def block_length(self, increments: str, *, exits: bool = False) -> int:
        """Steps per block: `block_steps` (Gaussian), `32 ·` words per block (two-point)."""
        if increments != "two_point":
            return self.block_steps
        return 32 * (self.two_point_exit_words if exits else self.two_point_words)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what `save` writes)."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON to `path`."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> EngineConfig:
        """Read a config written by `save`; unknown fields are an error naming them."""
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: an EngineConfig file holds a JSON object, got {raw!r}")
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown EngineConfig field {unknown[0]!r}")
        return cls(**raw)


def resolve(config: EngineConfig | None) -> EngineConfig:
    """`config`, or the defaults of the current backend; a clear error for anything else."""
    if config is None:
        return EngineConfig.for_backend()
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config must be an sdn.EngineConfig or None, got {config!r}")
    return config
