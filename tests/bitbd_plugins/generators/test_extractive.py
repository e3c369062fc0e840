"""The extractive generator: sentences of the passages that support the question, each cited."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest

from bitbd.errors import ConfigError
from bitbd.interfaces import Hit, Passage, Vector
from bitbd.plugin_api import PluginContext
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.generators.extractive import ExtractiveGenerator, split_sentences
from bitbd_plugins.generators.sentences import term_name


def passage(n: int, text: str) -> Passage:
    return Passage(n, Hit(n, uuid.uuid4(), f"https://acme.example/{n}", f"Page {n}", "", text, 1.0 / n, 0.6))


PASSAGES = [
    passage(
        1,
        "# Returns\nYou can return any item within 30 days of delivery for a full refund. Our office has "
        "plants. Refunds are paid to the original payment method within 5 days.",
    ),
    passage(
        2, "# Shipping\nWe ship within 2 business days. Returns of damaged items are collected by courier at no cost."
    ),
]


async def answer(question: str, passages: list[Passage], **config: object) -> str:
    generator = ExtractiveGenerator(PluginContext("extractive", config=dict(config)))
    return "".join([piece async for piece in generator.generate(question, passages)])


async def test_answer_is_made_of_cited_supporting_sentences() -> None:
    text = await answer("How many days do I have to return an item for a refund?", PASSAGES)
    assert text.startswith("You can return any item within 30 days of delivery for a full refund. [1]")
    assert "Our office has plants" not in text, "sentences that do not bear on the question are left out"
    # Every sentence carries the marker of the passage it was taken from.
    for sentence, n in re.findall(r"([^\]]+?)\s\[(\d)\]", text):
        source = PASSAGES[int(n) - 1].hit.text
        assert sentence.strip().lstrip() in source.replace("\n", " "), sentence


async def test_best_sentence_leads_and_limits_hold() -> None:
    text = await answer("returns refund courier damaged", PASSAGES, max_sentences=2)
    assert len(re.findall(r"\[\d\]", text)) == 2
    assert text.startswith("Returns of damaged items are collected by courier at no cost. [2]")
    assert (
        await answer("returns refund courier damaged", PASSAGES, max_sentences=1)
        == "Returns of damaged items are collected by courier at no cost. [2]"
    )


async def test_with_no_shared_word_the_best_passage_opening_is_used() -> None:
    text = await answer("Can I send back something I bought?", PASSAGES)
    assert text == "You can return any item within 30 days of delivery for a full refund. [1]"


async def test_streams_in_pieces() -> None:
    generator = ExtractiveGenerator(PluginContext("extractive"))
    pieces = [p async for p in generator.generate("refund days", PASSAGES)]
    assert len(pieces) > 3


def test_markdown_is_reduced_to_prose_sentences() -> None:
    md = (
        "# Title\n\nUse the **install** command, see [the guide](https://x.example/g). It is quick.\n\n"
        "The default values are evaluated when the function is\ndefined, so that\n\n"
        "A sentence wrapped over\ntwo lines is joined again.\n"
        "```\npip install thing and more words here\n```\n- A list item that is long enough to count as a line\n"
        "| a | table | row that should be skipped entirely |\nshort."
    )
    # Headings, code, tables and fragments too short to stand alone ("It is quick.", "short.") are left out.
    # A lead-in that ends in "so that" (before a code block) says nothing on its own.
    assert split_sentences(md) == [
        "Use the install command, see the guide.",
        "A sentence wrapped over two lines is joined again.",
        "A list item that is long enough to count as a line.",
    ]


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"plugins.extractive.*max_sentences"):
        ExtractiveGenerator(PluginContext("extractive", config={"max_sentences": 0}))


# A Python docs page as chunks come from it: a fragment cut at the chunk's edge, the term as a heading, and
# a sentence that shares the question's words without answering it.
LRU = passage(
    1,
    "self instance argument is included in the cache.\n\n"
    "##### @functools.lru_cache(maxsize=128, typed=False)\n\n"
    "Decorator to wrap a function with a memoizing callable that saves up to the maxsize most recent "
    "calls. It can save time when an expensive or I/O bound function is periodically called with "
    "the same arguments.\n\n"
    "The cache is threadsafe so that the wrapped function can be used in multiple threads.\n\n"
    "Changed in version 3.8: Added the user_function option to lru_cache.\n\n"
    "```\n@lru_cache\ndef count_vowels(sentence):\n    return sum(sentence.count(v) for v in 'aeiou')\n"
    "```\n",
)
WHATS_NEW = Passage(
    2,
    Hit(
        2,
        uuid.uuid4(),
        "https://docs.example/whatsnew/3.8.html",
        "What's New In Python 3.8",
        "",
        "functools.lru_cache() can now be used as a straight decorator in addition to its use with a maxsize argument.",
        0.5,
        0.6,
    ),
)


async def meaning_answer(question: str, passages: list[Passage]) -> str:
    generator = ExtractiveGenerator(PluginContext("extractive"))
    embedder = FastEmbedder(PluginContext("fastembed"))
    generator.use_embedder(embedder.embed_queries)
    return "".join([piece async for piece in generator.generate(question, passages)])


async def test_the_sentence_that_answers_leads_with_its_neighbour_and_no_fragment_or_history_note() -> None:
    text = await meaning_answer("what does functools.lru_cache do", [LRU, WHATS_NEW])
    assert text.startswith(
        "`functools.lru_cache()`: Decorator to wrap a function with a memoizing callable that "
        "saves up to the maxsize most recent calls. [1] It can save time when"
    ), text
    for never in ("self instance argument", "Changed in version", "count_vowels", "What's New", "@functools"):
        assert never not in text, never


@pytest.mark.parametrize(
    ("heading", "name"),
    [
        ("@functools.lru_cache(maxsize=128, typed=False)", "functools.lru_cache()"),
        ("class csv.DictReader(f, fieldnames=None, restkey=None)", "csv.DictReader()"),
        ("coroutine asyncio.gather(*aws, return_exceptions=False)", "asyncio.gather()"),
        ("pop [--index] [-q|--quiet] [<stash>]", "pop"),
        ("--all", "--all"),
        ("branch.<name>.remote", "branch.<name>.remote"),
        ("os.environ", "os.environ"),
        ("Use of the library", ""),
        ("Package", ""),
        ("Examples and recipes", ""),
    ],
)
def test_a_documented_terms_heading_gives_its_name(heading: str, name: str) -> None:
    assert term_name(heading) == name


async def test_a_lead_sentence_that_does_not_name_its_term_is_said_with_it() -> None:
    doc = passage(
        1,
        "##### json.load(fp, *, cls=None, object_hook=None)\n\nDeserialize fp (a file containing a "
        "JSON document) to a Python object.\n\n##### json.loads(s, *, cls=None)\n\nThe json.loads() "
        "function deserializes s (a str instance containing a JSON document) to a Python object.",
    )
    text = await answer("how do i deserialize a json document", [doc], max_sentences=2)
    assert text == (
        "`json.load()`: Deserialize fp (a file containing a JSON document) to a Python object. [1] The "
        "json.loads() function deserializes s (a str instance containing a JSON document) to a Python "
        "object. [1]"
    ), text


async def test_a_sentence_that_refers_back_is_said_after_the_one_it_refers_to() -> None:
    refers = passage(
        1,
        "# Tokens\n\nThe secrets module generates cryptographically strong random numbers. It "
        "is the right choice for passwords, account authentication and security tokens.",
    )
    text = await meaning_answer("is it good for making password reset tokens?", [refers])
    assert text.startswith(
        "The secrets module generates cryptographically strong random numbers. [1] It is the right choice"
    ), text


def test_history_notes_fragments_and_escapes_never_become_sentences() -> None:
    md = (
        "only the tail of a sentence cut at the edge of a chunk remains here.\n\n"
        "New in version 3.2: the typed option was added to this function.\n\n"
        "Deprecated since version 3.12: use the other function, it is much better.\n\n"
        "os.path.join() joins one or more path segments intelligently.\n\n"
        r"The object\_pairs\_hook is called with the result of any object literal¶ decoded."
    )
    assert split_sentences(md) == [
        "os.path.join() joins one or more path segments intelligently.",
        "The object_pairs_hook is called with the result of any object literal decoded.",
    ]


async def test_a_lead_in_sentence_brings_the_code_it_introduces() -> None:
    venv = passage(
        1,
        "## Creating Virtual Environments\n\nTo create a virtual environment, decide upon a directory "
        "where you want to place it, and run the `venv` module as a script with the directory path:"
        "\n\n```\npython3 -m venv tutorial-env\n```\n\nThis will create the `tutorial-env` directory if "
        "it does not exist.\n\n```\nimport this\nimport that\nimport more\nimport again\nimport many\n"
        "```\n",
    )
    text = await meaning_answer("how do i create a virtual environment", [venv])
    assert text.startswith(
        "To create a virtual environment, decide upon a directory where you want to place it, "
        "and run the `venv` module as a script with the directory path: [1]\n\n```\npython3 -m "
        "venv tutorial-env\n```\n"
    ), text
    assert "import" not in text, "a long code block is never shown"


def test_chunks_are_ranked_one_by_one_within_their_pages() -> None:
    from bitbd_plugins.generators.extractive import _candidates

    first = Hit(1, uuid.uuid4(), "https://acme.example/a", "A", "", "The best chunk is about returns here.", 0.9)
    third = replace(first, chunk_id=3, text="The third chunk is about shipping here.", score=0.5)
    second = Hit(2, uuid.uuid4(), "https://acme.example/b", "B", "", "The second chunk is on another page.", 0.7)
    got = _candidates([Passage(1, first, (first, third)), Passage(2, second, (second,))])
    assert [(c.n, c.part, c.rank) for c in got] == [(1, 0, 0), (1, 1, 2), (2, 0, 1)]


async def test_inline_code_stays_code_so_placeholders_arrive_as_written() -> None:
    from bitbd.answer.markdown import sanitize

    untrack = passage(
        1,
        "# gitignore\n\nTo stop tracking a file that is currently tracked, use `git rm --cached "
        "<file>` and commit the removal.",
    )
    text = await answer("how do i stop tracking a file", [untrack])
    assert "`git rm --cached <file>`" in sanitize(text) and "&lt;" not in sanitize(text), sanitize(text)


def test_a_placeholder_outside_code_becomes_code() -> None:
    from bitbd.answer.markdown import sanitize

    [sentence] = split_sentences(
        "When creating a new branch, set up branch.<name>.remote and branch.<name>.merge configuration entries."
    )
    assert sentence == (
        "When creating a new branch, set up `branch.<name>.remote` and `branch.<name>.merge` configuration entries."
    )
    assert "&lt;" not in sanitize(sentence)


def test_abbreviations_piped_code_and_interactive_sessions_do_not_spoil_an_answer() -> None:
    from bitbd.answer.markdown import sanitize
    from bitbd_plugins.generators.sentences import analysed

    md = (
        "`Optional[X]` is equivalent to `X | None` (or `Union[X, None]`). Any valid ISO 8601 format is taken, "
        "except ordinal dates (e.g. 2002-W01) and week dates.\n\nReturn a string in ISO 8601 format:\n\n"
        "```\n>>> date(2002, 12, 4).isoformat()\n'2002-12-04'\n```\n"
    )
    said = analysed(md)
    assert [s.text for s in said] == [
        "`Optional[X]` is equivalent to X | None (or `Union[X, None]`).",  # a piped span would arrive escaped
        "Any valid ISO 8601 format is taken, except ordinal dates (e.g. 2002-W01) and week dates.",
    ]
    assert "\\`" not in sanitize(said[0].text)


async def test_compare_0_chooses_by_words_alone_among_every_sentence() -> None:
    generator = ExtractiveGenerator(PluginContext("extractive", config={"compare": 0}))
    generator.use_embedder(FastEmbedder(PluginContext("fastembed")).embed_queries)  # given, but not used
    text = "".join([p async for p in generator.generate("returns refund courier damaged", PASSAGES)])
    assert text.startswith("Returns of damaged items are collected by courier at no cost. [2]")
    assert len(re.findall(r"\[\d\]", text)) >= 2, text


async def test_sentences_prepared_at_ingestion_are_not_embedded_again() -> None:
    embedder = FastEmbedder(PluginContext("fastembed"))
    embedded: list[str] = []

    async def counting(texts: Sequence[str]) -> list[Vector]:
        embedded.extend(texts)
        return await embedder.embed_queries(texts)

    async def with_vectors(p: Passage) -> Passage:
        texts = ExtractiveGenerator.prepare(p.hit.text)
        hit = replace(p.hit, prepared=dict(zip(texts, await embedder.embed(texts), strict=True)))
        return Passage(p.n, hit, (hit,))

    question = "what does functools.lru_cache do"
    passages = [await with_vectors(LRU), await with_vectors(WHATS_NEW)]
    generator = ExtractiveGenerator(PluginContext("extractive"))
    generator.use_embedder(counting)
    prepared = "".join([piece async for piece in generator.generate(question, passages)])
    assert embedded == [question], "only the question is embedded"
    assert prepared == await meaning_answer(question, [LRU, WHATS_NEW]), "the same answer as embedding them"
