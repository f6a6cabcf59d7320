"""Tests of `sdn.sweep`: designs, the chunked sharded runner, resuming, configs."""

import csv
import os
import random as stdlib_random
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from children import free_port, host_devices_env, started
from children import run as run_child

import sdn
from sdn import domains, noise, sweep

# One small escape problem shared by several tests, so that they share compilations.
ESCAPE = sweep.escape.bind(n_paths=32, dt=0.02, max_steps=1500)
GRID = sweep.grid(curvature=[0.5, 1.0, 2.0], sigma_h=[1.0, 4.0], wall=0.5)


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


# ----------------------------------------------------------------------------- designs


def test_grid_is_the_cartesian_product_first_axis_slowest():
    d = sweep.grid(a=[1.0, 2.0, 3.0], b=[10, 20], name=["x", "y"], fixed=0.5)
    assert len(d) == 12
    assert d.points["a"].tolist() == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert d.points["b"].tolist() == [10, 10, 20, 20] * 3
    assert d.points["name"].tolist() == ["x", "y"] * 6
    assert d.points["fixed"].tolist() == [0.5] * 12
    assert d.points["b"].dtype == np.int64


def test_random_design_is_reproducible_and_parameters_draw_independently():
    lr = sweep.log_uniform(1e-3, 1e-1)
    d1 = sweep.random_design(
        500, seed=3, lr=lr, h=sweep.uniform(0.0, 2.0), f=sweep.choice(["a", "b"])
    )
    d2 = sweep.random_design(500, seed=3, lr=lr)
    np.testing.assert_array_equal(d1.points["lr"], d2.points["lr"])  # adding h did not change it
    assert 1e-3 <= d1.points["lr"].min() and d1.points["lr"].max() < 1e-1
    # log-uniform: log lr is uniform, so its mean is the midpoint within 4 standard errors
    log_lr = np.log(d1.points["lr"])
    mid, sd = (np.log(1e-3) + np.log(1e-1)) / 2, (np.log(100) / np.sqrt(12)) / np.sqrt(500)
    assert abs(log_lr.mean() - mid) < 4 * sd
    assert set(d1.points["f"].tolist()) == {"a", "b"}
    assert not np.array_equal(d1.points["lr"], sweep.random_design(500, seed=4, lr=lr).points["lr"])


def one_point(key, p):
    return {"y": p["a"]}


ONE = sweep.grid(a=[1.0])


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: sweep.grid(), ValueError, "at least one axis"),
        (lambda: sweep.grid(a=[]), ValueError, "'a' has no values"),
        (lambda: sweep.grid(a=[1.0, "x"]), TypeError, "'a' mixes"),
        (lambda: sweep.grid(a=[None]), TypeError, "'a'"),
        (lambda: sweep.grid(a=[[1, 2]]), TypeError, "'a'"),
        (lambda: sweep.grid(a=[float("nan")]), ValueError, "'a' must be finite"),
        (lambda: sweep.random_design(0, a=sweep.uniform(0, 1)), ValueError, "n must be"),
        (lambda: sweep.random_design(3, a=[1.0, 2.0]), TypeError, "use choice"),
        (lambda: sweep.random_design(3, seed=-1, a=sweep.uniform(0, 1)), ValueError, "seed"),
        (lambda: sweep.random_design(3, seed="x", a=sweep.uniform(0, 1)), ValueError, "seed"),
        (lambda: sweep.uniform(1.0, 0.0), ValueError, "lo < hi"),
        (lambda: sweep.uniform(0.0, float("inf")), TypeError, "hi must be a finite"),
        (lambda: sweep.log_uniform(0.0, 1.0), ValueError, "lo > 0"),
        (lambda: sweep.choice([]), ValueError, "choice: values is empty"),
        (lambda: sweep.choice("abc"), TypeError, "choice: values must be a list"),
        (lambda: sweep.escape.bind(n_path=3), ValueError, "unknown setting 'n_path'"),
        (lambda: sweep.escape.bind(n_paths=0), ValueError, "setting n_paths must be >= 1"),
        (lambda: sweep.escape.bind(n_paths=2.5), TypeError, "setting n_paths"),
        (lambda: sweep.escape.bind(dt=-0.1), ValueError, "setting dt must be > 0"),
        (lambda: sweep.escape.bind(bridge=1), TypeError, "setting bridge"),
        (lambda: sweep.stationary.bind(quantiles=()), ValueError, "setting quantiles"),
        (lambda: sweep.run(3, ONE), TypeError, "f must be callable"),
        (lambda: sweep.run(one_point, [1.0]), TypeError, "design must come from"),
        (lambda: sweep.run(one_point, ONE, seed=1.5), TypeError, "seed must be"),
        (lambda: sweep.run(one_point, ONE, chunk_size=0), ValueError, "chunk_size"),
        (lambda: sweep.run(one_point, ONE, static="a"), TypeError, "static must be a list"),
        (lambda: sweep.run(one_point, ONE, static=["b"]), ValueError, "static names"),
        (lambda: sweep.run(one_point, ONE, out=3), TypeError, "out must be a folder"),
        (lambda: sweep.run(one_point, ONE, progress="yes"), TypeError, "progress must be"),
        (lambda: sweep.run(one_point, ONE, name=""), ValueError, "name must be"),
        (lambda: sweep.load_config("."), sweep.ConfigError, "is a folder"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_result_queries_name_the_argument():
    r = sweep.run(one_point, sweep.grid(a=[1.0, 2.0]))
    with pytest.raises(ValueError, match="unknown statistic 'z'"):
        r.values("z")
    with pytest.raises(ValueError, match="unknown parameter 'b'"):
        r.format(parameters=["b"])
    with pytest.raises(ValueError, match="max_rows must be an int >= 0"):
        r.format(max_rows=-1)
    assert r.format(max_rows=0).splitlines() == ["a  y", "... 2 more points"]


def test_star_import_does_not_hide_the_standard_library():
    namespace = {}
    exec("import random\nfrom sdn.sweep import *", namespace)
    assert namespace["random"] is stdlib_random  # still the standard library's module
    assert {"grid", "random_design", "run", "escape"} <= set(namespace)
    assert all(hasattr(sweep, name) for name in sweep.__all__)
    with pytest.raises(AttributeError, match="renamed sdn.sweep.random_design"):
        sweep.random(3, a=sweep.uniform(0, 1))


# ----------------------------------------------------------------------------- the runner


def test_grid_sweep_equals_calling_the_function_point_by_point():
    result = sweep.run(ESCAPE, GRID, seed=7, chunk_size=4)
    key = jax.random.key(7)
    for stat in ("mean_time", "sem", "exited"):
        by_point = [
            float(ESCAPE(jax.random.fold_in(key, i), GRID.point(i))[stat]) for i in range(6)
        ]
        np.testing.assert_allclose(result.values(stat), by_point, rtol=1e-5)
    # and the built-in function is the engine called directly on the same SDE
    sde = sdn.sgd_sde(lambda w: 2.0 * w, noise.power_law(1.0, 4.0), 0.1, 1)
    r = sdn.first_exit_time(
        jax.random.fold_in(key, 5),
        sde,
        0.0,
        domains.interval(-0.5, 0.5),
        dt=0.02,
        n_steps=1500,
        n_paths=32,
    )
    assert result.values("exited")[5] == r.summary()["exited"]
    np.testing.assert_allclose(result.values("mean_time")[5], r.summary()["mean_time"], rtol=1e-5)
    # the tidy table: one row per point and statistic, sorted by point
    assert len(result.table["value"]) == 6 * len(result.statistics)
    assert result.table["point"].tolist() == sorted(result.table["point"].tolist())
    assert result.statistics == ("mean_time", "sem", "exited", "inside", "diverged")
    assert result.table["curvature"].tolist()[:5] == [0.5] * 5


def test_results_do_not_depend_on_chunk_size(tmp_path):
    tables = []
    for chunk in (1, 4, 100):
        r = sweep.run(ESCAPE, GRID, seed=7, chunk_size=chunk, out=tmp_path / f"c{chunk}")
        tables.append((tmp_path / f"c{chunk}" / "results.csv").read_bytes())
        assert len(list((tmp_path / f"c{chunk}" / "chunks").glob("*.csv"))) == -(-6 // chunk)
        assert r.points_run == 6
    assert tables[0] == tables[1] == tables[2]


def test_static_choices_split_into_groups_and_reach_f_as_python_values():
    seen = []

    def f(key, p):
        seen.append((p["mode"], type(p["a"]).__name__))
        scale = {"double": 2.0, "triple": 3.0}[p["mode"]]  # needs a Python string
        return {"y": scale * p["a"], "n": p["n"] * jnp.ones(p["n"]).sum()}

    d = sweep.grid(mode=["double", "triple"], a=[1.0, 2.0], n=[2, 3])
    r = sweep.run(f, d, static=["n"], chunk_size=8)
    np.testing.assert_allclose(r.values("y"), [2, 2, 4, 4, 3, 3, 6, 6])
    np.testing.assert_allclose(r.values("n"), [4, 9] * 4)
    assert {m for m, _ in seen} == {"double", "triple"}
    assert all(t != "float" for _, t in seen)  # numeric parameters arrive traced


def test_bad_sweep_functions_and_arguments_raise_before_writing(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="'v' must be a scalar per point"):
        sweep.run(lambda k, p: {"v": jnp.ones(3) * p["a"]}, sweep.grid(a=[1.0]), out=out)
    with pytest.raises(ValueError, match="unknown parameter 'curvatur'"):
        sweep.run(ESCAPE, sweep.grid(curvatur=[1.0]), out=out)
    with pytest.raises(ValueError, match="'noise' must be one of"):
        sweep.run(ESCAPE, sweep.grid(noise=["gauss"]), out=out)
    with pytest.raises(ValueError, match="chunk_size"):
        sweep.run(ESCAPE, GRID, chunk_size=0, out=out)
    with pytest.raises(ValueError, match="static names"):
        sweep.run(ESCAPE, GRID, static=["nope"], out=out)
    assert not out.exists()


def test_a_different_sweep_in_the_same_folder_is_refused(tmp_path):
    f = lambda k, p: {"y": p["a"] + jax.random.normal(k)}  # noqa: E731
    sweep.run(f, sweep.grid(a=[1.0, 2.0]), out=tmp_path / "r", name="one")
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="different sweep.*the function: 'one' there, 'two'"):
        sweep.run(f, sweep.grid(a=[1.0, 3.0]), out=tmp_path / "r", name="two")
    with pytest.raises(ValueError, match=r"different sweep.*the design: .*1\.0, 2\.0.* there"):
        sweep.run(f, sweep.grid(a=[1.0, 3.0]), out=tmp_path / "r", name="one")
    with pytest.raises(ValueError, match="different sweep.*the seed"):  # same sweep, other seed
        sweep.run(f, sweep.grid(a=[1.0, 2.0]), seed=1, out=tmp_path / "r", name="one")
    after = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert after == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        sweep.run(f, sweep.grid(a=[1.0]), out=tmp_path / "other")


def test_rerunning_a_finished_sweep_reads_it_back(tmp_path):
    r1 = sweep.run(ESCAPE, GRID, seed=7, chunk_size=4, out=tmp_path / "r")
    r2 = sweep.run(ESCAPE, GRID, seed=7, chunk_size=2, out=tmp_path / "r")
    assert (r2.points_run, r2.points_skipped) == (0, 6)
    for name in r1.table:
        np.testing.assert_array_equal(r1.table[name], r2.table[name])
    import json

    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["resumed"] == 1 and manifest["chunks_done"] == 2
    assert manifest["versions"]["jax"] == jax.__version__
    assert manifest["devices"]["kinds"] and len(manifest["identity_sha256"]) == 64
    identity = manifest["identity"]
    assert identity["function"]["settings"] == {
        "bridge": True, "dt": 0.02, "increments": "gaussian", "max_steps": 1500, "n_paths": 32
    }  # fmt: skip
    assert identity["seed"] == [0, 7] and identity["sdn"] == sdn.__version__


SCRIPT = textwrap.dedent(
    """
    import sys, jax
    from sdn import sweep
    assert len(jax.devices()) == int(sys.argv[2])
    f = sweep.escape.bind(n_paths=32, dt=0.02, max_steps=1500)
    d = sweep.grid(curvature=[0.5, 1.0, 2.0], sigma_h=[1.0, 4.0], noise=["pld", "langevin"],
                   wall=0.5)
    r = sweep.run(f, d, seed=7, chunk_size=3, out=sys.argv[1])
    assert r.n_devices == int(sys.argv[2])
    """
)


def test_same_results_on_one_and_four_devices(tmp_path):
    tables = []
    for n_dev in (1, 4):
        env = host_devices_env(n_dev)
        out = tmp_path / f"d{n_dev}"
        done = run_child([sys.executable, "-c", SCRIPT, str(out), str(n_dev)], env=env, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:]
        tables.append((out / "results.csv").read_bytes())
    assert tables[0] == tables[1]
    assert len(read_rows(tmp_path / "d1" / "results.csv")) == 1 + 12 * 5


MULTI = textwrap.dedent(
    """
    import sys, jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    process, port = int(sys.argv[3]), sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
    assert jax.process_count() == 2 and len(jax.local_devices()) == 2
    """
)


def two_processes(out, script=SCRIPT, timeout=300, attempts=3):
    """Run `script` in two processes that form one JAX job; retry if the port got taken."""
    env = host_devices_env(2)
    for _ in range(attempts):
        port = str(free_port())
        commands = [
            [sys.executable, "-c", MULTI + script, str(out), "4", str(i), port] for i in (0, 1)
        ]
        pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with started(commands, env=env, **pipes) as procs:
            logs = [p.communicate(timeout=timeout)[0] for p in procs]
        if "ddress already in use" not in "".join(logs):
            return [p.returncode for p in procs], logs
    return [p.returncode for p in procs], logs


def test_two_processes_write_the_table_of_one(tmp_path):
    # Two processes with two CPU devices each stand in for two hosts (gloo collectives).
    out = tmp_path / "multi"
    codes, logs = two_processes(out)
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert not (out / "lock").exists()  # process 0 held the folder's lock and released it
    env = host_devices_env(1)
    one = tmp_path / "one"
    done = run_child([sys.executable, "-c", SCRIPT, str(one), "1"], env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    multi, single = read_rows(out / "results.csv"), read_rows(one / "results.csv")
    assert len(multi) == len(single) == 1 + 12 * 5
    # Several processes run each point on its own (one process batches a chunk's paths
    # into one ensemble): the same paths, so the same exit times and counts; only the
    # float32 sum order of the standard error may differ, in the last digit.
    for a, b in zip(multi, single):
        assert a[:-1] == b[:-1]
        if a[-2] == "sem":
            np.testing.assert_allclose(float(a[-1]), float(b[-1]), rtol=1e-6)
        else:
            assert a[-1] == b[-1]


BUSY = textwrap.dedent(
    """
    from sdn import sweep
    try:
        sweep.run(lambda k, p: {"y": p["a"]}, sweep.grid(a=[1.0, 2.0]), out=sys.argv[1])
    except ValueError as err:
        print("refused:", err)
        sys.exit(3)
    """
)


def test_two_processes_stop_together_when_the_folder_is_busy(tmp_path):
    # Process 0 alone opens the folder; the other must hear that it failed, not wait.
    import json
    import socket

    out = tmp_path / "busy"
    with started([[sys.executable, "-c", "import time; time.sleep(300)"]]) as (holder,):
        out.mkdir()
        owner = {"pid": holder.pid, "host": socket.gethostname()}
        (out / "lock").write_text(json.dumps(owner))
        codes, logs = two_processes(out, BUSY, timeout=150)
    assert codes == [3, 3], logs[0][-2000:] + logs[1][-2000:]
    assert f"being written by another sweep (process {holder.pid}" in logs[0]
    assert "process 0 could not open" in logs[1]


# ----------------------------------------------------------------------------- configs


def write(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
[sweep]
function = "escape"
seed = 2
chunk_size = 4
[settings]
n_paths = 32
dt = 0.02
max_steps = 1500
[grid]
curvature = [0.5, 1.0, 2.0]
sigma_h = [1.0, 4.0]
wall = 0.5
"""


def test_config_runs_the_same_sweep_as_the_python_api(tmp_path):
    config = sweep.load_config(write(tmp_path, GOOD))
    assert len(config.design) == 6 and config.seed == 2 and config.chunk_size == 4
    r = config.run(out=tmp_path / "out", progress=False)
    direct = sweep.run(ESCAPE, GRID, seed=2)
    for name in direct.statistics:
        np.testing.assert_array_equal(r.values(name), direct.values(name))


@pytest.mark.parametrize(
    "edit, key",
    [
        (("sigma_h = [1.0, 4.0]", "sigma_hh = [1.0, 4.0]"), "grid.sigma_hh"),  # unknown parameter
        (("curvature = [0.5, 1.0, 2.0]", "curvature = []"), "grid.curvature"),  # empty axis
        (("curvature = [0.5, 1.0, 2.0]", 'curvature = ["big"]'), "grid.curvature"),  # type
        (("wall = 0.5", 'noise = ["pld", "gauss"]'), "grid.noise"),  # not a choice
        (("n_paths = 32", "n_paths = 32.5"), "settings.n_paths"),  # wrong type
        (("n_paths = 32", "n_path = 32"), "settings.n_path"),  # unknown setting
        (("dt = 0.02", 'dt = "small"'), "settings.dt"),
        (("seed = 2", 'seed = "two"'), "sweep.seed"),
        (("chunk_size = 4", "chunk_size = 0"), "sweep.chunk_size"),
        (('function = "escape"', 'function = "escapes"'), "sweep.function"),
        (('function = "escape"', 'function = "no_such_module:f"'), "sweep.function"),
        (("seed = 2", "sed = 2"), "sweep.sed"),
        (("[grid]", "[grids]"), "grids"),
        (("[grid]", "[random]\nn = 4"), "random.curvature"),  # a list in a random design
        (("max_steps = 1500", "max_steps = 1500\n[random]\nn = 3"), "grid"),  # two designs
        (("wall = 0.5", "wall = 0.5\n["), "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key_and_the_file_and_write_nothing(tmp_path, edit, key):
    old, new = edit
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(sweep.ConfigError) as err:
        sweep.load_config(path)
    assert key in str(err.value) and str(path) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.toml"]


def test_random_config_and_missing_file(tmp_path):
    path = write(
        tmp_path,
        """
        [sweep]
        function = "stationary"
        [settings]
        n_paths = 16
        n_steps = 20
        quantiles = [0.5, 0.9]
        [random]
        n = 5
        seed = 4
        sigma_h = { uniform = [0.5, 5.0] }
        learning_rate = { log_uniform = [0.01, 0.1] }
        noise = { choice = ["pld", "langevin"] }
        """,
    )
    config = sweep.load_config(path)
    assert len(config.design) == 5
    assert np.all((config.design.points["sigma_h"] >= 0.5) & (config.design.points["sigma_h"] < 5))
    with pytest.raises(sweep.ConfigError, match="does not exist"):
        sweep.load_config(tmp_path / "missing.toml")
    bad = write(tmp_path, path.read_text().replace("0.5, 5.0", "5.0, 0.5"), "bad.toml")
    with pytest.raises(sweep.ConfigError, match=r"random\.sigma_h\.uniform.*lo < hi"):
        sweep.load_config(bad)


@pytest.mark.parametrize("name", ["escape_sweep.toml", "stationary_random.toml"])
def test_example_configs_are_valid(name):
    root = os.path.join(os.path.dirname(__file__), "..", "examples", name)
    assert len(sweep.load_config(root).design) >= 16


@pytest.mark.parametrize("increments", ["gaussian", "two_point"])
def test_builtin_stationary_sweep_gives_the_student_t_quantiles(increments):
    """The built-in `stationary` sweep against the power-law dynamic's Student-t law
    (docs/theory.md §3): the law's CDF at each measured quantile `q̂_p` is `p` within the
    binomial error `sqrt(p(1 − p)/n)` of an empirical quantile (Z ≤ 4), at two points."""
    from sdn import theory

    n, probs = 4096, (0.5, 0.9, 0.99)
    fn = sweep.stationary.bind(
        n_paths=n, dt=0.01, n_steps=1500, quantiles=probs, increments=increments
    )
    design = sweep.grid(sigma_h=[1.0, 4.0], curvature=1.0, learning_rate=0.1, batch_size=2)
    result = sweep.run(fn, design, seed=3)
    for i, sh in enumerate([1.0, 4.0]):
        law = theory.power_law_stationary(1.0, 0.1, 2, 1.0, sh)
        for p in probs:
            q = float(result.values(f"q{p:g}")[i])
            err = np.sqrt(p * (1 - p) / n)
            assert abs(float(law.cdf(q)) - p) < 4 * err, (sh, p, q, float(law.ppf(p)))
