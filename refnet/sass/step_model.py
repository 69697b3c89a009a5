"""A model of one training step's time, from the SASS table: a ceiling, not a measurement.

    matrix pass  time = useful FLOPs / (fp32 peak x FFMA share x fill)     (issue-bound)
    memory pass  time = bytes moved / DRAM bandwidth                       (DRAM-bound)
    step         sum over the passes a training step of the seed variant runs

Not modelled: latency the resident warps cannot hide (at 8 warps per SM, likely much), partial
last waves of blocks, launch overhead (about 70 launches per step), caches. A GPU cannot beat the
model's time; it can be much slower.

Anchors printed beside it:
    fp32 floor   the step's useful FLOPs / 67 TFLOP/s: every issue slot an FFMA, no other cost
    cuDNN R4     81 ms forward + backward (27 + 53) for the "One weird trick" AlexNet variant at
                 batch 128 on a GTX Titan X (Maxwell), fp32, soumith/convnet-benchmarks: another
                 GPU and a slightly smaller net, a yardstick for the era, not a peer
    measured     not measured: no GPU was lent (bench/gpu_check.sh measures it on one)
"""

from dataclasses import dataclass

from .analysis import GPUS

CUDNN_R4_TITAN_X_MS = 81.0


@dataclass
class StepModel:
    gpu: str
    matmul_ms: float
    memory_ms: float
    floor_ms: float  # useful FLOPs at the fp32 peak
    flops: int
    slowest: list  # [(pass name, ms)], the five largest

    @property
    def total_ms(self):
        return self.matmul_ms + self.memory_ms


def step_model(rows, gpu):
    """The StepModel of the in-step rows of the seed variant on `gpu` (a key of GPUS)."""
    step = [r for r in rows if r.in_step and r.variant == "seed"]
    times = [(r.name, r.model_seconds(gpu) * 1e3) for r in step]
    matmul = sum(t for r, (_, t) in zip(step, times) if r.kind == "matmul")
    memory = sum(t for r, (_, t) in zip(step, times) if r.kind != "matmul")
    flops = sum(r.flops for r in step)
    peak = GPUS[gpu][0]
    return StepModel(gpu, matmul, memory, flops / peak * 1e3, flops, sorted(times, key=lambda x: -x[1])[:5])


def format_step_models(rows, batch):
    lines = [f"Step model: one training step of the seed AlexNet at batch {batch} (a MODEL: a ceiling, not a time)"]
    for gpu in GPUS:
        m = step_model(rows, gpu)
        peak, bandwidth = GPUS[gpu]
        lines.append(
            f"  {gpu} ({peak / 1e12:.0f} TFLOP/s fp32, {bandwidth / 1e12:.2f} TB/s): model {m.total_ms:.1f} ms "
            f"= {m.matmul_ms:.1f} ms matrix passes (issue-bound) + {m.memory_ms:.2f} ms memory passes (DRAM-bound); "
            f"fp32 floor {m.floor_ms:.1f} ms ({m.flops / 1e9:.0f} GFLOP)"
        )
        lines.append("    largest: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in m.slowest))
    lines.append(f"  cuDNN R4, GTX Titan X, fp32, OWT AlexNet variant (convnet-benchmarks): {CUDNN_R4_TITAN_X_MS:.0f} ms")
    lines.append("  measured: not measured (no GPU; `make gpu-check` measures it on one)")
    return "\n".join(lines)
