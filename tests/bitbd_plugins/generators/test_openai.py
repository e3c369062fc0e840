"""The openai generator against a stand-in server speaking the real SSE wire format on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from bitbd.errors import PluginError
from bitbd.interfaces import AnswerCut, GeneratorUnavailable, Hit, Passage, Turn
from bitbd.plugin_api import PluginContext
from bitbd_plugins.generators.openai import OpenAIGenerator
from tests.llm import UNINSTRUCTED, fake_llm

PASSAGES = [
    Passage(1, Hit(1, uuid.uuid4(), "https://acme.example/returns", "Returns", "", "Return within 30 days.", 0.1, 0.7))
]


def generator(url: str, **config: object) -> OpenAIGenerator:
    return OpenAIGenerator(PluginContext("openai", config={"base_url": url, "model": "fake-model", **config}))


async def collect(gen: OpenAIGenerator, history: tuple[Turn, ...] = ()) -> list[str]:
    return [piece async for piece in gen.generate("How long can I return things?", PASSAGES, history)]


async def test_streams_tokens_and_sends_numbered_sources_with_the_instruction() -> None:
    async with fake_llm() as llm:
        gen = generator(llm.url, api_key="sk-llm-secret")
        pieces = await collect(gen, (Turn("user", "Hi"), Turn("assistant", "Hello [1]")))
        await gen.close()
    assert "".join(pieces) == llm.answer and len(pieces) > 3, "tokens pass through as they arrive"
    body = llm.requests[0]
    assert body["model"] == "fake-model" and body["stream"] is True
    *turns, user = body["messages"]
    assert turns == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello [1]"}]
    assert user["role"] == "user", "no system message by default: some chat formats drop it"
    instruction, sources = user["content"].split("\n\nSources:\n\n")
    assert "only the numbered sources" in instruction and "[n]" in instruction
    assert "I don't know based on the available documents." in instruction
    assert sources.startswith("[1] Returns (https://acme.example/returns)\nReturn within 30 days.")
    assert sources.endswith("Question: How long can I return things?")
    assert llm.headers[0]["Authorization"] == "Bearer sk-llm-secret"


async def test_the_instruction_reaches_a_model_whose_chat_format_drops_system_messages() -> None:
    async with fake_llm(system_role=False) as llm:
        as_user, as_system = generator(llm.url), generator(llm.url, instruction_role="system")
        assert "".join(await collect(as_user)) == llm.answer
        assert "".join(await collect(as_system)) == UNINSTRUCTED, "the stand-in drops the system message"
        system, user = llm.requests[1]["messages"]
        assert system["role"] == "system" and "cite the source" in system["content"]
        assert "cite the source" not in user["content"] and user["content"].startswith("Sources:")
        await as_user.close()
        await as_system.close()


async def test_an_answer_that_ran_into_max_tokens_is_cut_not_finished() -> None:
    async with fake_llm(finish="length", answer="Items can be returned within 30 days and then and then") as llm:
        gen = generator(llm.url, max_tokens=12)
        pieces: list[str] = []
        with pytest.raises(AnswerCut, match=r"max_tokens \(12\)") as cut:
            async for piece in gen.generate("q", PASSAGES):
                pieces.append(piece)
        assert cut.value.stopped == "length" and "".join(pieces) == llm.answer, "what was written is kept"
        assert llm.requests[0]["max_tokens"] == 12
        await gen.close()


async def test_a_stream_that_ends_without_a_finish_reason_is_cut() -> None:
    async with fake_llm(finish=None) as llm:
        gen = generator(llm.url)
        with pytest.raises(AnswerCut, match=r"with \[DONE\] but no finish_reason") as cut:
            await collect(gen)
        assert cut.value.stopped == "no_finish"
        await gen.close()


async def test_markers_of_sources_the_model_was_not_given_are_removed() -> None:
    async with fake_llm(answer="Within 30 days [1][4], sale items never [7]. See [2] and `a[5]`.") as llm:
        gen = generator(llm.url)
        text = "".join(await collect(gen))  # word by word: markers arrive split from their words
        await gen.close()
    assert text == "Within 30 days [1], sale items never. See and `a[5]`.", text


def long_passages(count: int, words: int) -> list[Passage]:
    return [
        Passage(
            n,
            Hit(
                n,
                uuid.uuid4(),
                f"https://acme.example/p{n}",
                f"Page {n}",
                "",
                " ".join(f"word{n}x{i}" for i in range(words)),
                0.1,
                0.7,
            ),
        )
        for n in range(1, count + 1)
    ]


async def test_the_prompt_stays_within_its_token_budget_and_cites_only_what_it_holds() -> None:
    counted = 0

    def count(text: str) -> int:  # a stand-in tokenizer: a token a word
        nonlocal counted
        counted += 1
        return len(text.split())

    passages = long_passages(8, 300)
    async with fake_llm(answer="See [1], [3] and [6].") as llm:
        gen = generator(llm.url, max_prompt_tokens=1000)
        gen.use_token_counter(count)
        history = tuple(Turn("user" if i % 2 == 0 else "assistant", "earlier " * 100) for i in range(6))
        text = "".join([p async for p in gen.generate("what is on the pages?", passages, history)])
        await gen.close()
    assert counted, "the tokenizer given was used"
    messages = llm.requests[0]["messages"]
    assert sum(count(m["content"]) for m in messages) <= 1000
    user = messages[-1]["content"]
    assert "[1] Page 1" in user and "[3] Page 3" in user and "[4] Page 4" not in user, "in rank order, cut to fit"
    assert 0 < len(messages) - 1 <= 2 and messages[0]["role"] == "user", "the latest turns, a user's first"
    assert text == "See [1], [3] and.", "[6] was not sent to the model, so it cannot be cited"


async def test_a_one_slot_server_that_interrupts_gets_one_request_at_a_time() -> None:
    async with fake_llm(busy="interrupt", delay=0.05, answer="one two three four five six [1]") as llm:
        crowded = generator(llm.url, max_concurrent=2)
        first, _ = await asyncio.gather(collect(crowded), collect(crowded), return_exceptions=True)
        assert isinstance(first, AnswerCut) and first.stopped == "no_finish", "what two at once do to such a server"
        await crowded.close()
        gen = generator(llm.url)  # max_concurrent = 1, the default
        llm.most_active = 0
        answers = await asyncio.gather(*(collect(gen) for _ in range(3)))
        await gen.close()
    assert ["".join(a) for a in answers] == [llm.answer] * 3 and llm.most_active == 1


async def test_waiting_for_a_slot_does_not_count_against_the_first_token_timeout() -> None:
    # Each answer takes ~0.6 s, the first-token timeout is 0.4 s: a second request sent at once to a server that
    # queues would get its first token too late; waiting for the slot in bitbd it does not.
    async with fake_llm(busy="queue", delay=0.1, answer="one two three four five six [1]") as llm:
        gen = generator(llm.url, connect_timeout=0.4)
        first, second = await asyncio.gather(collect(gen), collect(gen))
        assert "".join(first) == "".join(second) == llm.answer
        assert gen.slots.snapshot()["wait_p95_ms"] >= 400 and gen.slots.in_flight == 0
        impatient = generator(llm.url, max_wait=0.2)
        results = await asyncio.gather(collect(impatient), collect(impatient), return_exceptions=True)
        assert isinstance(results[1], GeneratorUnavailable) and "no free request slot" in str(results[1])
        assert "".join(results[0]) == llm.answer  # type: ignore[arg-type]
        await gen.close()
        await impatient.close()


@pytest.mark.parametrize("mode", ["error", "garbage"])
async def test_a_failing_server_is_unavailable_before_any_token(mode: str) -> None:
    async with fake_llm(mode=mode) as llm:
        gen = generator(llm.url)
        with pytest.raises(GeneratorUnavailable):
            await collect(gen)
        await gen.close()


async def test_an_unreachable_server_is_unavailable_at_once() -> None:
    gen = generator("http://127.0.0.1:9/v1")  # discard port: connection refused
    with pytest.raises(GeneratorUnavailable, match=r"127.0.0.1:9"):
        await collect(gen)
    await gen.close()


async def test_a_hanging_server_times_out_within_the_setting() -> None:
    async with fake_llm(mode="hang") as llm:
        gen = generator(llm.url, connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(GeneratorUnavailable):
            await collect(gen)
        assert time.monotonic() - started < 3
        await gen.close()


async def test_a_stream_cut_midway_is_an_error_not_a_silent_half_answer() -> None:
    async with fake_llm(mode="cut") as llm:
        gen = generator(llm.url)
        pieces: list[str] = []
        with pytest.raises(PluginError, match=r"stopped in the middle"):
            async for piece in gen.generate("q", PASSAGES):
                pieces.append(piece)
        assert pieces, "the tokens before the cut were streamed"
        await gen.close()
