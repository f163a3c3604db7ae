"""The default model's training history across runs and sessions: one JSONL log and one plot in the repository.

    python -m ouvir.models.train.history add /work/runs/ctc1 --phase s6-ctc     # append a finished run
    python -m ouvir.models.train.history plot                                 # redraw curve.png

A run is a ``train.py`` output folder; each starts from the weights the previous one ended with
(``--init-from``), so its steps and clock restart at 0. ``add`` appends the run's ``log.jsonl`` records once,
each with ``phase`` (the run's name), ``global_step`` and ``hours`` (optimizer steps and training wall hours of
every earlier phase plus this run's own). The plot shows validation WER and the training loss against those
hours, so the curve reads across restarts and sessions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ouvir.models.train.plot import read_log

HISTORY = Path(__file__).parent / "history"


def _totals(records: list[dict[str, Any]]) -> tuple[int, float]:
    """(steps, hours) at the end of the phases already in the history."""
    stops = [r for r in records if r["kind"] == "stop"]
    return (stops[-1]["global_step"], stops[-1]["hours"]) if stops else (0, 0.0)


def add_run(run: Path, phase: str, history: Path = HISTORY) -> int:
    """Append run/log.jsonl to history/log.jsonl under ``phase``; -> records added."""
    log = history / "log.jsonl"
    existing = read_log(log) if log.is_file() else []
    if any(r["phase"] == phase for r in existing):
        raise ValueError(f"{log} already holds phase {phase!r}")
    records = read_log(run / "log.jsonl")
    if not records or records[-1]["kind"] != "stop":
        raise ValueError(f"{run / 'log.jsonl'} has no 'stop' record: the run is not finished")
    steps, hours = _totals(existing)
    lines = []
    for r in records:
        elapsed = r.get("elapsed_s", r.get("train_seconds"))
        out = {"phase": phase, "global_step": steps + r.get("step", 0), **r}
        if elapsed is not None:
            out["hours"] = round(hours + elapsed / 3600, 4)
        elif r["kind"] == "val":  # validation records carry no clock: the last training record's
            out["hours"] = lines[-1]["hours"] if lines else hours
        else:
            out["hours"] = hours
        lines.append(out)
    history.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)
    return len(lines)


def plot_history(history: Path = HISTORY) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(history / "log.jsonl")
    phases = list(dict.fromkeys(r["phase"] for r in records))
    fig, (ax_wer, ax_loss) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for phase in phases:
        val = [r for r in records if r["phase"] == phase and r["kind"] == "val"]
        train = [r for r in records if r["phase"] == phase and r["kind"] == "train"]
        start = next(r for r in records if r["phase"] == phase and r["kind"] == "start")
        label = f"{phase} ({start.get('device', 'cpu')})"
        key = "wer_ctc" if start.get("recipe", {}).get("ctc_weight", 0.3) >= 1.0 else "wer_rnnt"
        ax_wer.plot([r["hours"] for r in val], [100 * r[key] for r in val], "o-", label=f"{label}: {key[4:]}")
        ax_loss.plot([r["hours"] for r in train], [r["loss"] for r in train], linewidth=0.8, label=label)
    ax_wer.set_ylabel("validation WER (%), held-out voices")
    ax_wer.grid(True, alpha=0.3)
    ax_wer.legend(fontsize=8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss (nats / utterance)")
    ax_loss.set_xlabel("training hours (all phases; CPU phases on one thread)")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle("ouvir default model: training history")
    fig.tight_layout()
    png = history / "curve.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.history", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="append a finished run's log")
    add.add_argument("run", type=Path)
    add.add_argument("--phase", required=True)
    add.add_argument("--history", type=Path, default=HISTORY)
    plot = sub.add_parser("plot", help="redraw curve.png")
    plot.add_argument("--history", type=Path, default=HISTORY)
    a = p.parse_args(argv)
    if a.command == "add":
        print(f"{add_run(a.run, a.phase, a.history)} records added")
    print(plot_history(a.history))


if __name__ == "__main__":
    main()
