"""Saving the report's plots: object-oriented matplotlib on the Agg canvas (no global backend
switch), written atomically."""

from thyroid import io_utils


def save_figure(fig, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
