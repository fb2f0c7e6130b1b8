"""A local search tool: BM25 over a small bundled corpus (``data/search_corpus.tsv``), no network.

The policy calls it as ``<search>capital of Peru</search>``; the result is the ``k`` best passages
(``[title] text`` per line) or an ``error: ...`` text. BM25 (Robertson & Zaragoza 2009, "The
Probabilistic Relevance Framework: BM25 and Beyond", https://doi.org/10.1561/1500000019):

    score(q, d) = sum_{w in q} idf(w) * f(w, d) (k1 + 1) / (f(w, d) + k1 (1 - b + b |d| / avgdl))
    idf(w)      = ln(1 + (N - n(w) + 0.5) / (n(w) + 0.5))

with ``f(w, d)`` the count of term ``w`` in passage ``d`` (title and text), ``n(w)`` the passages
containing ``w``, ``N`` the passages, ``k1 = 1.5``, ``b = 0.75``. Terms are lower-cased runs of
letters and digits. The search-augmented RL setting this serves: Jin et al. 2025, "Search-R1",
https://arxiv.org/abs/2503.09516; ARPO's search tool (https://arxiv.org/abs/2507.19849).

Hostile calls are observations, never exceptions: an empty or term-less query, a query longer
than ``max_query_chars`` (cut, with a note), and a search that runs past ``timeout_s`` (checked
between query terms) each give an ``error: ...`` text.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import time

CORPUS_PATH = os.path.join(os.path.dirname(__file__), "data", "search_corpus.tsv")
_TERM = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return _TERM.findall(text.lower())


def load_corpus(path: str = CORPUS_PATH) -> list[tuple[str, str]]:
    """(title, text) per non-comment line ``title<TAB>text``; a bad line raises naming file and line."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{path}:{i}: expected 'title<TAB>text', got {len(parts)} fields")
            out.append((parts[0], parts[1]))
    return out


class BM25Index:
    """An inverted index over passages with BM25 scoring (module docstring)."""

    def __init__(self, passages: list[tuple[str, str]], k1: float = 1.5, b: float = 0.75):
        if not passages:
            raise ValueError("BM25Index: no passages")
        self.passages, self.k1, self.b = passages, k1, b
        docs = [terms(f"{t} {x}") for t, x in passages]
        self.lengths = [len(d) for d in docs]
        self.avgdl = sum(self.lengths) / len(docs)
        self.postings: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        for i, d in enumerate(docs):
            for w, f in collections.Counter(d).items():
                self.postings[w].append((i, f))
        n = len(docs)
        self.idf = {w: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5)) for w, p in self.postings.items()}

    def scores(self, query: str, deadline: float = math.inf) -> dict[int, float]:
        """BM25 score per passage index that shares a term with ``query``; ``TimeoutError`` past
        ``deadline`` (``time.monotonic()``)."""
        out: dict[int, float] = collections.defaultdict(float)
        for w in terms(query):
            if time.monotonic() > deadline:
                raise TimeoutError
            for i, f in self.postings.get(w, ()):
                norm = f + self.k1 * (1.0 - self.b + self.b * self.lengths[i] / self.avgdl)
                out[i] += self.idf[w] * f * (self.k1 + 1.0) / norm
        return out

    def search(self, query: str, k: int, deadline: float = math.inf) -> list[int]:
        """The ``k`` best passage indices, best first (ties: corpus order)."""
        s = self.scores(query, deadline)
        return sorted(s, key=lambda i: (-s[i], i))[:k]


_INDEXES: dict[str, BM25Index] = {}


def index(path: str = CORPUS_PATH) -> BM25Index:
    """The BM25 index of a corpus file, built once per process."""
    if path not in _INDEXES:
        _INDEXES[path] = BM25Index(load_corpus(path))
    return _INDEXES[path]


@dataclasses.dataclass(frozen=True)
class SearchTool:
    """``search``: the ``k`` best passages of the corpus for the call's text (module docstring)."""

    name: str = "search"
    k: int = 3
    corpus: str = CORPUS_PATH
    timeout_s: float = 1.0
    max_query_chars: int = 300
    max_chars: int = 2000

    @property
    def close_tag(self) -> str:
        return f"</{self.name}>"

    def run(self, query: str) -> str:
        note = ""
        if len(query) > self.max_query_chars:
            query, note = query[: self.max_query_chars], f"note: query cut to {self.max_query_chars} characters\n"
        if not terms(query):
            return note + "error: empty query (write the words to search for between <search> and </search>)"
        try:
            hits = index(self.corpus).search(query, self.k, time.monotonic() + self.timeout_s)
        except TimeoutError:
            return note + f"error: search timed out after {self.timeout_s}s"
        except (OSError, ValueError) as e:
            return note + f"error: the search index failed: {type(e).__name__}: {e}"
        if not hits:
            return note + "no results"
        passages = index(self.corpus).passages
        text = note + "\n".join(f"[{passages[i][0]}] {passages[i][1]}" for i in hits)
        return text if len(text) <= self.max_chars else text[: self.max_chars] + "\n... [cut]"
