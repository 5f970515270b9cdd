"""The report's figures: one function each, from the rows of its query
(workflow/sql/figures/NAME.sql), with its caption in workflow/report/figures/NAME.rst.

Every figure is titled, has units on its axes, says SYNTHETIC DATA in its title
when any row it shows came from a synthetic capture, and draws each policy in
its registry colour (its runs in shades of it), in the registry's order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from xpipe.pagetypes import PAGE_TYPES  # noqa: E402
from xpipe.sim.area import EVICTIONS  # noqa: E402
from xpipe.sim.policies import REGISTRY  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")

#: name -> (draw function, what the figure needs when its query returns no rows, whether it
#: draws panels per mix: the slower ones, drawn first so that parallel drawing ends together)
FIGURES: dict[str, tuple[Callable[[pd.DataFrame, Path], None], str, bool]] = {}
#: page types in one colour each, in every figure
TYPE_COLOURS = dict(zip(PAGE_TYPES, sns.color_palette("tab10", len(PAGE_TYPES))))


def figure(needs: str, per_mix: bool = False):
    def register(fn):
        FIGURES[fn.__name__] = (fn, needs, per_mix)
        return fn

    return register


def _title(text: str, df: pd.DataFrame) -> str:
    """``text``, and which of the data shown is SYNTHETIC: all of it, or the mixes named."""
    if not df["synthetic"].any():
        return text
    if df["synthetic"].all() or "mix" not in df:
        return f"{text}\nSYNTHETIC DATA (generated, not recorded)"
    mixes = ", ".join(sorted(df.loc[df["synthetic"], "mix"].unique()))
    return f"{text}\nSYNTHETIC DATA in mix {mixes} (generated, not recorded)"


def _save(fig, out_png: str | Path) -> None:
    """PNG and SVG, cropped to what is drawn: the box is measured once for both (each
    ``bbox_inches="tight"`` would lay out every text again)."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)
    fig.savefig(out_png, dpi=110, bbox_inches=box)
    fig.savefig(out_png.with_suffix(".svg"), bbox_inches=box)
    plt.close(fig)


def _shades(colour: str, n: int) -> list:
    """n shades of one colour, light to dark; the colour itself when n is 1."""
    if n == 1:
        return [colour]
    return sns.blend_palette([sns.set_hls_values(colour, l=0.75), colour, sns.set_hls_values(colour, l=0.25)],
                             n)


def runs_in_order(df: pd.DataFrame) -> tuple[list[str], dict[str, tuple]]:
    """The runs' labels in display order (run_order: registry, then numbers as numbers),
    and each label's colour: its policy's, in shades when the policy has several runs."""
    runs = df.drop_duplicates("label").sort_values("run_order")
    order = list(runs["label"])
    colours = {}
    for policy, part in runs.groupby("policy", sort=False):
        colours.update(zip(part["label"], _shades(REGISTRY[policy].colour, len(part))))
    return order, colours


def _mixes(df: pd.DataFrame, col: str = "mix") -> list[str]:
    return list(dict.fromkeys(df[col]))


def _legend_right(ax, title: str) -> None:
    ax.legend(title=title, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))


def _finish(fig, title: str, df: pd.DataFrame, out: Path) -> None:
    fig.suptitle(_title(title, df))
    fig.tight_layout()
    _save(fig, out)


@figure(needs="runs at every snapshot")
def savings(df: pd.DataFrame, out: Path) -> None:
    order, colours = runs_in_order(df)
    mixes = _mixes(df)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(mixes) * max(1, len(order)) / 3), 4.5))
    sns.barplot(data=df, errorbar=None, x="mix", y="savings_pct", hue="label", hue_order=order, palette=colours, order=mixes, ax=ax)
    ax.set(xlabel="mix of domains", ylabel="memory saved vs no sharing (%)",
           title=_title("Memory saved per policy (mean footprint over snapshots)", df))
    _legend_right(ax, "policy")
    _save(fig, out)


@figure(needs="runs at every snapshot", per_mix=True)
def footprint_time(df: pd.DataFrame, out: Path) -> None:
    order, colours = runs_in_order(df)
    mixes = _mixes(df)
    cols = min(3, len(mixes))
    rows = -(-len(mixes) // cols)
    # an x axis per mix: one mix may span seconds, another hours
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, mix in zip(axes.flat, mixes):
        sns.lineplot(errorbar=None, data=df[df["mix"] == mix], x="time_s", y="footprint_mib", hue="label", hue_order=order,
                     palette=colours, marker="o", ax=ax, legend=ax is axes.flat[0])
        ax.set(title=f"mix: {mix}", xlabel="guest time (s)", ylabel="host footprint (MiB)")
    for ax in list(axes.flat)[len(mixes):]:
        ax.axis("off")
    axes.flat[0].legend_.remove()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="policy (lines that coincide overlap)", fontsize="small",
               loc="upper left", bbox_to_anchor=(1.0, 0.95))
    _finish(fig, "Host memory footprint over time", df, out)


@figure(needs="dsa runs", per_mix=True)
def area_size(df: pd.DataFrame, out: Path) -> None:
    rules = [e for e in EVICTIONS if e in set(df["eviction"])]
    colours = dict(zip((e.upper() for e in rules), _shades(REGISTRY["dsa"].colour, len(rules))))
    df = df.assign(rule=df["eviction"].str.upper(),
                   zero=df["admit_zero"].map({True: "admitted", False: "not admitted"}))
    mixes = _mixes(df)
    fig, axes = plt.subplots(2, len(mixes), figsize=(4.6 * len(mixes), 7.5), squeeze=False)
    style = dict(hue="rule", style="zero", markers=True, hue_order=list(colours), palette=colours,
                 style_order=["not admitted", "admitted"])
    for j, mix in enumerate(mixes):
        d = df[df["mix"] == mix]
        top, bottom = axes[0][j], axes[1][j]
        sns.lineplot(errorbar=None, data=d, x="area_mib", y="io_reduction_pct", ax=top, legend=j == len(mixes) - 1, **style)
        top.axhline(d["io_ideal_pct"].iloc[0], ls="--", color="grey")
        top.set(xscale="log", title=mix, xlabel="sharing area (MiB)", ylabel="reads avoided = hit ratio (%)")
        sizes = sorted(d["area_mib"].unique())
        if d["savings_pct"].isna().all():  # an I/O trace: no memory to save (summary.left_out)
            bottom.text(0.5, 0.5, "no memory snapshots\nin this mix", ha="center", va="center",
                        transform=bottom.transAxes)
            bottom.axis("off")
            drawn = (top,)
        else:
            sns.lineplot(errorbar=None, data=d, x="area_mib", y="savings_pct", ax=bottom, legend=False, **style)
            bottom.axhline(d["oracle_savings_pct"].iloc[0], ls="--", color=REGISTRY["oracle"].colour)
            bottom.set(xscale="log", xlabel="sharing area (MiB)", ylabel="memory saved vs no sharing (%)")
            drawn = (top, bottom)
        for ax in drawn:
            ax.set_xticks(sizes, [f"{v:g}" for v in sizes])  # ticks at the sizes swept
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    _legend_right(axes[0][-1], "eviction / zero page\n(dashed: ideal, oracle)")
    _finish(fig, "Designated sharing area: I/O and memory against its size", df, out)


@figure(needs="runs that share pages")
def page_types(df: pd.DataFrame, out: Path) -> None:
    order, _ = runs_in_order(df)
    df = df.assign(bar=df["mix"] + ": " + df["label"], mix_rank=df["mix"].map({m: i for i, m in enumerate(_mixes(df))}))
    bars = list(df.drop_duplicates("bar").sort_values(["mix_rank", "run_order"])["bar"])
    types = [t for t in PAGE_TYPES if t in set(df["page_type"])]
    # own y scales: intra-domain sharing is often two orders of magnitude smaller
    fig, axes = plt.subplots(1, 2, figsize=(max(12.0, 0.5 * len(bars) * 2), 5.5))
    for ax, scope in zip(axes, ("inter", "intra")):
        part = (df[df["scope"] == scope].pivot_table(index="bar", columns="page_type", values="saved_mib",
                                                     aggfunc="sum", fill_value=0, observed=True)
                .reindex(index=bars, columns=types, fill_value=0))
        part.plot(kind="bar", stacked=True, ax=ax, color=[TYPE_COLOURS[t] for t in types], rot=45, legend=False)
        ax.set_xticks(ax.get_xticks(), ax.get_xticklabels(), ha="right", rotation_mode="anchor", fontsize="small")
        ax.set(title=f"{scope}-domain sharing", xlabel="mix: policy", ylabel="memory saved (MiB)")
    axes[1].legend(title="page type", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(_title("What gets shared: memory saved by page type (mean over snapshots)", df))
    _save(fig, out)


@figure(needs="domains_per_host: true", per_mix=True)
def domains_per_host(df: pd.DataFrame, out: Path) -> None:
    order, colours = runs_in_order(df)
    mixes = _mixes(df)
    fig, axes = plt.subplots(1, len(mixes), figsize=(4.6 * len(mixes), 4.2), squeeze=False)
    for ax, mix in zip(axes[0], mixes):
        d = df[df["mix"] == mix]
        one_host = d[d["host_mib"] == d["host_mib"].min()]
        sns.lineplot(errorbar=None, data=one_host, x="domains", y="peak_mib", hue="label", hue_order=order, palette=colours,
                     marker="o", ax=ax, legend=ax is axes[0][-1])
        for h in sorted(d["host_mib"].unique()):
            ax.axhline(h, ls=":", color="grey")
            ax.annotate(f"host {int(h)} MiB", (1, h), textcoords="offset points", xytext=(2, 3), fontsize="small")
        for label, k in one_host.groupby("label")["domains_per_host"].first().items():
            row = one_host[(one_host["label"] == label) & (one_host["domains"] == k)]
            if len(row):
                ax.plot(k, row["peak_mib"].iloc[0], marker="*", ms=13, color=colours[label], mec="black")
        ax.set(title=mix, xlabel="domains on the host (mix order)", ylabel="peak host footprint (MiB)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    _legend_right(axes[0][-1], "policy (star: domains that fit\nthe smallest host)")
    _finish(fig, "Peak footprint against the number of domains", df, out)


@figure(needs="more than one snapshot_every", per_mix=True)
def snapshot_interval(df: pd.DataFrame, out: Path) -> None:
    order, colours = runs_in_order(df)
    mixes = _mixes(df)
    fig, axes = plt.subplots(2, len(mixes), figsize=(5.2 * len(mixes), 7), squeeze=False)
    for j, mix in enumerate(mixes):
        d = df[df["mix"] == mix]
        for ax, y, ylabel in ((axes[0][j], "savings_pct", "memory saved vs no sharing (%)"),
                              (axes[1][j], "cow_breaks", "COW breaks (count)")):
            sns.lineplot(errorbar=None, data=d, x="snapshot_interval_s", y=y, hue="label", hue_order=order, palette=colours,
                         marker="o", ax=ax, legend=ax is axes[0][-1])
            ax.set(xlabel="snapshot interval (s)", ylabel=ylabel)
        axes[0][j].set_title(mix)
    _legend_right(axes[0][-1], "policy")
    _finish(fig, "How results move with the snapshot interval (same first and last snapshot)", df, out)


@figure(needs="scan runs", per_mix=True)
def scan_rate(df: pd.DataFrame, out: Path) -> None:
    scan = df[df["policy"] == "scan"]
    refs = df[df["policy"] != "scan"]
    _, colours = runs_in_order(refs) if len(refs) else ([], {})
    mixes = _mixes(df)
    fig, axes = plt.subplots(1, len(mixes), figsize=(4.6 * len(mixes), 4.2), squeeze=False)
    starts = list(dict.fromkeys(scan["scan_start"]))
    for ax, mix in zip(axes[0], mixes):
        sns.lineplot(errorbar=None, data=scan[scan["mix"] == mix], x="scan_pages_per_s", y="savings_pct", style="scan_start",
                     style_order=starts, color=REGISTRY["scan"].colour, markers=True, ax=ax,
                     legend=ax is axes[0][-1])
        for _, r in refs[refs["mix"] == mix].sort_values("run_order").iterrows():
            ax.axhline(r["savings_pct"], ls="--", color=colours[r["label"]], label=r["label"])
        ax.set(xscale="log", title=mix, xlabel="scan rate (pages/s)", ylabel="memory saved vs no sharing (%)")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _legend_right(axes[0][-1], "scan starts at (dashed: other policies)")
    _finish(fig, "Scanning: memory saved against the scan rate", df, out)


@figure(needs="per-page tables")
def sharing_matrix(df: pd.DataFrame, out: Path) -> None:
    captures = _mixes(df, "capture")
    fig, axes = plt.subplots(1, len(captures), squeeze=False,
                             figsize=(max(5.0, 0.8 * df["domain_a"].nunique() + 2) * len(captures), 5))
    for ax, capture in zip(axes[0], captures):
        d = df[df["capture"] == capture]
        doms = sorted(set(d["domain_a"]) | set(d["domain_b"]))
        m = d.pivot(index="domain_a", columns="domain_b", values="shared_mib").reindex(index=doms, columns=doms)
        sns.heatmap(m, annot=True, fmt=".1f", cmap="Greens", ax=ax, cbar_kws={"label": "shared (MiB)"},
                    annot_kws={"fontsize": "small"})
        ax.grid(False)
        ax.set(title=f"capture: {capture}", xlabel="domain", ylabel="domain")
    _finish(fig, "Memory each pair of domains holds in common at the last snapshot\n"
            "(zero and free pages left out)", df, out)


@figure(needs="a capture recorded with KSM running (a capture spec's `ksm`)")
def ksm_at_capture(df: pd.DataFrame, out: Path) -> None:
    batches = list(dict.fromkeys(zip(df["capture"], df["guests"])))
    cols = min(3, len(batches))
    rows = -(-len(batches) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.6 * rows + 0.6), squeeze=False, sharey=True)
    for ax, (capture, guests) in zip(axes.flat, batches):
        d = df[(df["capture"] == capture) & (df["guests"] == guests)]
        ax.plot(d["time_min"], d["ksm_mib"], marker="o", color=REGISTRY["scan"].colour,
                label="KSM pages_sharing (measured)")
        ax.plot(d["time_min"], d["predicted_mib"], marker="s", ls="--", color=REGISTRY["oracle"].colour,
                label="xpipe's prediction")
        ax.set(title=f"{guests.replace(',', ', ')}\n(KSM/prediction {d['ratio'].iloc[-1]:.3f} at the last)",
               xlabel="time since QEMU's start (min)", ylabel="memory saved (MiB)")
        ax.title.set_fontsize("small")
        ax.set_ylim(bottom=0)  # the gap is a few percent: read it from the ratio, not the slope
    for ax in axes.flat[len(batches):]:
        ax.axis("off")
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize="small")
    when = ("once KSM settled on the paused guests" if df["settled"].all()
            else "as the live guests left KSM")
    fig.suptitle(_title(f"KSM against xpipe's prediction at each snapshot,\n{when}", df))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, out)


def no_data(name: str, needs: str, out: str | Path) -> None:
    """A figure that says why it is empty."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{name}: nothing to draw in this experiment\n(it needs {needs})", ha="center",
            va="center")
    _save(fig, out)


def drawing_order(names: list[str]) -> list[str]:
    """``names`` with the figures that draw panels per mix first (they take longest)."""
    return sorted(names, key=lambda n: not FIGURES[n][2])


def draw(name: str, rows: pd.DataFrame, out: str | Path) -> None:
    fn, needs, _ = FIGURES[name]
    if rows.empty:
        no_data(name, needs, out)
    else:
        fn(rows, Path(out))
