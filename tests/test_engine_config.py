"""The engine's public objects: `EngineConfig`, solver objects, `ExitStatus`, `SDE`'s checks,
`simulate_trajectory`, and the old spellings, which warn and give the new ones' numbers."""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sdn
from sdn import domains, noise, solvers
from sdn.engine.config import EngineConfig

# Every knob whose docstring says it changes no number, set away from its default in one
# of these: one config with small lanes (`refill_above`, `smallest_bucket`), so that the run
# refills and compacts them, one with the exact test alone (no quiet blocks), one with the
# blocks unrolled. Short blocks (`_BASE`, on both sides of each comparison) keep the
# unrolled programs quick to compile.
_BASE = dict(block_steps=8, two_point_words=2, two_point_exit_words=1)
_NO_NUMBER = [
    dict(
        chunk_size=128, steps_per_round=64, tail_rounds=2, bucket_base=2, smallest_bucket=8,
        replay_fraction=2, refill_above=16, lane_fraction=2,
    ),
    dict(
        chunk_size=90, bit_unroll=1, steps_per_round=500, tail_rounds=1, bucket_base=3,
        smallest_bucket=4, quiet_blocks=False, replay_fraction=64, refill_above=32,
        lane_fraction=3,
    ),
    dict(unroll=True, word_unroll=1),
]  # fmt: skip


def _documented(phrase: str) -> set[str]:
    """The fields of `EngineConfig` whose entry in its docstring contains `phrase`."""
    entries = re.split(r"\n      (?=\w+: )", EngineConfig.__doc__.split("Attributes:")[1])
    return {e.split(":")[0].strip() for e in entries if phrase in " ".join(e.split())}


def _pld():
    return sdn.sgd_sde(lambda w: w, noise.power_law(1.0, 2.0), 0.1, 1)


def test_the_tested_knobs_are_exactly_those_documented_to_change_no_number():
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    quiet = _documented("Changes no number")
    assert quiet | _documented("Changes numbers") == fields  # every field says which
    assert {k for cfg in _NO_NUMBER for k in cfg} == quiet


@pytest.mark.parametrize("increments", ["gaussian", "two_point"])
def test_knobs_that_change_no_number_change_no_number(increments):
    # a small first-exit run that exits, stops at n_steps and refills lanes, and a simulate
    sde, dom = _pld(), domains.interval(-0.5, 0.5)
    kw = dict(dt=0.01, n_steps=300, n_paths=200, increments=increments)
    base = EngineConfig(**_BASE)
    exits = sdn.first_exit_time(3, sde, 0.0, dom, config=base, **kw)
    final = sdn.simulate(3, sde, 0.0, config=base, **kw)
    status = np.asarray(exits.status)
    assert np.any(status == sdn.ExitStatus.EXITED) and np.any(status == sdn.ExitStatus.INSIDE)
    for changes in _NO_NUMBER:
        config = base.replace(**changes)
        other = sdn.first_exit_time(3, sde, 0.0, dom, config=config, **kw)
        for a, b in zip(exits, other):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sdn.simulate(3, sde, 0.0, config=config, **kw), final)
    # and a knob documented to change numbers does: the test can tell
    moved = sdn.simulate(3, sde, 0.0, config=base.replace(block_steps=7, two_point_words=3), **kw)
    assert not np.array_equal(moved, final)


def test_config_is_frozen_hashable_checked_and_round_trips(tmp_path):
    cfg = EngineConfig(chunk_size=1 << 12, unroll=True)
    assert cfg == EngineConfig(chunk_size=1 << 12, unroll=True) and hash(cfg) == hash(
        EngineConfig(chunk_size=1 << 12, unroll=True)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.chunk_size = 3
    cfg.save(tmp_path / "c.json")
    assert EngineConfig.load(tmp_path / "c.json") == cfg
    (tmp_path / "bad.json").write_text('{"chunk_sise": 4}')
    with pytest.raises(ValueError, match="chunk_sise"):
        EngineConfig.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        EngineConfig(chunk_size=0)
    with pytest.raises(TypeError, match="unroll must be True or False"):
        EngineConfig(unroll=1)
    with pytest.raises(TypeError, match="block_steps must be an int"):
        EngineConfig(block_steps=2.5)
    with pytest.raises(TypeError, match="no field 'chunk'"):
        cfg.replace(chunk=3)
    gpu = EngineConfig.for_backend("gpu")
    assert (gpu.chunk_size, gpu.unroll, gpu.smallest_bucket) == (1 << 20, True, 1 << 14)
    assert EngineConfig.for_backend("cpu") == EngineConfig()
    with pytest.raises(TypeError, match="config must be an sdn.EngineConfig"):
        sdn.simulate(0, _pld(), 0.0, dt=0.1, n_steps=2, n_paths=2, config={"unroll": True})


def test_solvers_are_objects_with_orders_and_strings_stay_shorthand():
    em, mil, heun, sgd = solvers.EulerMaruyama(), solvers.Milstein(), solvers.Heun(), solvers.SGD()
    assert (em.strong_order, em.weak_order) == (0.5, 1.0)
    assert (mil.strong_order, mil.weak_order) == (1.0, 1.0)
    assert (heun.strong_order, heun.weak_order) == (1.0, 1.0)
    assert (sgd.strong_order, sgd.weak_order) == (None, None)
    assert mil.requires == ("is_gaussian", "diagonal")
    sde, dom = _pld(), domains.interval(-0.5, 0.5)
    kw = dict(dt=0.01, n_steps=200, n_paths=50)
    for obj in (em, mil, heun, sgd):
        assert solvers.resolve(obj.name, sde) == obj
        by_name = sdn.simulate(1, sde, 0.0, solver=obj.name, **kw)
        np.testing.assert_array_equal(sdn.simulate(1, sde, 0.0, solver=obj, **kw), by_name)
    a = sdn.first_exit_time(2, sde, 0.0, dom, solver=solvers.Heun(), **kw)
    b = sdn.first_exit_time(2, sde, 0.0, dom, solver="heun", **kw)
    np.testing.assert_array_equal(a.time, b.time)
    with pytest.raises(ValueError, match="solver='milstein' needs noise that is diagonal"):
        sdn.simulate(0, sdn.SDE(lambda w: -w, noise.full(jnp.eye(2))), jnp.zeros(2),
                     solver=solvers.Milstein(), **kw)  # fmt: skip
    for pathwise in (mil, "milstein", solvers.milstein):
        with pytest.raises(ValueError, match="pathwise"):
            sdn.simulate(0, sde, 0.0, solver=pathwise, increments="two_point", **kw)
    with pytest.raises(TypeError, match="solver must be an sdn.solvers object"):
        sdn.simulate(0, sde, 0.0, solver=3, **kw)


def test_exit_status_is_an_int_enum_with_the_old_values():
    assert [int(s) for s in sdn.ExitStatus] == [0, 1, 2]
    assert (sdn.EXITED, sdn.INSIDE, sdn.DIVERGED) == tuple(sdn.ExitStatus)
    r = sdn.first_exit_time(0, _pld(), 0.0, domains.interval(-0.5, 0.5), dt=0.01, n_steps=3,
                            n_paths=4)  # fmt: skip
    assert sdn.ExitStatus(int(r.status[0])) is sdn.ExitStatus.INSIDE


def test_sde_names_a_drift_that_is_not_callable_and_a_noise_that_is_no_model():
    with pytest.raises(TypeError, match="drift must be callable.*float"):
        sdn.SDE(1.0, noise.isotropic(1.0))
    with pytest.raises(TypeError, match="noise must be an sdn.noise model.*'gaussian'"):
        sdn.SDE(lambda w: -w, "gaussian")
    # JAX rebuilds the tree with other leaves without the checks (vmap's axes, tree_map)
    sde = sdn.SDE(jax.tree_util.Partial(lambda h, w: -h * w, 2.0), noise.isotropic(1.0))
    assert jax.tree.map(lambda x: None, sde).scale is None
    plain = sdn.SDE(lambda w: -w, noise.isotropic(1.0))  # the drift is a leaf here
    assert jax.tree.map(lambda x: None, plain).drift is None
    out = jax.vmap(lambda s: s.drift(1.0))(jax.tree.map(lambda x: jnp.full(3, x), sde))
    np.testing.assert_allclose(out, -2.0)


def test_simulate_trajectory_keeps_the_states_of_simulate():
    sde = _pld()
    kw = dict(dt=0.01, n_steps=120, n_paths=5)
    tr = sdn.simulate_trajectory(4, sde, 0.0, save_every=40, **kw)
    assert isinstance(tr, sdn.Trajectory) and tr.value.shape == (5, 4)
    np.testing.assert_array_equal(tr.value[:, -1], sdn.simulate(4, sde, 0.0, **kw))


# ----------------------------------------------------------------------------- old spellings


def test_simulate_save_every_warns_and_returns_what_the_new_spellings_return():
    sde, kw = _pld(), dict(dt=0.01, n_steps=120, n_paths=5)
    with pytest.warns(DeprecationWarning, match="sdn.simulate_trajectory"):
        old = sdn.simulate(4, sde, 0.0, save_every=40, **kw)
    new = sdn.simulate_trajectory(4, sde, 0.0, save_every=40, **kw)
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(DeprecationWarning, match="sdn.simulate_trajectory"):
        final = sdn.simulate(4, sde, 0.0, save_every=None, **kw)
    np.testing.assert_array_equal(final, sdn.simulate(4, sde, 0.0, **kw))


@pytest.mark.parametrize("old, new", [("max_steps", "n_steps"), ("bridge", "boundary_correction")])
def test_first_exit_keywords_renamed_warn_and_give_the_same_exits(old, new):
    sde = sdn.sgd_sde(jax.tree_util.Partial(lambda h, w: h * w, 1.0), _pld().noise, 0.1, 1)
    dom = domains.interval(-0.5, 0.5)
    given = dict(n_steps=300, boundary_correction=False)
    renamed = {old if k == new else k: v for k, v in given.items()}
    with pytest.warns(DeprecationWarning, match=rf"first_exit_time\({new}=\.\.\.\)"):
        a = sdn.first_exit_time(5, sde, 0.0, dom, dt=0.01, n_paths=40, **renamed)
    b = sdn.first_exit_time(5, sde, 0.0, dom, dt=0.01, n_paths=40, **given)
    np.testing.assert_array_equal(a.time, b.time)
    keys = jax.random.split(jax.random.key(0), 4)
    rows = jax.tree.map(lambda x: jnp.full((4,), x), (sde, dom))
    with pytest.warns(DeprecationWarning, match=rf"first_exit_time_per_path\({new}=\.\.\.\)"):
        c = sdn.first_exit_time_per_path(keys, rows[0], jnp.zeros(4), rows[1], dt=0.01,
                                         **renamed)  # fmt: skip
    d = sdn.first_exit_time_per_path(keys, rows[0], jnp.zeros(4), rows[1], dt=0.01, **given)
    np.testing.assert_array_equal(c.time, d.time)


@pytest.mark.parametrize(
    "name, new",
    [
        ("simulate", "sdn.engine.simulate.simulate"),
        ("first_exit_time", "sdn.engine.exits.first_exit_time"),
        ("first_exit_time_per_path", "sdn.engine.exits.first_exit_time_per_path"),
        ("ExitResult", "sdn.engine.results.ExitResult"),
        ("Trajectory", "sdn.engine.results.Trajectory"),
        ("EXITED", "sdn.engine.results.EXITED"),
        ("INSIDE", "sdn.engine.results.INSIDE"),
        ("DIVERGED", "sdn.engine.results.DIVERGED"),
        ("TWO_POINT_SHIFT", "sdn.engine.blocks.TWO_POINT_SHIFT"),
        ("SDE", "sdn.engine.sde.SDE"),
        ("INCREMENTS", "sdn.noise.INCREMENTS"),
    ],
)
def test_old_engine_module_names_warn_and_are_the_new_objects(name, new):
    import importlib

    import sdn.ensemble as old

    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        got = getattr(old, name)
    module, attr = new.rsplit(".", 1)
    assert got is getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize(
    "name, field",
    [
        ("BLOCK_STEPS", "block_steps"),
        ("TWO_POINT_WORDS", "two_point_words"),
        ("TWO_POINT_EXIT_WORDS", "two_point_exit_words"),
        ("DEFAULT_CHUNK", "chunk_size"),
    ],
)
def test_old_engine_globals_warn_and_read_the_config(name, field):
    import sdn.ensemble as old

    with pytest.warns(DeprecationWarning, match=rf"EngineConfig\(\)\.{field}"):
        assert getattr(old, name) == getattr(EngineConfig(), field)
    with pytest.warns(DeprecationWarning, match="for_backend"):
        assert old.ACCELERATOR_CHUNK == EngineConfig.for_backend("gpu").chunk_size
    with pytest.raises(AttributeError, match="_QUIET_BLOCKS"):
        old._QUIET_BLOCKS  # noqa: B018


def test_has_bridge_warns_and_is_is_box():
    for dom, box in ((domains.interval(-1.0, 1.0), True), (domains.from_function(bool), False)):
        with pytest.warns(DeprecationWarning, match="is_box"):
            assert dom.has_bridge is box
        assert dom.is_box is box
