"""PNG plots of a bench report (matplotlib, imported only here and only when plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(report: dict[str, Any]) -> str:
    m = report["machine"]
    return f"{m['cpu']}, {m['usable_cores']} cores, {m['threads']} threads"


def plot_rtf(report: dict[str, Any], path: Path) -> None:
    """Real-time factor of every run (backend / precision / look-ahead), lower is better."""
    plt = _pyplot()
    runs = report["runs"]
    labels = [r["spec"]["label"] for r in runs]
    rtf = [r["summary"]["rtf"] for r in runs]
    colors = ["tab:gray" if r["spec"]["engine"] != "ouvir" else
              {"torch": "tab:red", "onnx": "tab:blue", "pte": "tab:green"}.get(r["spec"]["backend"], "tab:purple")
              for r in runs]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(runs) + 1.5))
    bars = ax.barh(range(len(runs)), rtf, color=colors)
    ax.bar_label(bars, [f"{x:.3f}" for x in rtf], padding=3)
    ax.set_yticks(range(len(runs)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("real-time factor (compute s / audio s), whole pipeline")
    ax.set_title(f"ouvir bench: RTF\n{_subtitle(report)}", fontsize=10)
    ax.set_xlim(0, max(rtf) * 1.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(report: dict[str, Any], path: Path) -> None:
    """Compute latency of every chunk over stream time, one panel per look-ahead (dashed: chunk duration);
    a log axis, as backends differ by orders of magnitude."""
    plt = _pyplot()
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in report["runs"]:
        if "long" not in r:  # long runs have their own plot
            groups.setdefault(r["lookahead_ms"], []).append(r)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 3.2 * len(groups)), squeeze=False)
    for ax, (lookahead, runs) in zip(axes[:, 0], groups.items(), strict=True):
        for r in runs:
            at, lat = np.asarray(r["series"]["at_s"]), np.asarray(r["series"]["latency_s"])  # (n,), (n,)
            one = np.asarray(r["series"]["chunks"]) == 1  # (n,)
            ax.plot(at[one], lat[one] * 1000, marker=".", markersize=3, linewidth=0.8, label=r["spec"]["label"])
        ax.axhline(runs[0]["summary"]["chunk_s"] * 1000, color="k", linestyle="--", linewidth=0.8)
        ax.set_title(f"look-ahead {lookahead} ms", fontsize=9)
        ax.set_ylabel("chunk latency, ms (log)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("stream time, s")
    fig.suptitle(f"ouvir bench: per-chunk compute latency\n{_subtitle(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_long(report: dict[str, Any], run: dict[str, Any], path: Path) -> None:
    """A long run: chunk latency (points and a rolling median) and RSS over stream time."""
    plt = _pyplot()
    at, lat = np.asarray(run["series"]["at_s"]) / 60, np.asarray(run["series"]["latency_s"]) * 1000  # (n,)
    one = np.asarray(run["series"]["chunks"]) == 1
    at, lat = at[one], lat[one]
    k = max(1, len(lat) // 100)
    rolling = np.array([np.median(lat[max(0, i - k) : i + k + 1]) for i in range(len(lat))])  # (n,)
    rss = run["long"]["rss_series"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a1.plot(at, lat, ".", markersize=1.5, alpha=0.4, label="chunk")
    a1.plot(at, rolling, color="tab:red", linewidth=1, label=f"rolling median ({2 * k + 1} chunks)")
    a1.set_ylabel("chunk latency, ms")
    a1.set_ylim(bottom=0)
    a1.legend(fontsize=7)
    a2.plot(np.asarray(rss["at_s"]) / 60, np.asarray(rss["bytes"]) / (1 << 20), color="tab:green")
    a2.set_ylabel("RSS, MB")
    a2.set_xlabel("stream time, min")
    fig.suptitle(f"ouvir bench long run: {run['spec']['label']}\n{_subtitle(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    written = [out / "rtf.png"]
    plot_rtf(report, written[0])
    if any("long" not in r for r in report["runs"]):
        written.append(out / "latency.png")
        plot_latency(report, written[-1])
    for i, r in enumerate(x for x in report["runs"] if "long" in x):
        written.append(out / ("long_run.png" if i == 0 else f"long_run_{i}.png"))
        plot_long(report, r, written[-1])
    return written
