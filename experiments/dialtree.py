"""DialTree-RPO (https://arxiv.org/abs/2510.02286) on a SAFE toy red-teaming game: SmolLM2-135M-
Instruct as the attacker against the scripted target of ``jaxrl_llm.games.redteam`` (it says a
made-up code word only after both of the goal's context topics were raised), CPU scale.

Stand-ins (said plainly): the frozen target LLM, the HarmAug-Guard classifier and the NLI topic
filter of the paper are rules here (a finite-state target, "the code word is in the reply", a
keyword filter); the attacker is not SFT-initialised (the paper SFTs on 397 dialogues first).

Setting: 2 goals per step, a tree each with n = 4 attacker turns per live state, width w = 8,
T_max = 3 turns, at most G = 8 paths per goal, turns of at most 48 tokens, adaptive format mask,
beta = 0.001 (k3 vs the starting model), Adam lr 1e-6, 10 steps.

Contrasts at the same number of attacker turns per step: ``--set algo.width=1 --set
algo.branching=8`` keeps one live state per turn (a near-linear rollout, the paper's "linear GRPO"
side), and ``--set algo.adaptive_mask=false`` is the mask ablation.

Commands:
    jaxrl-llm train dialtree
    jaxrl-llm train dialtree --set name=dialtree_nomask --set algo.adaptive_mask=false

What to read (``metrics.jsonl``): ``dialtree/success`` (goals with a jailbroken leaf),
``dialtree/malformed_frac`` (the paper: it climbs without the adaptive mask),
``dialtree/off_topic_frac``, ``dialtree/queries_per_success``, ``dialtree/valid_rows``.
Hardware and time: the project's 2-core CPU machine, f32; measured numbers are in
``experiments/results/dialtree.md`` (none are claimed here).
"""

from bases import episodes  # experiments/bases/: load_experiment puts experiments/ on sys.path

from jaxrl_llm.algorithms import dialtree
from jaxrl_llm.config import Config


def get_config() -> Config:
    return episodes.config(
        "dialtree",
        dialtree.Config(branching=4, width=8, max_turns=3),
        model="smollm2-135m-instruct",
        max_prompt_len=128,
        max_new_tokens=48,
        learning_rate=1e-6,
        steps=10,
        prompts_per_step=2,
        group_size=8,
        checkpoint_every=0,
    )
