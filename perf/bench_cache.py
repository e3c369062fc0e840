"""Semantic cache: hit rate and wrong-hit rate on a realistic question stream, by similarity threshold.

    python -m perf.bench_cache [--quick]

The stream: each hand-written question of perf/questions.py and its two paraphrases (lower-case, reworded), and
pairs of look-alike questions that need different answers ("read a JSON file" / "write a JSON file"), in a
shuffled order, as visitors would ask them, plus a second round of the same stream. A lookup that hits is
"right" when the cached question is about the same topic (answered by the same page), "wrong" otherwise. Runs
bitbd's own SemanticCache on an embedded Redis, with the default embedder; no answering, so that only the
cache's decisions are measured. Appends the table with this command to perf/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from bitbd.answer.cache import SemanticCache
from bitbd.embedded.services import services
from bitbd.plugin_api import PluginContext
from bitbd.settings import CacheSettings, Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from perf.questions import NEAR_MISSES, QUESTIONS
from perf.report import append, markdown_table

THRESHOLDS = [0.85, 0.88, 0.90, 0.92, 0.95, 0.97]


async def measure(settings: Settings, quick: bool) -> list[list[str]]:
    topics = QUESTIONS[:8] if quick else QUESTIONS
    stream = [(topic, q) for topic, (q, _, paraphrases) in enumerate(topics) for q in (q, *paraphrases)]
    # Look-alike questions that need different answers: each its own topic.
    stream += [(len(topics) + i, q) for i, q in enumerate(q for pair in NEAR_MISSES for q in pair)]
    random.Random(7).shuffle(stream)
    stream = stream + stream  # the same visitors' questions come again later
    embedder = FastEmbedder(PluginContext("fastembed"))
    vectors = await embedder.embed_queries([q for _, q in stream])
    redis = aioredis.Redis.from_url(settings.redis.url.get_secret_value())
    rows = []
    try:
        for threshold in THRESHOLDS:
            cache = SemanticCache(redis, CacheSettings(threshold=threshold), "bench")
            tenant = uuid.uuid4()
            topic_of: dict[str, int] = {}
            right = wrong = 0
            lookups = []
            for (topic, question), vector in zip(stream, vectors, strict=True):
                started = time.perf_counter()
                hit = await cache.get(tenant, "ns", 1, vector, question)
                lookups.append(time.perf_counter() - started)
                if hit is None:
                    await cache.put(tenant, "ns", 1, vector, question, f"answer about topic {topic}", [])
                    topic_of[question] = topic
                elif topic_of[hit.question] == topic:
                    right += 1
                else:
                    wrong += 1
            n = len(stream)
            lookups.sort()
            rows.append(
                [
                    f"{threshold:.2f}",
                    f"{(right + wrong) / n:.1%}",
                    f"{right / n:.1%}",
                    f"{wrong / n:.1%}",
                    f"{lookups[len(lookups) // 2] * 1000:.2f} ms",
                ]
            )
            await redis.delete(cache.key(tenant, "ns", 1))
    finally:
        await redis.aclose()
    return rows


def main() -> int:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as data, services(Settings(data_dir=Path(data)), "bench") as running:
        rows = asyncio.run(measure(running, quick))
    table = markdown_table(["threshold", "hit rate", "right hits", "wrong hits", "median lookup"], rows)
    print(table)
    if not quick:
        n = (len(QUESTIONS) * 3 + len(NEAR_MISSES) * 2) * 2
        append(
            "Semantic cache hit rate",
            f"{n} questions: {len(QUESTIONS)} topics x 3 phrasings and {len(NEAR_MISSES)} look-alike pairs, "
            "shuffled, asked twice; a hit is right when the cached question has the same topic; the most a "
            f"cache can hit is {1 - (len(QUESTIONS) + 2 * len(NEAR_MISSES)) / n:.1%}",
            table,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
