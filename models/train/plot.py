"""Training curve from a run's ``log.jsonl``: losses (log scale) and validation WER against the step.

    python -m ouvir.models.train.plot runs/small/log.jsonl runs/small/curve.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read_log(path: Path | str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_log(log: Path | str, png: Path | str) -> Path:
    """Write the curve PNG (matplotlib's Agg backend, no display needed) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log)
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    fig, (ax_loss, ax_wer) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key, label in (("loss", "hybrid loss"), ("rnnt", "RNNT"), ("ctc", "CTC")):
        ax_loss.plot([r["step"] for r in train], [r[key] for r in train], label=label, linewidth=1)
    if val:
        ax_loss.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="validation hybrid loss")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (nats per utterance)")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend()
    for key, label in (("wer_rnnt", "RNNT greedy"), ("wer_ctc", "CTC greedy")):
        ax_wer.plot([r["step"] for r in val], [100 * r[key] for r in val], "o-", label=label)
    ax_wer.set_ylabel("validation WER (%)")
    ax_wer.set_xlabel("optimizer step")
    ax_wer.grid(True, alpha=0.3)
    ax_wer.legend()
    start = next((r for r in records if r["kind"] == "start"), {})
    title = "ouvir training"
    if "params" in start:
        title += f": {start['params'] / 1e6:.2f} M parameters, {start['train_hours']} h of training audio"
    fig.suptitle(title)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Plot a training log.")
    p.add_argument("log", type=Path)
    p.add_argument("png", type=Path)
    a = p.parse_args(argv)
    print(plot_log(a.log, a.png))


if __name__ == "__main__":
    main()
