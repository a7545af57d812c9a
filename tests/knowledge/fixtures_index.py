"""Fixtures and helpers for the index tests (embeddings, store, retriever, ingest, CLI).

Test modules import what they use (``from fixtures_index import embedder, ...``). The
embedding model is loaded once per process by :func:`knowledge.embeddings.load_embedder`,
so every module's ``embedder`` fixture shares it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from knowledge.embeddings import Embedder, SentenceTransformerEmbedder, load_embedder
from knowledge.index import KnowledgeBase
from knowledge.retriever import Retriever
from knowledge.settings import KnowledgeSettings

# A small generic help centre (a coffee-machine shop), one short article per topic.
CORPUS: dict[str, str] = {
    "machines/descaling.md": (
        "# Descaling your machine\n\nDescale the Brewmaster 300 espresso machine every two months. Fill the water "
        "tank with descaling solution and run the cleaning cycle for 20 minutes, then rinse twice with clean water.\n"
    ),
    "machines/error-codes.md": (
        "# Error codes\n\n## E17\n\nError E17 means the water tank is empty or not seated correctly. Refill it and "
        "push it down until it clicks.\n\n## E42\n\nError E42 means the grinder is jammed by an oily bean. Unplug the "
        "machine and clear the burrs with the brush.\n"
    ),
    "machines/grinder.md": (
        "# Grind settings\n\nThe grinder has 15 settings. Use setting 3 to 5 for espresso and 10 to 12 for a French "
        "press. Finer grounds extract more slowly.\n"
    ),
    "shop/returns.md": (
        "# Returns and refunds\n\nUnused items can be returned within 30 days of delivery for a full refund. "
        "Shipping costs are not refunded. Start a return from the Orders page.\n"
    ),
    "shop/shipping.md": (
        "# Shipping\n\nShipping to Canada and Mexico takes 5 to 8 business days. Express shipping is available for "
        "an extra fee. You can change the delivery address until the order ships.\n"
    ),
    "shop/payments.txt": (
        "Payment methods\n\nWe accept Visa, Mastercard, American Express, PayPal and Apple Pay. Your card is charged "
        "when the order ships.\n"
    ),
    "account/password.md": (
        "# Resetting your password\n\nClick Forgot password on the sign-in page and follow the link we email you. "
        "The link is valid for one hour.\n"
    ),
    "faq.csv": (
        "id,question,answer\n"
        "warranty,How long is the warranty?,The warranty covers manufacturing defects for two years.\n"
        "gift-cards,Do gift cards expire?,Gift cards never expire and work for any product except shipping.\n"
        "support-hours,When is support open?,Our chat support answers Monday to Friday from 9:00 to 18:00 CET.\n"
    ),
}

UNRELATED_QUERIES = [
    "what is the capital of France",
    "write me a poem about the sea",
    "how many legs does a spider have",
    "who painted the Mona Lisa",
    "recommend a science fiction novel",
]


@pytest.fixture(scope="module")
def corpus_kb(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Iterator[KnowledgeBase]:
    """A knowledge base of :data:`CORPUS`, ingested once per test module."""
    opened = open_kb(make_bot(tmp_path_factory.mktemp("corpus"), CORPUS), embedder)
    assert not opened.ingest().failed
    yield opened
    opened.close()


def retriever_of(kb: KnowledgeBase, embedder: Embedder, *, settings: dict[str, Any] | None = None,
                 **kwargs: Any) -> Retriever:
    """A new retriever over ``kb``'s index with ``embedder``, ``kb``'s settings changed by
    ``settings`` and :class:`Retriever` arguments ``kwargs``."""
    return Retriever(store=kb.store, lexical=kb.lexical, embedder=embedder,
                     settings=kb.settings.model_copy(update=settings or {}), origins=kb.retriever._origins, **kwargs)


class RecordingEmbedder(Embedder):
    """Embeds with ``inner`` and records each batch of queries in ``batches``: the base of
    test doubles that watch or hold query embedding."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self.batches: list[list[str]] = []

    @property
    def model(self) -> Any:
        """The wrapped model (its tokenizer's words keep spelling correction the same)."""
        return self.inner.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return self.inner.embed_queries(texts)


class CountingEmbedder(Embedder):
    """Wraps an embedder and counts the texts it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The default embedder (bundled all-MiniLM-L6-v2 on CPU), loaded once per process."""
    return load_embedder(device="cpu", batch_size=32)


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (name → text or bytes) under ``folder``."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def make_bot(tmp_path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A bot directory with ``knowledge/`` holding ``files`` (default: :data:`CORPUS`)."""
    bot = tmp_path / "bot"
    write_files(bot / "knowledge", dict(CORPUS) if files is None else files)
    return bot


def open_kb(bot: Path, embedder: Embedder, **settings: object) -> KnowledgeBase:
    """The knowledge base of ``bot`` (data in ``bot/data``) using ``embedder``."""
    knowledge_settings = KnowledgeSettings(**settings)  # type: ignore[arg-type]
    return KnowledgeBase.open(knowledge_settings, bot, bot / "data", embedder=embedder)


def index_ids(kb: KnowledgeBase) -> tuple[set[str], set[str], set[str]]:
    """(Chroma ids, manifest ids, FTS ids) of a knowledge base."""
    manifest_ids = {cid for entry in kb.manifest.entries().values() for cid in entry.chunk_ids}
    return kb.store.ids(), manifest_ids, kb.lexical.ids()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` server on 127.0.0.1 (its URL), stopped at teardown."""
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(chroma).exists():
        pytest.skip("the chroma CLI (installed with chromadb) is not on PATH")
    port = _free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [chroma, "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}: {(folder / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
