"""THE pruning schedule (Zhu & Gupta 2017, gradual magnitude pruning).

Steps are counted as optimizer steps already taken (t = 0 before the first step).
The target sparsity at step t is

    s_t = s_i                                                    for t < t_begin
    s_t = s_f + (s_i - s_f) * (1 - (t - t_begin)/(t_end - t_begin))**3   on [t_begin, t_end]
    s_t = s_f                                                    for t >= t_end

and the mask is recomputed at t = t_begin, t_begin + every, ... (<= t_end) and at
t_end itself. begin == end is one-shot pruning to s_f at that step.
"""
from __future__ import annotations


def cubic_sparsity(t: int, s_i: float, s_f: float, t_begin: int, t_end: int) -> float:
    if t < t_begin:
        return float(s_i)
    if t >= t_end:
        return float(s_f)
    frac = (t - t_begin) / (t_end - t_begin)
    return float(s_f + (s_i - s_f) * (1.0 - frac) ** 3)


def is_update_step(t: int, begin: int, end: int, every: int) -> bool:
    if t < begin or t > end:
        return False
    if t == end:
        return True
    return (t - begin) % max(int(every), 1) == 0


def step_bounds(begin: float, end: float, steps: int) -> tuple[int, int]:
    """Convert the schedule's ``begin``/``end`` fractions of ``steps`` into step numbers."""
    begin = int(round(float(begin) * steps))
    end = int(round(float(end) * steps))
    if not 0 <= begin <= end:
        raise ValueError(f"pruning schedule needs 0 <= begin <= end, got begin={begin} end={end} steps")
    return begin, end
