"""Seeing what a run gets wrong: terminal score tables, the HTML report, run comparison, error folders and
the leaderboard of runs.

    terminal.py   rich tables of a run's scores (`podium train`, the demo)
    rundata.py    a run folder loaded once: config, scores, OOF, curves, timings, images
    analysis.py   the numbers: confusion matrix, per-class scores, confused pairs, losses, calibration
    plots.py      matplotlib figures and images as data URIs
    gradcam.py    Grad-CAM heatmaps from a fold's model
    html.py       self-contained HTML building blocks
    build.py      `podium report RUN`
    compare.py    `podium report --compare A B`
    folders.py    `podium errors RUN DIR`
    suspects.py   `podium errors RUN --suspect`: likely mislabels, as a CSV for data.exclude
    runs.py       `podium runs [OUTPUT_DIR]`

Only the terminal tables are imported here, so `podium train` does not pay for matplotlib.
"""

from podium.report.terminal import SCORES, metrics_table, print_metrics

__all__ = ["SCORES", "metrics_table", "print_metrics"]
