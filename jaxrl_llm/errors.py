"""Errors that mean "the input is wrong", not "the code is wrong".

The command line (``jaxrl_llm.cli``) reports a ``UserError`` (and the few other input-error types
it names explicitly) as one line, ``error: <message>``, with a non-zero exit status; any other
exception keeps its traceback, because it is a bug to fix. So a ``UserError``'s message must say
by itself what is wrong and where (the path, the config key, the argument).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input (a path, a file's contents, an argument); the message names what and where."""
