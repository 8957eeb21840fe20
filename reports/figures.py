"""Plotly conventions shared by the reports: one small house template, colours, and the
figure -> HTML fragment step (plotly.js itself is inlined once per page by render.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup

from reports.render import MISSING

SEVERITY_COLORS = {"critical": "#7f1d1d", "high": "#dc2626", "medium": "#f59e0b",
                   "low": "#facc15", "none": "#9ca3af"}
SEVERITIES = ("critical", "high", "medium", "low")
SERIES = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#0891b2", "#db2777", "#65a30d",
          "#b45309")
# 0 = bad (red) .. 1 = good (green), most resolution near the top, where health usually is.
GOOD_SCALE = [[0.0, "#b91c1c"], [0.5, "#f59e0b"], [0.8, "#fde68a"], [0.9, "#bbf7d0"],
              [1.0, "#15803d"]]
METRIC_COLORS = {"precision": "#2563eb", "recall": "#16a34a", "f1": "#9333ea"}

# A small explicit template instead of plotly's default, whose JSON (~10 kB) would be repeated in
# every figure of a page.
_TEMPLATE = go.layout.Template(layout={
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12,
             "color": "#1f2937"},
    "paper_bgcolor": "white", "plot_bgcolor": "white", "colorway": list(SERIES),
    "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
    "xaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zeroline": False,
              "automargin": True},
    "yaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zeroline": False,
              "automargin": True},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0,
               "bgcolor": "rgba(255,255,255,0)"},
    "hoverlabel": {"namelength": -1},
    "title": {"font": {"size": 14}, "x": 0, "xanchor": "left"},
})

_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def styled(fig: go.Figure, height: int = 360, title: str | None = None) -> go.Figure:
    fig.update_layout(template=_TEMPLATE, height=height)
    if title:
        # Legends sit above the plot area (template), so a title needs room above them.
        fig.update_layout(title={"text": title, "y": 0.98, "yanchor": "top"},
                          margin={"t": 80})
    return fig


_TEMPLATE_JSON = _TEMPLATE.to_plotly_json()


def spec(data: list[dict[str, Any]], layout: dict[str, Any], height: int = 360
         ) -> dict[str, Any]:
    """A figure as the plain dict plotly.js draws, in the house template. For figures drawn
    many times a page (the alert report's): building a go.Figure validates every property,
    which was most of drawing them. tests/reports check specs against plotly's schema."""
    return {"data": data, "layout": {"template": _TEMPLATE_JSON, "height": height, **layout}}


def to_html(fig: go.Figure | dict[str, Any]) -> Markup:
    """A figure as a <div class="plotly-graph-div"> plus its drawing script (no plotly.js)."""
    if isinstance(fig, dict):  # a spec: already in plotly.js's terms
        return Markup(pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                  config=_CONFIG, validate=False))
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG))


def thin(frame: pd.DataFrame, max_points: int, keep: np.ndarray | None = None) -> pd.DataFrame:
    """Every n-th row so at most ~max_points remain (plus rows where `keep` is True): a
    plotted series stays light whatever the window's length."""
    if len(frame) <= max_points:
        return frame
    step = int(np.ceil(len(frame) / max_points))
    mask = np.zeros(len(frame), dtype=bool)
    mask[::step] = True
    if keep is not None:
        mask |= keep
    return frame[mask]


def bar_metrics(frame: pd.DataFrame, category: str, metrics: tuple[str, ...], title: str,
                height: int = 340, labels: dict[str, str] | None = None) -> go.Figure:
    """Grouped bars of `metrics` (0..1 values) per `category`."""
    labels = labels or {}
    fig = go.Figure()
    # Values on the bars while they stay legible; hover always has them.
    texts = len(frame) * len(metrics) <= 24
    for metric in metrics:
        values = frame[metric].astype(float)
        fig.add_bar(x=frame[category].map(lambda c: labels.get(c, c)), y=values,
                    name=metric, marker_color=METRIC_COLORS.get(metric),
                    text=[(MISSING if np.isnan(v) else f"{v:.2f}") for v in values] if texts
                    else None, textposition="outside", cliponaxis=False,
                    hovertemplate="%{x}: " + metric + " %{y:.2f}<extra></extra>")
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.12], "tickformat": ".0%"},
                      bargap=0.25)
    return styled(fig, height, title)


def heatmap(z: pd.DataFrame, title: str, colorscale: Any, zmin: float, zmax: float,
            text: pd.DataFrame | None = None, hover: str = "%{y}<br>%{x}<br>%{z}",
            colorbar: dict[str, Any] | None = None, row_height: int = 30,
            min_height: int = 240, customdata: pd.DataFrame | None = None) -> go.Figure:
    """A heatmap of a wide frame (index = rows, columns = x), height from the row count.
    Datetime columns are time bins: cells are drawn over [t, t + bin) on a date axis."""
    x: Any = list(z.columns)
    dates = bool(len(x)) and isinstance(x[0], pd.Timestamp | np.datetime64)
    if dates:
        stamps = pd.DatetimeIndex(x)
        stamps = stamps.tz_convert("UTC").tz_localize(None) if stamps.tz else stamps
        step = (stamps[1] - stamps[0]) if len(stamps) > 1 else pd.Timedelta(hours=1)
        x = stamps + step / 2  # plotly centres a cell on its x
    fig = go.Figure(go.Heatmap(
        z=z.to_numpy(dtype=float), x=x, y=list(z.index), colorscale=colorscale,
        zmin=zmin, zmax=zmax, xgap=1, ygap=1, hovertemplate=hover + "<extra></extra>",
        text=None if text is None else text.to_numpy(),
        customdata=None if customdata is None else customdata.to_numpy(),
        colorbar={"thickness": 14, "len": 1, "y": 0.5, "yanchor": "middle", **(colorbar or {})},
        texttemplate=None if text is None else "%{text}", textfont={"size": 10}))
    fig.update_yaxes(autorange="reversed", type="category", showgrid=False)
    fig.update_xaxes(showgrid=False, tickformat="%H:%M\n%b %d" if dates else None)
    height = max(min_height, 130 + row_height * len(z.index))
    # A fixed right margin holds the colorbar, so heatmaps stacked on a page share an x extent.
    return styled(fig, height, title).update_layout(margin={"t": 45, "r": 110})
