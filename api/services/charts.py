"""QC analytics as files (CSV, SVG/PNG plots) and as SVG for the ``/analytics`` page.

The figures come from ``inspection.analytics.summary``; this module only draws and writes them. Plots use
matplotlib, an optional extra (``pip install 'qcline[analytics]'``): stations do not need it, and without it
the CSV files, the JSON and the page's tables still work.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from inspection.errors import ConfigError, QCError

PLOT_FORMATS = ("svg", "png")


def write_csv(data: dict[str, Any], folder: Path) -> list[Path]:
    """pareto.csv, p_charts.csv, rates.csv and summary.csv in ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        tables: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
            "pareto": (["category", "count", "share", "cumulative"], data["pareto"]),
            "p_charts": (["dimension", "key", "subgroup", "n", "defective", "p", "p_bar", "ucl", "lcl",
                          "out_of_control"],
                         [{**p, "dimension": c["dimension"], "key": c["key"], "p_bar": c["p_bar"]}
                          for c in data["p_charts"] for p in c["points"]]),
            "rates": (["dimension", "key", "total", "passed", "review", "failed", "fail_rate"], data["rates"]),
            "summary": (["figure", "value", "count", "of"], [
                {"figure": "first_pass_yield", "value": data["first_pass_yield"]["value"],
                 "count": data["first_pass_yield"]["passed"], "of": data["first_pass_yield"]["judged"]},
                {"figure": "review_overturn_rate", "value": data["overturn_rate"]["value"],
                 "count": data["overturn_rate"]["false_alarms"], "of": data["overturn_rate"]["reviewed"]}]),
        }
        for name, (columns, rows) in tables.items():
            path = folder / f"{name}.csv"
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            written.append(path)
        return written
    except OSError as e:
        raise QCError(f"cannot write CSV files to {folder}: {e}") from e


def label(text: object) -> str:
    """A name as drawn in a chart: letters, digits, space and ``-_.:`` only. Camera ids come from clients, and
    matplotlib copies drawn text into its SVG (comments, ids), which the page inlines."""
    return "".join(c if c.isalnum() or c in " -_.:" else "?" for c in str(text))[:64]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files and server-side SVG: never a display
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("plots need matplotlib: pip install 'qcline[analytics]' (CSV and JSON work without)") from e
    return plt


def figures(data: dict[str, Any]) -> dict[str, Any]:
    """Name -> matplotlib figure: the Pareto chart and one p-chart per (dimension, key)."""
    plt = _pyplot()
    out: dict[str, Any] = {}
    if data["pareto"]:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = [label(b["category"]) for b in data["pareto"]]
        ax.bar(names, [b["count"] for b in data["pareto"]], color="#4a6fa5")
        ax.set_ylabel("failing findings")
        twin = ax.twinx()
        twin.plot(names, [100 * b["cumulative"] for b in data["pareto"]], color="#b00020", marker="o")
        twin.set_ylim(0, 105)
        twin.set_ylabel("cumulative %")
        ax.set_title("Pareto of defect classes")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        out["pareto"] = fig
    for chart in data["p_charts"]:
        points = chart["points"]
        fig, ax = plt.subplots(figsize=(7, 3))
        x = [p["subgroup"][:16].replace("T", " ") for p in points]
        ax.plot(x, [p["p"] for p in points], marker="o", color="#222")
        ax.plot(x, [p["ucl"] for p in points], drawstyle="steps-mid", marker="_", markersize=14, color="#b00020",
                linestyle="--", label="UCL / LCL (3 sigma)")
        ax.plot(x, [p["lcl"] for p in points], drawstyle="steps-mid", marker="_", markersize=14, color="#b00020",
                linestyle="--")
        ax.axhline(chart["p_bar"], color="#188038", label=f"p̄ {chart['p_bar']:.3f}")
        bad = [(xi, p["p"]) for xi, p in zip(x, points, strict=True) if p["out_of_control"]]
        if bad:
            ax.scatter([b[0] for b in bad], [b[1] for b in bad], color="#b00020", zorder=3, s=60,
                       label="out of control")
        ax.set_title(f"p-chart: defect rate per {chart['dimension']} {label(chart['key']) or '-'}")
        ax.set_ylabel("fraction defective")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out[f"p_chart_{chart['dimension']}_{chart['key'] or 'unknown'}"] = fig
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


def write_plots(data: dict[str, Any], folder: Path) -> list[Path]:
    """Every figure as SVG and PNG in ``folder``."""
    plt = _pyplot()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, fig in figures(data).items():
            for fmt in PLOT_FORMATS:
                path = folder / f"{_safe(name)}.{fmt}"
                fig.savefig(path, format=fmt, dpi=100)
                written.append(path)
            plt.close(fig)
        return written
    except OSError as e:
        raise QCError(f"cannot write plots to {folder}: {e}") from e


def svgs(data: dict[str, Any]) -> dict[str, str] | None:
    """The figures as inline SVG text for the page, or ``None`` when matplotlib is not installed."""
    try:
        plt = _pyplot()
    except ConfigError:
        return None
    rendered = {}
    for name, fig in figures(data).items():
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        plt.close(fig)
        text = buffer.getvalue()
        rendered[name] = text[text.index("<svg"):]  # drop the XML prolog and doctype
    return rendered
