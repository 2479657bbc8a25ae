"""The synth_eval plot: balanced accuracy on each held-out split, real-only vs real+synthetic vs TSTR."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from thyrokit.atomic import write_bytes  # noqa: E402

SETTINGS = (("real", "real only"), ("real_plus_synth", "real + synthetic"), ("tstr", "synthetic only"))


def plot_utility(results: dict, path: str | os.PathLike) -> None:
    """Write a grouped bar chart of balanced accuracy per split, one panel per generator."""
    names = sorted(results)
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        splits = sorted(results[name]["splits"])
        for offset, (key, label) in enumerate(SETTINGS):
            values = [(results[name]["splits"][split][key] or {}).get("balanced_accuracy") or 0.0 for split in splits]
            axis.bar([i + (offset - 1) * 0.27 for i in range(len(splits))], values, width=0.27, label=label)
        axis.set_xticks(range(len(splits)), splits)
        axis.set_ylim(0, 1)
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_title(name)
        axis.set_ylabel("balanced accuracy")
    axes[0][0].legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    # Fixed metadata keeps the PNG byte-identical across runs.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    write_bytes(path, buffer.getvalue())
