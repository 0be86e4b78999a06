"""Summary of the budget probes (probe_budget.sh): steps per second of the `all` sweep one job at a time with
2 threads (A) against two 1-thread jobs side by side (B), and of the paper widths (C). Writes probes/SUMMARY.md.

    python experiments/ablations/probe_summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent / "probes"


def load(name: str) -> dict[str, float]:
    return json.loads((HERE / name).read_text())["seconds_per_step"]


def main() -> None:
    a, b1, b2 = (
        load("A_w32_b16_2threads.json"),
        load("B_w32_b16_1thread_first.json"),
        load("B_w32_b16_1thread_second.json"),
    )
    c, again = load("C_w64_b32_2threads.json"), load("A_w32_b16_2threads_again.json")
    lines = [
        "# Budget probes",
        "",
        "`bash experiments/ablations/probe_budget.sh` (5 timed steps per experiment after 2 warm-up steps, random "
        "128 crops, the module's GAN step in a plain loop), 2-core CPU, 2026-12-02, helpers' jobs running at "
        "nice 19 beside it. Seconds per optimizer step; widths 32 (AlexNet 48/128/192/192/128), batch 16.",
        "",
        "| experiment | A: 1 job, 2 threads | B: 2 jobs side by side, 1 thread each (mean of the two) | steps/s of B over A |",
        "| --- | ---: | ---: | ---: |",
    ]
    sum_a = sum_b = 0.0
    for name, sa in a.items():
        sb = (b1[name] + b2[name]) / 2
        sum_a, sum_b = sum_a + sa, sum_b + sb
        lines.append(f"| `{name}` | {sa:.3f} | {sb:.3f} | {2 * sa / sb:.2f}x |")
    lines.append(
        f"| **one step of every experiment** | {sum_a:.2f} | {sum_b:.2f} (wall {sum_b / 2:.2f}) | {2 * sum_a / sum_b:.2f}x |"
    )
    lines += [
        "",
        "A again at the end (drift check): "
        + ", ".join(f"`{k}` {v:.3f} (first {a[k]:.3f})" for k, v in again.items()),
        "",
        f"C, the old budget's widths 64 / batch 32, `l2_0999`, 2 threads: {c['l2_0999']:.3f} s/step = "
        f"{c['l2_0999'] / 32 * 1000:.1f} ms per crop, against {a['l2_0999'] / 16 * 1000:.1f} ms per crop at widths 32 / "
        f"batch 16: {c['l2_0999'] / a['l2_0999']:.1f}x more optimizer steps per second at the small setting.",
        "",
    ]
    (HERE / "SUMMARY.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
