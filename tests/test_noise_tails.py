"""Tail statistics of gradient noise: the estimator logic on constructed samples, and the
real-network measurement at tiny size (docs/theory.md §6.6)."""

import numpy as np
import pytest
from scipy import stats as sps

from sdn.experiments.noise_tails import (
    NoiseTailsConfig,
    NoiseTailsResult,
    _tail_row,
    run_noise_tails,
)


def test_gaussian_coordinates_of_mixed_scales_look_heavy_only_when_pooled():
    rng = np.random.default_rng(0)
    scales = np.exp(rng.normal(0.0, 1.5, size=64))
    x = rng.normal(size=(4096, 64)) * scales
    row = _tail_row("noise", 1, x, 0.05)
    assert row["pooled_high"] < 2.0  # the scale mixture reads as heavy-tailed
    assert abs(row["standardized_alpha"] - 2.0) < 4 * row["standardized_se"]
    assert abs(row["median_coordinate_alpha"] - 2.0) < 0.1
    # each coordinate is Gaussian: rejections at level 5% are Binomial(64, 0.05)
    assert row["frac_non_gaussian"] * 64 < 64 * 0.05 + 4 * np.sqrt(64 * 0.05 * 0.95)
    result = NoiseTailsResult(NoiseTailsConfig(), rows=[row])
    assert "structure picture" in result.verdict()


def test_stable_coordinates_are_heavy_per_coordinate():
    x = sps.levy_stable.rvs(1.3, 0.0, size=(4096, 32), random_state=1)
    row = _tail_row("noise", 1, x, 0.05)
    assert row["frac_heavy"] > 0.9 and row["frac_non_gaussian"] > 0.9
    assert abs(row["pooled_alpha"] - 1.3) < 4 * row["pooled_se"]
    assert "heavy-tail picture" in NoiseTailsResult(NoiseTailsConfig(), rows=[row]).verdict()


@pytest.fixture(scope="module")
def tiny():
    cfg = NoiseTailsConfig(
        hidden=(8,),
        steps=200,
        noise_batch_sizes=(1, 64),
        n_draws=1024,
        n_coordinates=32,
        n_chains=256,
        chain_steps=50,
    )
    return run_noise_tails(cfg)


def test_real_noise_grows_gaussian_with_the_batch(tiny):
    rows = {(r["quantity"], r["batch_size"]): r for r in tiny.rows}
    small, large = rows["noise", 1], rows["noise", 64]
    # averaging 64 per-sample gradients moves the index towards the Gaussian 2
    gap = large["pooled_alpha"] - small["pooled_alpha"]
    assert gap > 4 * np.hypot(large["pooled_se"], small["pooled_se"])
    assert large["median_coordinate_alpha"] > small["median_coordinate_alpha"]
    assert ("iterates", 8) in rows
    # the branch of the verdict at each batch size: single-sample noise is heavy-tailed
    # coordinate by coordinate; by b = 64 neither the pooled sample nor most coordinates are
    cfg = tiny.config
    assert "the heavy-tail picture" in NoiseTailsResult(cfg, rows=[small]).verdict()
    assert NoiseTailsResult(cfg, rows=[large]).verdict() == (
        "neither pooled nor per-coordinate estimates below 2: Gaussian noise"
    )
    assert tiny.verdict().startswith("most coordinates heavy-tailed at 1/2 batch sizes")
    assert len(tiny.table().splitlines()) == 1 + len(tiny.rows)


def test_report_section_judges_the_pooled_index(tiny, tmp_path, monkeypatch):
    from sdn import report
    from sdn.experiments import noise_tails

    monkeypatch.setattr(noise_tails, "run_noise_tails", lambda cfg: tiny)
    sec = report.noise_tails_section(tmp_path, "quick", tiny.config)
    assert (tmp_path / "noise_tails.csv").read_text().count("\n") == 1 + len(tiny.rows)
    assert (tmp_path / "noise_tails.png").stat().st_size > 0
    pooled, per_coordinate, iterates = sec.claims
    # single-sample gradients of a ReLU network on digits are far from Gaussian
    assert pooled.verdict == report.SUPPORTED, pooled
    assert "b = 1: α = 1." in pooled.measured and "b = 64" in pooled.measured
    assert per_coordinate.reason == tiny.verdict()
    assert iterates.claim.startswith("SGD's iterates")
    text = report.render([sec], "quick", 1.0)
    assert "## §6.2 Tail indices of real gradient noise" in text
