"""End-to-end runs of the `sdn` command on tiny sizes, in process (shared compilations).

The console script itself runs in a subprocess in `test_sweep.py` (killed and resumed).
"""

import csv
import textwrap

import pytest

from sdn import cli

# The same sizes as tests/test_sweep.py's ESCAPE, so the compiled programs are shared.
TINY_ESCAPE = ["--n-paths", "32", "--dt", "0.02", "--max-steps", "1500", "--no-progress"]


@pytest.mark.parametrize("command", ["demo", "sweep", "escape", "stationary"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sdn {command}")


def test_escape_prints_a_grid_and_writes_the_table(tmp_path, capsys):
    args = ["escape", "--curvature", "0.5,1,2", "--sigma-h", "1,4", "--wall", "0.5"]
    assert cli.main([*args, *TINY_ESCAPE, "--seed", "7", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["curvature", "sigma_h", "mean_time", "sem", "exited", "inside",
                              "diverged"]  # fmt: skip
    assert len(out) == 1 + 6 + 1 and out[-1].startswith("6 points (6 run, 0 resumed)")
    with open(tmp_path / "e" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 * 5
    assert {r["statistic"] for r in rows} == {"mean_time", "sem", "exited", "inside", "diverged"}
    exited = [float(r["value"]) for r in rows if r["statistic"] == "exited"]
    assert all(0 < e <= 32 for e in exited)


def test_escape_over_static_choices(capsys):
    args = ["escape", "--noise", "pld,langevin", "--curvature", "1", "--wall", "0.5"]
    assert cli.main([*args, *TINY_ESCAPE]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["pld", "langevin"]


def test_stationary_prints_quantiles(capsys):
    args = ["stationary", "--sigma-h", "1,8", "--n-paths", "256", "--n-steps", "200"]
    assert cli.main([*args, "--quantiles", "0.5,0.99", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sigma_h", "q0.5", "q0.99", "median_abs", "finite"]
    q99 = [float(line.split()[2]) for line in lines[1:3]]
    assert 0 < q99[0] < q99[1]  # heavier tails with larger σ_H (docs/theory.md §3)


def test_the_weak_mode_from_the_command_line(capsys):
    # the same grid with both increment laws: quantiles agree in law, not path by path
    base = ["stationary", "--sigma-h", "2", "--n-paths", "2048", "--n-steps", "400"]
    rows = {}
    for increments in ("gaussian", "two_point"):
        assert cli.main([*base, "--quantiles", "0.9", "--increments", increments]) == 0
        rows[increments] = float(capsys.readouterr().out.splitlines()[1].split()[1])
    assert rows["gaussian"] != rows["two_point"]
    # q0.9 of 2048 paths: its standard error is about 3% here; 6 × that for the difference
    assert rows["two_point"] == pytest.approx(rows["gaussian"], rel=0.18)


def test_sweep_runs_a_config_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        textwrap.dedent(
            """
            [sweep]
            function = "escape"
            seed = 7
            [settings]
            n_paths = 32
            dt = 0.02
            max_steps = 1500
            [grid]
            curvature = [0.5, 1.0, 2.0]
            sigma_h = [1.0, 4.0]
            wall = 0.5
            """
        )
    )
    out = tmp_path / "o"
    assert cli.main(["sweep", str(cfg), "--out", str(out), "--chunk-size", "4"]) == 0
    first = capsys.readouterr().out
    assert "6 points (6 run, 0 resumed)" in first and str(out / "results.csv") in first
    assert cli.main(["sweep", str(cfg), "--out", str(out)]) == 0
    assert "6 points (0 run, 6 resumed)" in capsys.readouterr().out


def test_demo_runs_on_tiny_sizes(tmp_path, capsys):
    assert cli.main(["demo", "--paths", "200", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "PLD predicted: Student-t with ν = 5.000, scale 0.2000; Langevin predicted: Gaussian, "
        "sd 0.2236"
    )
    assert (tmp_path / "demo_tails.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["escape", "--curvature", "abc"], "--curvature: expected numbers"),
        (["escape", "--noise", "pld,gauss"], "--noise: must be among"),
        (["escape", "--batch-size", "1.5"], "--batch-size: expected integers"),
        (["stationary", "--sigma-h", "1,,2"], "--sigma-h: expected comma-separated"),
        (["escape", "--n-paths", "0"], "--n-paths must be an integer >= 1, got 0"),
        (["sweep", "no/such/config.toml"], "no/such/config.toml"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdn {argv[0]}: error:") and message in err
    assert not out.exists()


def test_train_runs_seeds_with_noise_and_writes_history(tmp_path, capsys):
    from sdn.cli import main

    args = [
        "train",
        "--data",
        "teacher",
        "--hidden",
        "8",
        "--steps",
        "20",
        "--batch",
        "32",
        "--small-batch",
        "8",
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(args + ["--noise", "fluctuation"]) == 0
    text = capsys.readouterr().out
    assert "over 2 seeds" in text and (tmp_path / "train_history.csv").exists()
    rows = (tmp_path / "train_history.csv").read_text().splitlines()
    assert rows[0] == "seed,step,train_loss,test_accuracy" and len(rows) > 3
    assert main(["train", "--data", "teacher", "--hidden", "8,x"]) == 2
    assert "--hidden" in capsys.readouterr().err


# Values outside their domain: one line naming the flag, exit 2, before any work (the
# sweep runner, the demo and the trainer are replaced by functions that fail if called).
@pytest.mark.parametrize(
    "argv, message",
    [
        (["escape", "--sigma-h", "-2"], "--sigma-h must be >= 0, got -2"),
        (["escape", "--curvature", "-1"], "--curvature must be positive, got -1"),
        (["escape", "--learning-rate", "-0.1"], "--learning-rate must be positive, got -0.1"),
        (["escape", "--learning-rate", "nan"], "--learning-rate must be positive, got nan"),
        (["escape", "--sigma-g", "0,1"], "--sigma-g must be positive, got 0"),
        (["escape", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["escape", "--wall", "0"], "--wall must be positive, got 0"),
        (["escape", "--wall", "0.5,1", "--x0", "0.7"], "--x0 0.7 with --wall 0.5"),
        (["escape", "--x0", "inf"], "--x0 must be finite, got inf"),
        (["escape", "--dt", "-0.01"], "--dt must be positive, got -0.01"),
        (["escape", "--max-steps", "0"], "--max-steps must be an integer >= 1, got 0"),
        (["escape", "--chunk-size", "0"], "--chunk-size must be an integer >= 1, got 0"),
        (["stationary", "--quantiles", "0.5,1.5"], "--quantiles must be in (0, 1), got 1.5"),
        (["stationary", "--quantiles", "0"], "--quantiles must be in (0, 1), got 0"),
        (["stationary", "--n-steps", "0"], "--n-steps must be an integer >= 1, got 0"),
        (["stationary", "--increments", "binary"], "--increments must be one of"),
        (["demo", "--paths", "0"], "--paths must be an integer >= 1, got 0"),
        (["demo", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
        (["train", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
        (["train", "--lr", "0"], "--lr must be positive, got 0"),
        (["train", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["train", "--hidden", "8,0"], "--hidden must be an integer >= 1, got 0"),
        (["train", "--alpha-h", "-1"], "--alpha-h must be >= 0, got -1"),
        (["train", "--noise", "fluctuation", "--batch", "16"], "--small-batch must be below"),
        (["reproduce", "--only", "tails,bogus"], "--only: unknown section 'bogus'"),
        (["reproduce", "--out", "/proc/x"], "--out: cannot write to '/proc/x'"),
    ],
)
def test_values_outside_their_domain_fail_before_any_work(argv, message, monkeypatch, capsys):
    import sdn.experiments.demo
    import sdn.report
    import sdn.sweep
    import sdn.train

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in [(sdn.sweep, "run"), (sdn.experiments.demo, "run_demo"),
                         (sdn.train, "train"), (sdn.report, "reproduce")]:  # fmt: skip
        monkeypatch.setattr(module, name, no_work)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdn {argv[0]}: error: ") and message in err
    assert err.count("\n") == 1


def test_a_bug_keeps_its_traceback_and_a_library_check_stays_one_line(monkeypatch, capsys):
    import jax.numpy as jnp

    import sdn.sweep
    from sdn._checks import check_positive

    def bug(*args, **kwargs):  # a shape error raised inside JAX: a bug, not the user's
        return jnp.zeros(3) + jnp.zeros(4)

    monkeypatch.setattr(sdn.sweep, "run", bug)
    with pytest.raises((TypeError, ValueError), match="shapes"):
        cli.main(["escape", "--no-progress"])

    def bug_in_python(*args, **kwargs):
        return int("not a number")

    monkeypatch.setattr(sdn.sweep, "run", bug_in_python)
    with pytest.raises(ValueError, match="invalid literal"):
        cli.main(["escape", "--no-progress"])

    def user_error(*args, **kwargs):  # sdn's own argument check: a message for the user
        check_positive("dt", -1.0)

    monkeypatch.setattr(sdn.sweep, "run", user_error)
    assert cli.main(["escape", "--no-progress"]) == 2
    assert capsys.readouterr().err == "sdn escape: error: dt must be finite and positive, got -1.\n"


def test_version_and_every_option_has_a_description_and_default(capsys):
    from sdn import __version__

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sdn {__version__}"
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"demo", "reproduce", "train", "sweep", "escape", "stationary"}
    for name, cmd in sub.choices.items():
        assert cmd.description, name
        for action in cmd._actions:
            if not action.option_strings or action.dest in ("help", "quick", "full"):
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)


@pytest.mark.parametrize("noise", ["none", "power_law", "isotropic"])
def test_train_runs_with_each_noise_choice(noise, capsys):
    argv = ["train", "--data", "teacher", "--hidden", "8", "--steps", "10", "--batch", "32"]
    assert cli.main([*argv, "--seeds", "2", "--noise", noise]) == 0
    out = capsys.readouterr().out
    assert f"noise {noise}," in out and "over 2 seeds" in out
    rows = [line.split() for line in out.splitlines()]
    accuracies = [float(r[1]) for r in rows if len(r) == 3 and r[0] in ("0", "1")]
    assert len(accuracies) == 2 and all(0 <= a <= 100 for a in accuracies)


@pytest.mark.parametrize("out", [True, False], ids=["with-out", "no-out"])
def test_ctrl_c_in_a_builtin_sweep_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, out):
    from sdn import sweep

    folder = tmp_path / "o" if out else None

    def stopped(*args, **kwargs):
        raise sweep.SweepInterrupted(3, 10, folder)

    monkeypatch.setattr(sweep, "run", stopped)
    argv = ["escape", "--no-progress"] + (["--out", str(folder)] if out else [])
    assert cli.main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    if out:
        assert err == (
            f"sdn escape: interrupted; 3 of 10 points are saved in {folder}; "
            "rerun the same command to resume"
        )
    else:
        assert (
            err
            == "sdn escape: interrupted; 3 of 10 points are saved (no --out folder: nothing kept)"
        )


def test_ctrl_c_in_any_command_exits_130(tmp_path, monkeypatch, capsys):
    import sdn.experiments.demo as demo

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", stopped)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "sdn demo: interrupted"
