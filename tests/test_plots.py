"""Figures never switch the matplotlib backend of the user's session."""

import matplotlib
import numpy as np

from sdn.experiments.demo import DemoResult, plot_demo


def test_plotting_keeps_the_users_backend_and_writes_the_png(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # any backend other than Agg stands for a user's notebook
    try:
        rng = np.random.default_rng(0)
        result = DemoResult(
            quantiles=np.array([0.5, 0.99]),
            pld=rng.standard_t(5, 2000) * 0.2,
            langevin=rng.normal(0, 0.2, 2000),
            pld_predicted=np.zeros(2),
            langevin_predicted=np.zeros(2),
            df=5.0,
            scale=0.2,
            gaussian_sd=0.2,
        )
        plot_demo(result, tmp_path / "demo.png")
        assert matplotlib.get_backend() == "pdf"
        assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)
