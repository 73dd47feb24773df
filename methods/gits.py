"""GITS: Chen, Zhou, Wang, Shen & Lyu 2024, "On the Trajectory Regularity of ODE-based Diffusion
Sampling" (ICML), the geometry-inspired time scheduling: a schedule found per model by dynamic
programming over a teacher trajectory of a small warm-up batch.

1. Teacher: the warm-up batch is integrated on a fine grid (`FINE_LEVELS` Karras levels,
   rho = 7, over the model's range) by iPNDM, keeping every state x_k and estimate D(x_k).
2. Cost of a coarse step from fine level i to j > i: how far one Euler step from the teacher's
   state lands from the teacher's state at j, c_ij = mean over the batch of
   || x_i + (s_j - s_i) (x_i - D_i) / s_i - x_j ||_2 (the teacher's D_i is reused: no
   evaluation is spent on costs).
3. The schedule: the path of exactly K steps from the first fine level to the last with the
   smallest total cost, by dynamic programming (O(K G^2) on G fine levels).
The warm-up costs (teacher evaluations x warm-up samples) are the harness's to measure and to
report next to the cell's NFE, which they are not part of.
"""
import torch

from methods.deis import AB_COEFFICIENTS

FINE_LEVELS = 101          # the teacher's grid (100 iPNDM steps)
WARMUP_SAMPLES = 256       # the paper's warm-up batch size


@torch.no_grad()
def teacher_trajectory(denoiser, x_unit: torch.Tensor, fine: torch.Tensor, cond=None):
    """States and denoised estimates of iPNDM (order 4) along the fine levels (all nonzero)."""
    levels = fine.to(x_unit.dtype)
    x, states, estimates, slopes = x_unit * levels[0], [], [], []
    for i in range(len(levels)):
        denoised = denoiser(x, levels[i], cond)
        states.append(x)
        estimates.append(denoised)
        if i == len(levels) - 1:
            break
        slopes.append((x - denoised) / levels[i])
        coefficients = AB_COEFFICIENTS[min(4, len(slopes))]
        x = x + (levels[i + 1] - levels[i]) * sum(c * d for c, d in zip(coefficients, reversed(slopes)))
    return states, estimates


def step_costs(states, estimates, fine: torch.Tensor) -> torch.Tensor:
    """c_ij: the batch-mean L2 distance of an Euler step from teacher state i to level j from
    the teacher's state j (inf where j <= i)."""
    count = len(states)
    costs = torch.full((count, count), float("inf"), dtype=torch.float64)
    for i in range(count - 1):
        direction = (states[i] - estimates[i]) / fine[i]
        for j in range(i + 1, count):
            landed = states[i] + (fine[j] - fine[i]) * direction
            costs[i, j] = (landed - states[j]).flatten(1).norm(dim=1).mean().double()
    return costs


def cheapest_path(costs: torch.Tensor, steps: int) -> list[int]:
    """Indices of the fine levels on the cheapest path of exactly `steps` steps from the first
    level to the last (dynamic programming)."""
    count = len(costs)
    if not 1 <= steps <= count - 1:
        raise ValueError(f"GITS can take 1 to {count - 1} steps on its {count}-level grid, not {steps}")
    best = torch.full((steps + 1, count), float("inf"), dtype=torch.float64)
    parent = torch.zeros((steps + 1, count), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, steps + 1):
        totals = best[k - 1][:, None] + costs            # from i (rows) to j (columns)
        best[k], parent[k] = totals.min(dim=0)
    path = [count - 1]
    for k in range(steps, 0, -1):
        path.append(int(parent[k, path[-1]]))
    return path[::-1]


def gits_costs(denoiser, x_unit: torch.Tensor, fine: torch.Tensor, cond=None) -> torch.Tensor:
    """The step costs between every two fine levels, from the teacher run on `x_unit`."""
    states, estimates = teacher_trajectory(denoiser, x_unit, fine, cond)
    return step_costs(states, estimates, fine.to(x_unit.dtype))


def gits_levels(costs: torch.Tensor, fine: torch.Tensor, levels: int) -> list[float]:
    """`levels` noise levels (descending, nonzero) on the cheapest path of `levels` - 1 steps."""
    return [float(fine[k]) for k in cheapest_path(costs, levels - 1)]
