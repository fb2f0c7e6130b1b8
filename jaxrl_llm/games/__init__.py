"""Small built-in games for methods that need their own: a scripted red-teaming target
(``redteam``, DialTree-RPO) and a latent-strategy matrix game (``rpsls``, LSPO)."""

from jaxrl_llm.games import redteam, rpsls

__all__ = ["redteam", "rpsls"]
