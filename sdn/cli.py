"""The `sdn` command: thin argument parsing over the library.

Commands: `sdn reproduce`, `sdn demo`, `sdn train`, `sdn sweep CONFIG.toml`, and
`sdn escape` / `sdn stationary`, which run the built-in sweeps of `sdn.sweep` over comma-separated
parameter values (a grid).
"""

from __future__ import annotations

import argparse
import itertools
import linecache
import math
import sys
import tempfile
import traceback
from pathlib import Path


class UserError(Exception):
    """A mistake in what the user typed: printed as one line, exit code 2."""


def _raised_by_sdn_check(err: BaseException) -> bool:
    """True if `err` was raised by a `raise` statement in sdn's own code.

    sdn's public functions check their arguments and raise ValueError/TypeError naming
    the argument: a message for the user. The same types raised inside JAX, NumPy or
    Python itself (a bad shape, `int("x")` deep in a helper) mean a bug in sdn, and keep
    their traceback.
    """
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    package = str(Path(__file__).resolve().parent)
    if not str(Path(last.filename).resolve()).startswith(package):
        return False
    return linecache.getline(last.filename, last.lineno).lstrip().startswith("raise")


def _is_user_error(err: BaseException) -> bool:
    if isinstance(err, UserError):
        return True
    if isinstance(err, FileNotFoundError | PermissionError | NotADirectoryError):
        return True
    return isinstance(err, ValueError | TypeError) and _raised_by_sdn_check(err)


def _writable_folder(path: str | Path, flag: str) -> Path:
    """Create `path` if needed and check that a file can be written there, before any work."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UserError(f"{flag}: cannot write to {str(path)!r}: {err.strerror or err}") from None
    return out


def _check_number(flag: str, value, *, low=None, low_open=True, integer=False, high=None):
    """Raise UserError naming `flag` unless `value` is finite and inside its range."""
    if value is None:
        return
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high
        if not ok:
            if low is None:
                want = "finite"
            elif high is not None:
                want = f"in ({low:g}, {high:g})"
            elif integer:
                want = f"an integer >= {low:g}"
            else:
                want = "positive" if low_open and low == 0 else f">= {low:g}"
            raise UserError(f"{flag} must be {want}, got {v:g}")


def _demo(args: argparse.Namespace) -> int:
    from sdn.experiments.demo import plot_demo, run_demo

    _check_number("--paths", args.paths, low=1, low_open=False, integer=True)
    out = _writable_folder(args.out, "--out")
    result = run_demo(n_paths=args.paths, seed=args.seed)
    print(
        f"Stationary law of x = w − w* on L = x²/2, η = 0.1, b = 1, σ_g = 1, σ_H = 5 "
        f"({args.paths} paths each)\n"
        f"PLD predicted: Student-t with ν = {result.df:.3f}, scale {result.scale:.4f}; "
        f"Langevin predicted: Gaussian, sd {result.gaussian_sd:.4f}\n"
    )
    print(result.table())
    png = out / "demo_tails.png"
    plot_demo(result, png)
    print(f"\nwrote {png}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from sdn.report import SECTIONS, reproduce

    sections = None
    if args.only:
        sections = [t.strip() for t in args.only.split(",") if t.strip()]
        unknown = [t for t in sections if t not in SECTIONS]
        if unknown:
            raise UserError(f"--only: unknown section {unknown[0]!r}; choose from {list(SECTIONS)}")
    _writable_folder(args.out, "--out")
    report = reproduce(args.out, mode="full" if args.full else "quick", sections=sections)
    print(f"report: {report}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import csv

    import jax
    import optax

    from sdn import noise, optim
    from sdn.train import MLP, load_digits, load_mnist1d, teacher_student, train

    loaders = {"mnist1d": load_mnist1d, "digits": load_digits, "teacher": teacher_student}
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        raise UserError(
            f"--hidden: expected comma-separated integers, got {args.hidden!r}"
        ) from None
    _check_number("--hidden", list(hidden), low=1, low_open=False, integer=True)
    for flag, value in [("--batch", args.batch), ("--steps", args.steps), ("--seeds", args.seeds),
                        ("--small-batch", args.small_batch)]:  # fmt: skip
        _check_number(flag, value, low=1, low_open=False, integer=True)
    _check_number("--lr", args.lr, low=0)
    _check_number("--alpha-g", args.alpha_g, low=0, low_open=False)
    _check_number("--alpha-h", args.alpha_h, low=0, low_open=False)
    if args.noise == "fluctuation" and args.small_batch >= args.batch:
        raise UserError(
            f"--small-batch must be below --batch, got {args.small_batch} >= {args.batch}"
        )
    if args.out:
        _writable_folder(args.out, "--out")
    data = loaders[args.data]()
    n_in = int(data.x_train.reshape(len(data.x_train), -1).shape[1])
    lr, extra, micro = args.lr, (), 1
    if args.noise == "none":
        tx = optax.sgd(lr)
    elif args.noise in ("power_law", "isotropic"):
        alpha_h = args.alpha_h if args.noise == "power_law" else 0.0

        def tx(key):
            return optim.power_law_sgd(key, lr, alpha_g=args.alpha_g, alpha_h=alpha_h)
    else:  # fluctuation: k (g_A − g_B)/2 with the noise a batch of --small-batch would have
        k2 = args.batch * (1 / args.small_batch - 1 / args.batch)
        extra, micro = ("grad_fluctuation",), 2

        def tx(key):
            return optax.chain(
                optim.add_state_dependent_noise(key, noise.fluctuation(k2)),
                optax.sgd(lr),
            )

    res = train(
        lambda rngs: MLP(n_in, hidden, data.n_classes, rngs=rngs),
        data,
        tx,
        steps=args.steps,
        batch_size=args.batch,
        seeds=args.seeds,
        microbatches=micro,
        extra_args=extra,
        progress=True,
    )
    print(
        f"{args.data}, MLP {hidden}, batch {args.batch}, lr {lr}, noise {args.noise}, "
        f"{args.steps} steps, {jax.device_count()} device(s)"
    )
    print(f"{'seed':>4} {'test acc %':>10} {'train loss':>10}")
    for i, seed in enumerate(res.seeds):
        print(f"{seed:>4} {100 * res.test_accuracy[i, -1]:10.2f} {res.train_loss[i, -1]:10.4f}")
    acc = 100 * res.test_accuracy[:, -1]
    print(f"mean {acc.mean():.2f} ± {acc.std():.2f} % over {len(res.seeds)} seeds")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "train_history.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["seed", "step", "train_loss", "test_accuracy"])
            for i, seed in enumerate(res.seeds):
                for j, step in enumerate(res.steps):
                    w.writerow([seed, int(step), res.train_loss[i, j], res.test_accuracy[i, j]])
        print(f"wrote {out / 'train_history.csv'}")
    return 0


def _interrupted(command: str, stop: KeyboardInterrupt) -> str:
    """The one line Ctrl-C prints: what a sweep has saved, and how to go on."""
    saved = getattr(stop, "saved", None)  # sdn.sweep.SweepInterrupted says what is saved
    if saved is None:
        return f"sdn {command}: interrupted"
    where = f" in {stop.out}" if stop.out is not None else " (no --out folder: nothing kept)"
    resume = "; rerun the same command to resume" if stop.out is not None else ""
    return f"sdn {command}: interrupted; {saved} of {stop.total} points are saved{where}{resume}"


def _run_config(args: argparse.Namespace) -> int:
    from sdn.sweep import load_config

    _check_run_options(args)
    try:
        config = load_config(args.config)
    except (ValueError, TypeError, OSError) as err:
        raise UserError(f"{args.config}: {err}") from None
    kwargs = {"progress": args.progress}
    if args.chunk_size is not None:
        kwargs["chunk_size"] = args.chunk_size
    out = args.out if args.out is not None else config.out
    if out is None:
        out = Path("sdn-out") / Path(args.config).stem
    result = config.run(out=out, **kwargs)
    if result.n_points <= args.show:
        print(result.format(max_rows=args.show))
    print(result.summary())
    return 0


def _parse_axis(option: str, text: str, default, choices) -> list:
    """`"0.5,1,2"` -> `[0.5, 1.0, 2.0]` (ints for integer parameters, names for choices)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(items):
        raise UserError(f"{option}: expected comma-separated values, got {text!r}")
    if choices:
        bad = [t for t in items if t not in choices]
        if bad:
            raise UserError(f"{option}: must be among {list(choices)}, got {bad[0]!r}")
        return items
    kind = int if isinstance(default, int) else float
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise UserError(
            f"{option}: expected {'integers' if kind is int else 'numbers'}, got {text!r}"
        ) from None


# The domain of each built-in parameter and setting: (low, low is excluded, integer).
_DOMAINS = {
    "learning_rate": (0, True, False),
    "batch_size": (1, False, True),
    "curvature": (0, True, False),
    "sigma_g": (0, True, False),
    "sigma_h": (0, False, False),
    "wall": (0, True, False),
    "x0": (None, True, False),
    "n_paths": (1, False, True),
    "dt": (0, True, False),
    "max_steps": (1, False, True),
    "n_steps": (1, False, True),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_builtin(command: str, params: dict, settings: dict) -> None:
    """Every value of a built-in sweep inside its domain, before any work."""
    for name, value in [*params.items(), *settings.items()]:
        if name in _DOMAINS:
            low, low_open, integer = _DOMAINS[name]
            _check_number(_flag(name), value, low=low, low_open=low_open, integer=integer)
    if "quantiles" in settings:
        _check_number("--quantiles", list(settings["quantiles"]), low=0, high=1)
    if "increments" in settings:
        from sdn.noise import INCREMENTS

        if settings["increments"] not in INCREMENTS:
            raise UserError(
                f"--increments must be one of {list(INCREMENTS)}, got {settings['increments']!r}"
            )
    if command == "escape":
        walls = params["wall"] if isinstance(params["wall"], list) else [params["wall"]]
        starts = params["x0"] if isinstance(params["x0"], list) else [params["x0"]]
        for wall, x0 in itertools.product(walls, starts):
            if not abs(x0) < wall:
                raise UserError(
                    f"--x0 must lie inside (−wall, wall), got --x0 {x0:g} with --wall {wall:g}"
                )


def _check_run_options(args: argparse.Namespace) -> None:
    _check_number("--chunk-size", args.chunk_size, low=1, low_open=False, integer=True)
    _check_number("--show", args.show, low=0, low_open=False, integer=True)


def _builtin(args: argparse.Namespace) -> int:
    from sdn import sweep

    spec = sweep.BUILTIN[args.command]
    axes = {}
    for name, default in spec.defaults.items():
        text = getattr(args, name)
        if text is not None:
            option = "--" + name.replace("_", "-")
            axes[name] = _parse_axis(option, text, default, spec.choices.get(name))
    settings = {}
    for name, default in spec.settings.items():
        value = getattr(args, name)
        if value is not None:
            if isinstance(default, tuple):
                value = tuple(_parse_axis("--" + name.replace("_", "-"), value, 0.0, None))
            settings[name] = value
    _check_builtin(args.command, {**spec.defaults, **axes}, {**spec.settings, **settings})
    _check_run_options(args)
    if args.out is not None:
        _writable_folder(args.out, "--out")
    if not axes:
        axes = {"curvature": [spec.defaults["curvature"]]}
    result = sweep.run(
        spec.bind(**settings),
        sweep.grid(**axes),
        seed=args.seed,
        chunk_size=args.chunk_size,
        out=args.out,
        progress=args.progress,
    )
    print(result.format(max_rows=args.show))
    print(result.summary())
    return 0


def _add_builtin(sub, name: str, help_: str) -> None:
    from sdn.sweep import BUILTIN

    spec = BUILTIN[name]
    cmd = sub.add_parser(
        name,
        help=help_,
        description=f"The built-in `{name}` sweep: {spec.doc}. Parameters take one value or "
        "comma-separated values; several lists make a grid (their Cartesian product).",
    )
    params = cmd.add_argument_group("parameters (comma-separated values make a grid axis)")
    for pname, default in spec.defaults.items():
        choices = spec.choices.get(pname)
        extra = f"; one or more of {','.join(choices)}" if choices else ""
        params.add_argument(
            "--" + pname.replace("_", "-"),
            dest=pname,
            metavar="VALUES",
            help=f"default {default}{extra}",
        )
    settings = cmd.add_argument_group("settings (the same for every point)")
    for sname, default in spec.settings.items():
        flag = "--" + sname.replace("_", "-")
        if isinstance(default, bool):
            settings.add_argument(
                flag,
                dest=sname,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"default {default}",
            )
        elif isinstance(default, tuple):
            settings.add_argument(
                flag, dest=sname, metavar="P,P,...", help=f"default {','.join(map(str, default))}"
            )
        else:
            settings.add_argument(
                flag,
                dest=sname,
                type=type(default),
                metavar=type(default).__name__.upper(),
                help=f"default {default}",
            )
    _add_run_options(cmd, chunk_default=16)
    cmd.add_argument(
        "--seed", type=int, default=0, help="point i uses fold_in(key(seed), i) (default 0)"
    )
    cmd.add_argument("--out", default=None, help="folder for results.csv (default: print only)")
    cmd.set_defaults(func=_builtin)


def _add_run_options(cmd: argparse.ArgumentParser, chunk_default: int | None) -> None:
    cmd.add_argument(
        "--chunk-size",
        type=int,
        default=chunk_default,
        help="points per compiled chunk"
        + (f" (default {chunk_default})" if chunk_default else " (default: the config's)"),
    )
    cmd.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over chunks (default: when there are several)",
    )
    cmd.add_argument(
        "--show", type=int, default=40, help="print at most this many points (default 40)"
    )


# Long on purpose: one flat declaration per subcommand, read top to bottom like `sdn --help`.
def build_parser() -> argparse.ArgumentParser:
    from sdn import __version__

    parser = argparse.ArgumentParser(
        prog="sdn", description="State-dependent gradient noise: simulate, measure, reproduce."
    )
    parser.add_argument("--version", action="version", version=f"sdn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="PLD vs Langevin ensembles: measured vs predicted tail quantiles, and a PNG",
        description="Simulate SGD's SDE on L = x²/2 with power-law (PLD) and constant "
        "(Langevin) noise, print measured tail quantiles beside the Student-t and Gaussian "
        "laws of docs/theory.md §3, and write OUT/demo_tails.png.",
    )
    demo.add_argument(
        "--paths", type=int, default=20_000, help="paths per ensemble (default 20000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="sdn-out", help="folder for the figure (default sdn-out)")
    demo.set_defaults(func=_demo)

    rep = sub.add_parser(
        "reproduce",
        help="run the measurements of docs/theory.md §6: figures, CSV and report.md",
        description="Reproduce the paper's measurements (covariance, heavy tails, escape "
        "times, large-batch training) and write each figure, the CSV behind it, and "
        "report.md with every measured number beside its theoretical value.",
    )
    size = rep.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="CPU sizes, minutes on 2 cores (the default)"
    )
    size.add_argument("--full", action="store_true", help="the sizes a GPU affords")
    rep.add_argument("--out", default="sdn-out", help="output folder (default sdn-out)")
    rep.add_argument("--only", default=None, help="comma-separated sections to run (default: all)")
    rep.set_defaults(func=_reproduce)

    tr = sub.add_parser(
        "train",
        help="train an MLP for several seeds at once, with or without added gradient noise",
        description="Train K seeds of a ReLU MLP in one vmapped program with SGD, or SGD "
        "plus the noise of sdn.optim (power-law, isotropic, or the structured fluctuation "
        "k(g_A − g_B)/2 sized for a batch of --small-batch).",
    )
    tr.add_argument(
        "--data",
        choices=("mnist1d", "digits", "teacher"),
        default="mnist1d",
        help="data set (default mnist1d)",
    )
    tr.add_argument(
        "--hidden", default="128,128", help="hidden widths, comma-separated (default 128,128)"
    )
    tr.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    tr.add_argument("--steps", type=int, default=1000, help="SGD steps (default 1000)")
    tr.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    tr.add_argument("--seeds", type=int, default=3, help="seeds trained at once (default 3)")
    tr.add_argument(
        "--noise",
        choices=("none", "power_law", "isotropic", "fluctuation"),
        default="none",
        help="noise added to the gradient (default none)",
    )
    tr.add_argument(
        "--alpha-g", "--sigma-g", dest="alpha_g", type=float, default=1e-4,
        help="α_g, the added noise's variance at the anchor (default 1e-4; --sigma-g: "
        "former name)",
    )  # fmt: skip
    tr.add_argument(
        "--alpha-h", "--sigma-h", dest="alpha_h", type=float, default=1.0,
        help="α_H of the added power-law noise (default 1.0; --sigma-h: former name)",
    )  # fmt: skip
    tr.add_argument(
        "--small-batch",
        type=int,
        default=32,
        help="the batch whose noise fluctuation imitates (default 32)",
    )
    tr.add_argument(
        "--out", default=None, help="folder for train_history.csv (default: print only)"
    )
    tr.set_defaults(func=_train)

    sweep = sub.add_parser(
        "sweep",
        help="run a sweep from a TOML config (resumable)",
        description="Run the sweep that CONFIG.toml describes (see examples/escape_sweep.toml). "
        "Results go to OUT/results.csv (one row per point and statistic) with a manifest; "
        "rerunning into the same folder resumes where a stopped run left off.",
    )
    sweep.add_argument("config", help="the sweep's TOML file")
    sweep.add_argument(
        "--out",
        default=None,
        help="results folder (default: the config's sweep.out, else sdn-out/<config name>)",
    )
    _add_run_options(sweep, chunk_default=None)
    sweep.set_defaults(func=_run_config)

    _add_builtin(sub, "escape", "mean escape time from a walled quadratic basin, over a grid")
    _add_builtin(sub, "stationary", "stationary quantiles of SGD's SDE on a quadratic, over a grid")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `sdn` command; user errors print one line and return 2, bugs raise."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as stop:  # one line, not a traceback; exit code 128 + SIGINT
        print(_interrupted(args.command, stop), file=sys.stderr)
        return 130
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"sdn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
