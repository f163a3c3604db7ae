"""The report of one bench run: a JSON document, a markdown table and (plots.py) PNG plots, in one folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ouvir.engine.bench.paths import portable_paths

MB = 1 << 20


def key(run: dict[str, Any]) -> tuple[str, str, str, int | None]:
    spec = run["spec"]
    return spec["engine"], spec["backend"], spec["precision"], run["lookahead_ms"]


def comparisons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run: its real-time factor relative to ouvir's ORT fp32 run at the same look-ahead, and for
    sherpa-onnx pairs the ouvir / sherpa time ratio (< 1: ouvir is faster). Long runs are compared, not
    compared with."""
    by_key = {key(r): r for r in runs if "long" not in r}
    by_label = {r["spec"]["label"]: r for r in runs}
    out = []
    for r in runs:
        ort = by_key.get(("ouvir", "onnx", "fp32", r["lookahead_ms"]))
        row: dict[str, Any] = {"label": r["spec"]["label"]}
        if ort is not None and r["spec"]["engine"] == "ouvir":
            row["vs_onnx_fp32"] = r["summary"]["rtf"] / ort["summary"]["rtf"]
        paired = r["spec"].get("paired_with")
        if paired in by_label:
            row["ouvir_over_sherpa"] = by_label[paired]["summary"]["rtf"] / r["summary"]["rtf"]
            row["ouvir_run"] = paired
        out.append(row)
    return out


def build_report(
    command: list[str], machine: dict[str, Any], model: dict[str, Any], audio: dict[str, Any],
    runs: list[dict[str, Any]], skipped: list[str], failed: list[str],
) -> dict[str, Any]:
    """The report document; its paths are recorded relative to the project or as file names (paths.py)."""
    return portable_paths({
        "format": "ouvir-bench",
        "version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "model": model,
        "audio": audio,
        "runs": runs,
        "comparisons": comparisons(runs),
        "skipped": skipped,  # configurations that cannot run (torch int8, another bundle's backend)
        "failed": failed,  # exports or runs that broke
    })


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


def _ms(s: float) -> str:
    return f"{s * 1000:.2f}"


def _ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def markdown(report: dict[str, Any]) -> str:
    m, runs, audio = report["machine"], report["runs"], report["audio"]
    cmp = {c["label"]: c for c in report["comparisons"]}
    load = m["load_average"]
    lines = [
        "# ouvir bench",
        "",
        f"{report['created']} · {m['cpu']} · {m['usable_cores']} usable of {m['logical_cores']} logical cores · "
        f"{m['threads']} threads · load average at start {load} · {m['platform']}"
        + (f" · network on {m['device']}: {'; '.join(m['gpus']) or 'no GPU listed'}" if m.get("device", "cpu") != "cpu"
           else ""),
        f"Model: {report['model'].get('name', '?')} · audio: {audio['file']} "
        f"({audio['seconds']:.0f} s per run, looped; a {audio['warmup_s']:.0f} s warm-up stream first)",
        f"Command: `{' '.join(report['command'])}`",
        "",
        "| run | RTF | p50 ms | p95 ms | p99 ms | p99 / chunk | chunk ms | tokens/s | load s | model MB "
        "| peak RSS MB | vs ORT fp32 | ouvir / sherpa |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s, lat, c = r["summary"], r["summary"]["latency"], cmp[r["spec"]["label"]]
        lines.append(
            f"| {r['spec']['label']} | {s['rtf']:.3f} | {_ms(lat['p50_s'])} | {_ms(lat['p95_s'])} "
            f"| {_ms(lat['p99_s'])} "
            f"| {s['p99_of_chunk']:.1%} | {_ms(s['chunk_s'])} | {s['tokens_per_s']:.1f} | {r['load_s']:.2f} "
            f"| {r['model_bytes'] / MB:.1f} | {r['rss']['peak_bytes'] / MB:.0f} | {_ratio(c.get('vs_onnx_fp32'))} "
            f"| {_ratio(c.get('ouvir_over_sherpa'))} |"
        )
    busy = max((max(r["load_average"]["before"][0], r["load_average"]["after"][0]) for r in runs
                if r.get("load_average", {}).get("before")), default=0.0)
    if busy > m["usable_cores"] + 1:
        lines += ["", f"**Busy machine**: the 1-minute load average reached {busy:.1f} on {m['usable_cores']} cores "
                  "during these runs, so other work shared the cores and the timings are inflated; rerun on an "
                  "idle machine before quoting them."]
    lines += ["", "RTF = compute time / audio time over the whole pipeline (features + network + decoding); "
              "latency = compute time of one chunk's block; vs ORT fp32 = RTF relative to ouvir's onnx fp32 run "
              "at the same look-ahead; ouvir / sherpa = ouvir's RTF over sherpa-onnx's on the same ONNX files, "
              "audio and threads (< 1: ouvir is faster). Wall and CPU seconds are in the JSON: CPU well under "
              "wall x threads means other work shared the cores."]
    parted = [r for r in runs if "parts_s" in r["summary"]]
    if parted:
        lines += ["", "## Where ouvir's time goes (share of compute, measured blocks)", "",
                  "| run | features | encoder | heads | decoding | wall s | CPU s |", "|---|---|---|---|---|---|---|"]
        for r in parted:
            p, total = r["summary"]["parts_s"], sum(r["summary"]["parts_s"].values())
            shares = " | ".join(f"{p[k] / total:.1%}" for k in ("features", "encoder", "heads", "decoding"))
            lines.append(f"| {r['spec']['label']} | {shares} | {r['summary']['wall_s']:.2f} "
                         f"| {r['summary']['cpu_s']:.2f} |")
    for r in runs:
        if "long" in r:
            lines += ["", *long_run_lines(r)]
    if report["failed"]:
        lines += ["", "**Failed**: " + "; ".join(report["failed"])]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def long_run_lines(run: dict[str, Any]) -> list[str]:
    d, g = run["long"]["drift"], run["long"]["rss_growth"]
    w = d["window_s"] / 60
    return [
        f"## Long run: {run['spec']['label']}, {run['summary']['audio_s'] / 60:.1f} min of audio",
        "",
        f"- RSS growth {g['growth_bytes'] / MB:+.2f} MB: {g['baseline_bytes'] / MB:.1f} MB at "
        f"{g['baseline_at_s']:.0f} s -> {g['end_bytes'] / MB:.1f} MB at the end (max sampled "
        f"{g['max_bytes'] / MB:.1f} MB, peak {run['rss']['peak_bytes'] / MB:.1f} MB)",
        f"- median chunk latency: first {w:.1f} min {_ms(d['first_median_s'])} ms, last {w:.1f} min "
        f"{_ms(d['last_median_s'])} ms, ratio {d['ratio']:.3f}",
        f"- RTF {run['summary']['rtf']:.3f}, p99 {_ms(run['summary']['latency']['p99_s'])} ms",
    ]
