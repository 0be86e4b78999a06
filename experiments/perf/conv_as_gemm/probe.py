"""Issue 14 probe: are the paper networks' stride-2 4x4 (transposed) convolutions faster as im2col/col2im + one GEMM
than in oneDNN on this CPU? Forward + backward (input and weight gradients) of each layer shape of l2_0999 at batch
64, the two variants alternated within each round (medians of 7 rounds after 2 warm-up ones), with the float32 sgemm
rate timed at the end. Not used by the package: the answer decided that (experiments/perf/README.md).

    .venv/bin/python experiments/perf/conv_as_gemm/probe.py > experiments/perf/conv_as_gemm/result.txt
"""

from __future__ import annotations

import datetime
import platform
import time

import torch
import torch.nn.functional as F


def conv_gemm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    b, _, h, _ = x.shape
    o, k = w.shape[0], w.shape[-1]
    side = (h + 2 - k) // 2 + 1
    cols = F.unfold(x, k, padding=1, stride=2)  # (B, C*k*k, L)
    y = cols.transpose(1, 2).reshape(b * side * side, -1) @ w.reshape(o, -1).t()
    return y.view(b, side, side, o).permute(0, 3, 1, 2)


def tconv_gemm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    b, c, h, _ = x.shape
    k = w.shape[-1]
    side = (h - 1) * 2 - 2 + k
    cols = x.permute(0, 2, 3, 1).reshape(b * h * h, c) @ w.reshape(c, -1)  # (B*L, O*k*k)
    return F.fold(cols.view(b, h * h, -1).transpose(1, 2), (side, side), k, padding=1, stride=2)


def medians(fns, x: torch.Tensor, w: torch.Tensor, rounds: int = 7, warmup: int = 2) -> list[float]:
    x, w = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    times: list[list[float]] = [[] for _ in fns]
    for r in range(rounds + warmup):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for j in order:
            t0 = time.perf_counter()
            y = fns[j](x, w)
            y.backward(torch.ones_like(y))
            if r >= warmup:
                times[j].append(time.perf_counter() - t0)
            x.grad = w.grad = None
    return [sorted(t)[len(t) // 2] for t in times]


def main() -> None:
    torch.manual_seed(0)
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 64, float32"
    )
    print("layer | oneDNN ms | GEMM ms | oneDNN / GEMM | max |diff|")
    for c, o, h in [(64, 128, 32), (128, 256, 16), (256, 512, 8)]:
        x, w = torch.randn(64, c, h, h), torch.randn(o, c, 4, 4) * 0.02
        diff = (F.conv2d(x, w, stride=2, padding=1) - conv_gemm(x, w)).abs().max().item()
        a, b = medians([lambda x, w: F.conv2d(x, w, stride=2, padding=1), conv_gemm], x, w)
        print(f"conv {c}@{h} -> {o}@{h // 2} | {a * 1e3:.0f} | {b * 1e3:.0f} | {a / b:.2f} | {diff:.1e}")
    for c, o, h in [(512, 256, 4), (256, 128, 8), (128, 64, 16)]:
        x, w = torch.randn(64, c, h, h), torch.randn(c, o, 4, 4) * 0.02
        diff = (F.conv_transpose2d(x, w, stride=2, padding=1) - tconv_gemm(x, w)).abs().max().item()
        a, b = medians([lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), tconv_gemm], x, w)
        print(f"up-conv {c}@{h} -> {o}@{h * 2} | {a * 1e3:.0f} | {b * 1e3:.0f} | {a / b:.2f} | {diff:.1e}")
    m = torch.randn(2048, 2048)
    t0 = time.perf_counter()
    for _ in range(5):
        m @ m
    print(f"sgemm 2048: {5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
