"""Signal Temporal Logic (STL) specifications over 2-D trajectories, their robustness, and their
decomposition into time-allocated subgoals (the grounding TGPO searches over).

A ``Spec`` is the conjunction of reach subgoals and invariants over a trajectory ``x_0..x_H``:

    phi = AND_k F_[a_k, b_k] (x in R_k)  AND  AND_j G_[0, H] (x not in O_j)

with disc regions ``R = {x : |x - c| <= r}``. The quantitative semantics (Donze & Maler, "Robust
Satisfaction of Temporal Logic over Real-Valued Signals", FORMATS 2010) give the robustness

    rho(x in R, t)          = r - |x_t - c|                         (> 0 inside)
    rho(F_[a,b] psi, 0)     = max_{t in [a, b]} rho(psi, t)
    rho(G_[a,b] psi, 0)     = min_{t in [a, b]} rho(psi, t)
    rho(phi_1 AND phi_2, 0) = min(rho(phi_1, 0), rho(phi_2, 0))

and ``rho > 0`` means ``x`` satisfies ``phi``. ``robustness`` computes it in closed form in plain
JAX (any leading batch axes); ``stljax_formula`` builds the same formula with stljax
(``pip install 'jaxrl_llm[stl]'``; Leung, Arechiga, Pavone, "Backpropagation through Signal
Temporal Logic Specifications", arXiv 2008.00097, https://github.com/UW-CTRL/stljax) and
``robustness_stljax`` evaluates it; the tests pin the two to each other.

Three templates (``SPECS`` holds a default instance of each, and ``sequence_far``, a sequence whose
wide windows leave most allocations dynamically infeasible):
  * ``reach_avoid``:  F_[a,b] (x in A)  AND  G (x not in O)
  * ``sequence``:     F_[a1,b1] (x in A)  AND  F_[a2,b2] (x in B)  AND  G (x not in O): reach A, then B,
                      each within its window (the tiny reproduction of the TGPO paper)
  * ``always_avoid``: G (x not in O_1) AND G (x not in O_2), no subgoal

Time allocation (TGPO, Meng, Chen, Fan, "TGPO: Temporal Grounded Policy Optimization for Signal
Temporal Logic Tasks", arXiv 2510.00225, https://github.com/mengyuest/TGPO): each ``F_[a_k,b_k]`` is
grounded at one step ``t_k in [a_k, b_k]``, the subgoals ordered ``t_1 < t_2 < ... < t_K``; the
grounded spec ``AND_k (x_{t_k} in R_k) AND invariants`` implies ``phi``. ``uniform_allocation``
samples such ``t_{1:K}``; ``feasible`` checks them, optionally also against the dynamics (a
point moving at most ``max_step`` per step must be able to cover the gaps between regions).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_llm import errors
from jaxrl_llm.types import Array


@dataclasses.dataclass(frozen=True)
class Region:
    """A closed disc ``{x : |x - center| <= radius}``."""

    center: tuple[float, float]
    radius: float

    def margin(self, pos: Array) -> Array:
        """``r - |x - c|``: the robustness of ``x in R`` (``pos [..., 2] -> [...]``)."""
        center = jnp.broadcast_to(jnp.asarray(self.center, jnp.float32), pos.shape)
        return self.radius - jnp.linalg.norm(pos - center, axis=-1)


@dataclasses.dataclass(frozen=True)
class Reach:
    """``F_[lo, hi] (x in region)``: be in ``region`` at some step ``t`` with ``lo <= t <= hi``."""

    region: Region
    lo: int
    hi: int


@dataclasses.dataclass(frozen=True)
class Spec:
    """``AND_k reach[k] AND AND_j G_[0, horizon] (x not in avoid[j])`` over ``x_0..x_horizon``."""

    name: str
    reach: tuple[Reach, ...]
    avoid: tuple[Region, ...]
    horizon: int  # H: a trajectory has H + 1 points

    def __post_init__(self):
        if not self.reach and not self.avoid:
            raise ValueError(f"spec {self.name!r}: needs at least one reach subgoal or avoid region")
        prev_lo, prev_hi = -1, -1
        for k, r in enumerate(self.reach):
            if not 0 <= r.lo <= r.hi <= self.horizon:
                raise ValueError(
                    f"spec {self.name!r}: reach[{k}] window [{r.lo}, {r.hi}] must satisfy 0 <= lo <= hi <= "
                    f"horizon={self.horizon}"
                )
            if r.lo <= prev_lo or r.hi <= prev_hi:
                raise ValueError(
                    f"spec {self.name!r}: reach[{k}] window [{r.lo}, {r.hi}] must start and end after "
                    f"reach[{k - 1}]'s [{prev_lo}, {prev_hi}] (subgoals are ordered)"
                )
            prev_lo, prev_hi = r.lo, r.hi

    @property
    def num_subgoals(self) -> int:
        return len(self.reach)

    def centers(self) -> Array:
        """``[K, 2]`` subgoal centres."""
        return jnp.asarray([r.region.center for r in self.reach], jnp.float32).reshape(-1, 2)

    def radii(self) -> Array:
        """``[K]`` subgoal radii."""
        return jnp.asarray([r.region.radius for r in self.reach], jnp.float32)

    def windows(self) -> tuple[Array, Array]:
        """``(lo [K], hi [K])`` int32: the windows ``[a_k, b_k]`` of the subgoals."""
        lo = jnp.asarray([r.lo for r in self.reach], jnp.int32)
        hi = jnp.asarray([r.hi for r in self.reach], jnp.int32)
        return lo, hi


def reach_avoid(goal: Region, window: tuple[int, int], obstacles: tuple[Region, ...], horizon: int) -> Spec:
    """``F_[a,b] (x in goal) AND G (x not in O_j)``."""
    return Spec("reach_avoid", (Reach(goal, *window),), tuple(obstacles), horizon)


def sequence(
    goals: tuple[Region, ...], windows: tuple[tuple[int, int], ...], obstacles: tuple[Region, ...], horizon: int
) -> Spec:
    """``AND_k F_[a_k,b_k] (x in goal_k) AND G (x not in O_j)`` with ordered windows: reach the goals in turn."""
    if len(goals) != len(windows):
        raise ValueError(f"sequence: {len(goals)} goals but {len(windows)} windows")
    return Spec("sequence", tuple(Reach(g, *w) for g, w in zip(goals, windows)), tuple(obstacles), horizon)


def always_avoid(obstacles: tuple[Region, ...], horizon: int) -> Spec:
    """``AND_j G_[0,H] (x not in O_j)``: invariants only, no subgoal to allocate."""
    return Spec("always_avoid", (), tuple(obstacles), horizon)


_A = Region((1.5, 1.5), 0.4)
_B = Region((3.0, -0.5), 0.4)
_O = Region((2.25, 0.5), 0.4)  # on the straight line from A to B
_FAR_A = Region((3.5, 2.5), 0.4)  # >= ~35 steps from the start box at speed 1, dt 0.1
_FAR_B = Region((0.0, 5.0), 0.4)  # 3.5 from A's disc: t_B - t_A >= 35
SPECS: dict[str, Spec] = {
    "reach_avoid": reach_avoid(_A, (10, 30), (Region((0.75, 0.75), 0.3),), 40),
    "sequence": sequence((_A, _B), ((10, 40), (50, 90)), (_O,), 100),
    # wide windows, long legs: only ~1 uniform allocation in 6 leaves enough time for both legs
    "sequence_far": sequence((_FAR_A, _FAR_B), ((10, 60), (50, 100)), (Region((1.75, 3.75), 0.4),), 100),
    "always_avoid": always_avoid((Region((0.0, 0.0), 1.0), Region((1.5, 0.0), 0.4)), 50),
}


def get(name: str) -> Spec:
    """A spec of ``SPECS`` by name."""
    if name not in SPECS:
        raise errors.UserError(f"unknown STL spec {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]


def reach_robustness(reach: Reach, traj: Array) -> Array:
    """``max_{t in [lo, hi]} (r - |x_t - c|)``; ``traj [..., H+1, 2] -> [...]``."""
    return jnp.max(reach.region.margin(traj[..., reach.lo : reach.hi + 1, :]), axis=-1)


def avoid_robustness(region: Region, traj: Array) -> Array:
    """``min_{t in [0, H]} (|x_t - c| - r)``; ``traj [..., H+1, 2] -> [...]``."""
    return jnp.min(-region.margin(traj), axis=-1)


def robustness(spec: Spec, traj: Array) -> Array:
    """``rho(phi, x)`` of the module docstring; ``traj [..., H+1, 2] -> [...]``."""
    if traj.shape[-2] != spec.horizon + 1 or traj.shape[-1] != 2:
        raise ValueError(
            f"robustness: traj has shape {traj.shape}, spec {spec.name!r} needs [..., {spec.horizon + 1}, 2]"
        )
    terms = [reach_robustness(r, traj) for r in spec.reach] + [avoid_robustness(o, traj) for o in spec.avoid]
    return jnp.min(jnp.stack(terms, axis=-1), axis=-1)


def _stljax() -> Any:
    try:
        return importlib.import_module("stljax.formula")
    except ImportError:
        raise errors.UserError("stljax is not installed; install the stl extra: pip install 'jaxrl_llm[stl]'") from None


def stljax_formula(spec: Spec) -> Any:
    """The stljax formula of ``spec`` (``stljax.formula`` operators over a ``[H+1, 2]`` signal)."""
    F = _stljax()
    parts = []
    for k, r in enumerate(spec.reach):
        inside = F.Predicate(f"d_R{k}", _distance(r.region.center)) <= r.region.radius
        parts.append(F.Eventually(inside, interval=[r.lo, r.hi]))
    for j, o in enumerate(spec.avoid):
        outside = F.Predicate(f"d_O{j}", _distance(o.center)) >= o.radius
        parts.append(F.Always(outside, interval=[0, spec.horizon]))
    formula = parts[0]
    for p in parts[1:]:
        formula = F.And(formula, p)
    return formula


def _distance(center: tuple[float, float]):
    return lambda x: jnp.linalg.norm(x - jnp.broadcast_to(jnp.asarray(center, jnp.float32), x.shape), axis=-1)


def robustness_stljax(spec: Spec, traj: Array) -> Array:
    """``rho(phi, x)`` computed by stljax; ``traj [..., H+1, 2] -> [...]`` (stljax sees one ``[H+1, 2]``
    signal at a time, so leading axes are vmapped)."""
    formula = stljax_formula(spec)
    fn = formula.robustness
    for _ in range(traj.ndim - 2):
        fn = jax.vmap(fn)
    return fn(traj)


def uniform_allocation(key: Array, spec: Spec, shape: tuple[int, ...] = ()) -> Array:
    """``t_{1:K}`` sampled in turn, ``t_k ~ U{max(a_k, t_{k-1} + 1), ..., b_k}``: every sample is feasible
    (in its window, strictly increasing; ``Spec`` guarantees ``b_k > b_{k-1}``). Returns
    ``[*shape, K]`` int32."""
    lo, hi = spec.windows()
    prev = jnp.full(shape, -1, jnp.int32)
    out = []
    for k, key_k in enumerate(jax.random.split(key, max(spec.num_subgoals, 1))[: spec.num_subgoals]):
        low = jnp.maximum(lo[k], prev + 1)
        t = jax.random.randint(key_k, shape, low, hi[k] + 1)
        out.append(t)
        prev = t
    return jnp.stack(out, axis=-1) if out else jnp.zeros((*shape, 0), jnp.int32)


def ordered_in_windows(alloc: Array, spec: Spec) -> Array:
    """``a_k <= t_k <= b_k`` for all k and ``t_1 < ... < t_K``; ``alloc [..., K] -> [...]`` bool."""
    lo, hi = (jnp.broadcast_to(w, alloc.shape) for w in spec.windows())
    ok = jnp.all((alloc >= lo) & (alloc <= hi), axis=-1)
    return ok & jnp.all(jnp.diff(alloc, axis=-1) > 0, axis=-1)


def feasible(alloc: Array, spec: Spec, x0: Array | None = None, max_step: float | None = None) -> Array:
    """Whether ``alloc [..., K]`` grounds ``spec`` consistently: ``ordered_in_windows`` and, given the
    largest distance ``max_step`` the system moves per step, reachable in time:

        |c_k - c_{k-1}| - r_k - r_{k-1} <= max_step (t_k - t_{k-1})    (k >= 2)
        |c_1 - x_0| - r_1              <= max_step t_1                 (when ``x0 [..., 2]`` is given)

    (necessary conditions only: obstacles may still force a detour). Returns ``[...]`` bool."""
    ok = ordered_in_windows(alloc, spec)
    if max_step is None or spec.num_subgoals == 0:
        return ok
    c, r = spec.centers(), spec.radii()
    gaps = jnp.linalg.norm(c[1:] - c[:-1], axis=-1) - r[1:] - r[:-1]  # [K-1]
    steps = jnp.diff(alloc, axis=-1)  # [..., K-1]
    ok = ok & jnp.all(jnp.broadcast_to(gaps, steps.shape) <= max_step * steps + 1e-6, axis=-1)
    if x0 is not None:
        first = jnp.linalg.norm(jnp.broadcast_to(c[0], x0.shape) - x0, axis=-1) - r[0]
        ok = ok & (first <= max_step * alloc[..., 0] + 1e-6)
    return ok
