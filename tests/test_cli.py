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
    assert "Student-t" in capsys.readouterr().out
    assert (tmp_path / "demo_tails.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["escape", "--curvature", "abc"], "--curvature: expected numbers"),
        (["escape", "--noise", "pld,gauss"], "--noise: must be among"),
        (["escape", "--batch-size", "1.5"], "--batch-size: expected integers"),
        (["stationary", "--sigma-h", "1,,2"], "--sigma-h: expected comma-separated"),
        (["escape", "--n-paths", "0"], "n_paths must be >= 1"),
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
