"""results.png: accuracy per method (bars, ± std) and the test-accuracy curves from the logs.

Left panel: one group of bars per pair, one bar per method (mean best top-1, std as error
bar), on an axis from 0 with the legend below it. Right panel: mean test top-1 per epoch of
every cell (one colour per method, one line style per pair). matplotlib is optional (extra
"plot"); without it the chart is skipped with a message saying how to install it, and
everything else is still written.
"""
MISSING = "matplotlib is not installed, so results.png was not drawn; install it with: pip install matplotlib"
LINE_STYLES = ["-", "--", ":", "-."]
LEGEND_COLUMNS = 4


def chart_unavailable():
    """None when charts can be drawn, else the message saying why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING
    return None


def draw_chart(summary, path):
    import matplotlib.pyplot as plt

    fig = chart_figure(summary)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart_figure(summary):
    """The figure of results.png (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (works on headless machines)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = [m for m in summary.methods if any(summary.cell(m, p) for p in summary.pairs)]
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(methods), 1)
    highs = []
    for i, method in enumerate(methods):
        xs, ys, errs = [], [], []
        for j, pair in enumerate(summary.pairs):
            cell = summary.cell(method, pair)
            if cell is None or cell.top1 is None:
                continue
            xs.append(j + (i - (len(methods) - 1) / 2) * width)
            ys.append(cell.top1)
            errs.append(cell.top1_std or 0.0)
            highs.append(cell.top1 + (cell.top1_std or 0.0))
            epochs = [e for e, _ in cell.curve]
            curves.plot(epochs, [v for _, v in cell.curve], LINE_STYLES[j % len(LINE_STYLES)], marker=".",
                        color=colours[method], label=method if len(summary.pairs) == 1 else f"{method} ({pair})")
        bars.bar(xs, ys, width, yerr=errs, capsize=3, color=colours[method], label=method)
    # Bars start at 0: a bar's length is its value, so none (the teacher's included) is hidden
    # below a zoomed axis or looks like a multiple of another.
    bars.set_ylim(0.0, min(100.0, max(max(highs) * 1.05, 1.0)) if highs else 100.0)
    bars.set_xticks(range(len(summary.pairs)))
    bars.set_xticklabels(summary.pairs)
    bars.set_ylabel("best test top-1 (%)")
    bars.set_title("Accuracy per method (mean ± std over seeds)")
    if methods:  # below the axes, where it covers no bar
        bars.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1),
                    ncol=min(len(methods), LEGEND_COLUMNS), frameon=False)
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel("test top-1 (%)")
    curves.set_title("Test accuracy per epoch (mean over seeds)")
    if curves.lines:
        curves.legend(fontsize="small")
    fig.tight_layout()
    return fig
