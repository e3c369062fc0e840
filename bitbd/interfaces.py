"""What plugins implement: sources, embedders, vector stores and answer generators."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, in order, with the headings it sits under."""

    position: int
    text: str
    content_hash: str
    heading_path: list[str] = field(default_factory=list)
    embedding: Vector | None = None


@dataclass(frozen=True)
class Hit:
    """One search result, best first."""

    chunk_id: int
    document_id: uuid.UUID
    url: str
    title: str
    heading: str
    text: str
    score: float


@dataclass(frozen=True)
class Passage:
    """A numbered source handed to an answer generator."""

    n: int
    hit: Hit


class Source(ABC):
    """A kind of source (``web``, ``upload``, ...); how it finds and fetches documents is its own business."""

    type: ClassVar[str]

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config


class Embedder(ABC):
    """Turns text into unit vectors of a fixed dimension."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of the vectors this embedder returns."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Embed a small batch of texts, in order."""


class VectorStore(ABC):
    """Stores chunks with their embeddings, per tenant, and finds the nearest ones."""

    name: ClassVar[str]

    @abstractmethod
    async def check(self, dimension: int) -> None:
        """Fail with a clear message if vectors of ``dimension`` cannot be stored."""

    @abstractmethod
    async def replace_chunks(self, tenant_id: uuid.UUID, document_id: uuid.UUID, chunks: Sequence[Chunk]) -> int:
        """Make ``chunks`` the document's chunks in one transaction; returns how many were written."""

    @abstractmethod
    async def delete_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        """Delete a document and its chunks in one transaction; False if it did not exist."""

    @abstractmethod
    async def search(self, tenant_id: uuid.UUID, vector: Vector, k: int) -> list[Hit]:
        """The ``k`` chunks of this tenant nearest to ``vector``, best first."""


class AnswerGenerator(ABC):
    """Writes an answer from numbered passages, streamed in pieces."""

    name: ClassVar[str]

    @abstractmethod
    def generate(self, question: str, passages: Sequence[Passage]) -> AsyncIterator[str]:
        """Yield the answer's text in pieces, citing passages as ``[n]``."""
