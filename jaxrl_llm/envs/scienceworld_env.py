"""ScienceWorld tasks on the ``envs.base`` protocol (optional extra ``agents``: ``scienceworld==1.2.3``,
which runs a Java simulator: a JRE must be on the machine).

ScienceWorld (Wang et al. 2022, "ScienceWorld: Is your Agent Smarter than a 5th Grader?",
https://arxiv.org/abs/2203.07540, https://github.com/allenai/ScienceWorld) is the benchmark of
EPO (entropy-regularized; Xu et al. 2025, https://arxiv.org/abs/2509.22576). One task
(``task``, e.g. ``boil``), its variation drawn from the seed (``seed % number of variations``):

* ``instructions``: the task description; the first observation is the room's ``look around``.
* ``reward``: the change of the task score (0..100) divided by 100, so an episode's return is its
  final score in [0, 1] (a failed task drops to -100: the return goes negative); ``success`` when
  the score reaches 100.
* Invalid actions: the simulator's "No known action matches that input." (or an ambiguous
  action) is reported as ``info["invalid"]``; the state is unchanged.
* ``anchor``: (room description, inventory) text, the state the agent can see.

Each instance starts its own simulator process (about 1.5 s); the rollout builds one per episode.
"""

from __future__ import annotations

from collections.abc import Hashable

from jaxrl_llm.envs.base import Step

try:
    import scienceworld
except ImportError:  # the optional extra is not installed; ScienceWorldEnv says so when built
    scienceworld = None

_INVALID = ("No known action matches that input.", "Ambiguous request")


class ScienceWorldEnv:
    """One ScienceWorld task as an ``Env`` (module docstring)."""

    def __init__(self, task: str = "boil", simplifications: str = "easy", step_limit: int = 100):
        if scienceworld is None:
            raise ImportError("env 'scienceworld' needs the optional package: pip install 'jaxrl_llm[agents]'")
        self.sim = scienceworld.ScienceWorldEnv("", envStepLimit=int(step_limit))
        if task not in self.sim.get_task_names():
            names = self.sim.get_task_names()
            self.sim.close()
            raise ValueError(f"env.kwargs.task: unknown ScienceWorld task {task!r}; known: {names}")
        self.task, self.simplifications = task, simplifications
        self.sim.load(task, 0, simplifications)
        self.instructions = self.sim.get_task_description()
        self.score = 0.0

    def reset(self, seed: int) -> str:
        variation = int(seed) % self.sim.get_max_variations(self.task)
        self.sim.load(self.task, variation, self.simplifications)
        observation, _ = self.sim.reset()
        self.instructions = self.sim.get_task_description()
        self.score = 0.0
        return observation.strip()

    def step(self, action: str) -> Step:
        text = " ".join(action.strip().split()) or "(empty)"
        observation, _, done, info = self.sim.step(text)
        if observation.startswith(_INVALID):
            return Step(observation, 0.0, False, {"invalid": True, "reason": f"{observation} ({text[:40]!r})"})
        score = float(info["score"])
        reward = (score - self.score) / 100.0
        self.score = score
        return Step(observation.strip(), reward, bool(done), {"success": score >= 100.0, "score": score})

    @property
    def anchor(self) -> Hashable:
        return (self.sim.look(), self.sim.inventory())

    def close(self) -> None:
        self.sim.close()
