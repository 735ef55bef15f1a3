"""PNG charts for the economics assets' metadata (rendered by the Dagster UI)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to bytes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def daily_spend_by_model(daily: pd.DataFrame) -> bytes:
    """Stacked bars: USD per day, one colour per model."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if daily.empty:
        ax.text(0.5, 0.5, "no model calls yet", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    table = daily.pivot_table(index="day", columns="model", values="cost", aggfunc="sum", fill_value=0.0)
    table.plot(kind="bar", stacked=True, ax=ax, width=0.8)
    ax.set_ylabel("USD")
    ax.set_xlabel("")
    ax.set_title("Daily model spend by model")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return _png(fig)


def margin_per_customer(kpis: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    data = kpis.dropna(subset=["gross_margin"]) if len(kpis) else kpis
    if data.empty:
        ax.text(0.5, 0.5, "no customers with revenue", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    colours = ["tab:red" if m < 0 else "tab:green" for m in data["gross_margin"]]
    ax.bar(data["customer"], data["gross_margin"] * 100, color=colours)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("gross margin %")
    ax.set_title("Gross margin per customer (last 30 days)")
    ax.tick_params(axis="x", labelrotation=30)
    return _png(fig)
