"""The report's figures: one function each, from the rows of its SQL query.

Every figure is titled, has units on its axes, and says SYNTHETIC DATA in its
title when any row it shows came from a synthetic capture.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from xpipe.hashing import PAGES_PER_MIB  # noqa: E402
from xpipe.report import FIGURE_NAMES  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")

POLICY_ORDER = ["none", "zero", "scan", "dsa", "oracle"]


def _title(text: str, df: pd.DataFrame) -> str:
    return f"{text}\nSYNTHETIC DATA (generated, not recorded)" if df["synthetic"].any() else text


def _save(fig, out_png: str | Path) -> None:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    fig.savefig(out_png.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)


def _run_label(row) -> str:
    if row["policy"] == "scan":
        return f"scan {row['scan_pages_per_s']}/s"
    if row["policy"] == "dsa":
        zero = " + zero page" if row["admit_zero"] else ""
        return f"dsa {row['eviction'].upper()} {row['area_pages'] // PAGES_PER_MIB} MiB{zero}"
    return row["policy"]


def savings(df: pd.DataFrame, out: str | Path) -> None:
    df = df.assign(label=df.apply(_run_label, axis=1))
    order = sorted(df["label"].unique(), key=lambda s: (POLICY_ORDER.index(s.split()[0]), s))
    fig, ax = plt.subplots(figsize=(10, 5))
    sns.barplot(df, x="mix", y="savings_pct", hue="label", hue_order=order, ax=ax)
    ax.set(xlabel="mix of domains", ylabel="memory saved vs no sharing (%)",
           title=_title("Memory savings per policy (mean footprint over snapshots)", df))
    ax.legend(title="policy", bbox_to_anchor=(1.01, 1), loc="upper left")
    _save(fig, out)


def footprint_time(df: pd.DataFrame, out: str | Path) -> None:
    df = df.sort_values("policy", key=lambda s: s.map(POLICY_ORDER.index))
    g = sns.relplot(df, x="time_s", y="footprint_mib", hue="run", style="run", col="mix", kind="line",
                    markers=True, dashes=True, col_wrap=min(4, df["mix"].nunique()), height=3.5,
                    facet_kws={"sharey": False})
    sns.move_legend(g, "upper left", bbox_to_anchor=(1.0, 0.9))
    g.set_axis_labels("guest time (s)", "host footprint (MiB)")
    g.set_titles("mix: {col_name}")
    g.legend.set_title("policy (lines that coincide overlap)")
    g.figure.suptitle(_title("Host memory footprint over time", df), y=1.05)
    _save(g.figure, out)


def area_size(df: pd.DataFrame, out: str | Path) -> None:
    df = df.assign(area=df["area_mib"], eviction=df["eviction"].str.upper(),
                   zero=df["admit_zero"].map({True: "admitted", False: "not admitted"}))
    mixes = list(df["mix"].unique())
    fig, axes = plt.subplots(2, len(mixes), figsize=(5 * len(mixes), 8), squeeze=False)
    fig.subplots_adjust(wspace=0.35, hspace=0.3)
    style = dict(hue="eviction", style="zero", markers=True, hue_order=["LRU", "LFU", "FIFO"],
                 style_order=["not admitted", "admitted"])
    for j, mix in enumerate(mixes):
        d = df[df["mix"] == mix]
        ax = axes[0][j]
        sns.lineplot(d, x="area", y="io_reduction_pct", ax=ax, legend=j == 0, **style)
        ax.axhline(d["io_ideal_pct"].iloc[0], ls="--", color="grey", label="ideal (any earlier read)")
        ax.set(xscale="log", title=mix, xlabel="sharing area (MiB)",
               ylabel="reads avoided = area hit ratio (%)")
        ax = axes[1][j]
        sns.lineplot(d, x="area", y="savings_pct", ax=ax, legend=False, **style)
        ax.axhline(d["oracle_savings_pct"].iloc[0], ls="--", color="grey")
        ax.set(xscale="log", xlabel="sharing area (MiB)", ylabel="memory saved vs no sharing (%)")
    axes[0][0].legend(title="grey dashed: ideal / oracle", fontsize="small", loc="upper left",
                      bbox_to_anchor=(0, -1.6), ncol=4)
    fig.suptitle(_title("Designated sharing area: I/O and memory against area size "
                        "(eviction rule; zero page admitted or not)", df))
    _save(fig, out)


def page_types(df: pd.DataFrame, out: str | Path) -> None:
    df = df.assign(bar=df["mix"] + "\n" + df.apply(_run_label, axis=1))
    pivot = df.pivot_table(index=["bar", "scope"], columns="page_type", values="saved_mib",
                           aggfunc="sum", fill_value=0, observed=True)
    scopes = ["inter", "intra"]
    # own y scales: intra-domain sharing is often two orders of magnitude smaller
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    colors = dict(zip(sorted(df["page_type"].unique()), sns.color_palette("tab10")))
    for ax, scope in zip(axes, scopes):
        part = pivot.xs(scope, level="scope") if scope in pivot.index.get_level_values("scope") else None
        if part is None or part.empty:
            ax.set_title(f"{scope}-domain sharing: no pages saved")
            ax.set(xlabel="mix / policy", ylabel="pages saved (MiB)")
            continue
        part.plot(kind="bar", stacked=True, ax=ax, color=[colors[c] for c in part.columns], rot=45)
        ax.set_xticks(ax.get_xticks(), ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.set(title=f"{scope}-domain sharing", xlabel="mix / policy", ylabel="pages saved (MiB)")
        ax.legend(title="page type", fontsize="small")
    fig.suptitle(_title("What gets shared: pages saved by type (mean over snapshots)", df))
    _save(fig, out)


def domains_per_host(df: pd.DataFrame, out: str | Path) -> None:
    mixes = list(df["mix"].unique())
    fig, axes = plt.subplots(1, len(mixes), figsize=(5.5 * len(mixes), 4.5), squeeze=False)
    fig.subplots_adjust(wspace=0.3)
    for ax, mix in zip(axes[0], mixes):
        d = df[df["mix"] == mix]
        one_host = d[d["host_mib"] == d["host_mib"].min()]
        sns.lineplot(one_host, x="domains", y="peak_mib", hue="run", style="run", markers=True, ax=ax)
        for h in sorted(d["host_mib"].unique()):
            ax.axhline(h, ls=":", color="grey")
            ax.annotate(f"host {int(h)} MiB", (1, h), textcoords="offset points", xytext=(2, -12),
                        fontsize="small")
        fit = d[d["host_mib"] == d["host_mib"].min()].groupby("run")["domains_per_host"].first()
        for run, k in fit.items():
            row = one_host[(one_host["run"] == run) & (one_host["domains"] == k)]
            if len(row):
                ax.plot(k, row["peak_mib"].iloc[0], marker="*", ms=14, color="black")
        ax.set(title=mix, xlabel="domains on the host (mix order)", ylabel="peak host footprint (MiB)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(title="policy (star: domains per host)", fontsize="small",
                  loc="upper left", bbox_to_anchor=(0, -0.18), ncol=2)
    fig.suptitle(_title("Footprint against the number of domains", df), y=1.08)
    _save(fig, out)


def snapshot_interval(df: pd.DataFrame, out: str | Path) -> None:
    mixes = list(df["mix"].unique())
    fig, axes = plt.subplots(2, len(mixes), figsize=(5 * len(mixes), 7), squeeze=False)
    fig.subplots_adjust(wspace=0.3, hspace=0.3)
    for j, mix in enumerate(mixes):
        d = df[df["mix"] == mix]
        sns.lineplot(d, x="snapshot_every", y="savings_pct", hue="base_run", style="base_run",
                     markers=True, ax=axes[0][j], legend=j == len(mixes) - 1)
        axes[0][j].set(title=mix, xlabel="", ylabel="memory saved vs no sharing (%)")
        sns.lineplot(d, x="snapshot_every", y="cow_breaks", hue="base_run", style="base_run",
                     markers=True, ax=axes[1][j], legend=False)
        axes[1][j].set(xlabel="snapshots replayed: every k-th", ylabel="COW breaks (count)")
        for ax in (axes[0][j], axes[1][j]):
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if len(mixes):
        axes[0][-1].legend(title="run", fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(_title("How results move with the snapshot interval", df))
    _save(fig, out)


def no_data(name: str, out: str | Path) -> None:
    """A figure that says why it is empty (e.g. the sweep ran no dsa, or capacity: false)."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{name}: no rows in this sweep\n(its policies or capacity were not run)",
            ha="center", va="center")
    _save(fig, out)


FIGURES = {f.__name__: f for f in (savings, footprint_time, area_size, page_types, domains_per_host,
                                   snapshot_interval)}
assert tuple(FIGURES) == FIGURE_NAMES, "xpipe.report.FIGURE_NAMES and the figure functions differ"


def draw(name: str, rows: pd.DataFrame, out: str | Path) -> None:
    if rows.empty:
        no_data(name, out)
    else:
        FIGURES[name](rows, out)
