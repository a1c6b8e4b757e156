"""Conversation imports: OASST2 trees give one prompt per tree or per answered user turn (with
its ancestors as the conversation), filtered by language, deleted branches left out; TRL's
conversational files import as they are; a prompt import may keep the file's answers as
demonstrations. Parsers first, then the admin form and the API."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.errors import InvalidInput
from app.main import create_app
from app.models import Demonstration, Project, Prompt, Role
from app.projects.demonstration_import import parse_demonstrations
from app.projects.demonstrations import DEMONSTRATIONS
from app.projects.imports import PROMPTS, ImportKind, ImportOutcome
from app.projects.prompt_import import Oasst2Options, parse_prompts
from app.tokens import service as tokens
from rankloop.cli import app as cli
from tests.factories import make_project, make_user
from tests.helpers import login
from tests.projects.conftest import turns

Node = dict[str, Any]


def node(mid: str, role: str, text: str, *replies: Node, **extra: Any) -> Node:
    return {"message_id": mid, "role": role, "text": text, "replies": list(replies), **extra}


def user(mid: str, text: str, *replies: Node, **extra: Any) -> Node:
    return node(mid, "prompter", text, *replies, **extra)


def bot(mid: str, text: str, *replies: Node, **extra: Any) -> Node:
    return node(mid, "assistant", text, *replies, **extra)


# Four trees, as in 2023-11-05_oasst2_ready.trees.jsonl: `lang` on the roots and on the messages
# that differ from their parent. User turns with an assistant reply: p1, p2, p4, p8 (German)
# and the German root; deleted: p3 and p5 under it, and tree 3 (two user turns); unanswered:
# p6, p7 (its only reply was rejected in review) and the root of tree 4.
TREES = [
    user(
        "p1",
        "How do plants make food?",
        bot(
            "a1",
            "By photosynthesis.",
            user(
                "p2",
                "What does it need?",
                bot(
                    "a3",
                    "Light, water and CO2.",
                    user("p4", "And at night?", bot("a5", "Rest.")),
                    rank=0,
                ),
                bot("a4", "Sunlight.", rank=1),
            ),
            user(
                "p3",
                "Spam",
                bot("a6", "Huh?", user("p5", "More spam", bot("a7", "No."))),
                deleted=True,
            ),
            rank=0,
        ),
        bot(
            "a2",
            "Chlorophyll does it.",
            user("p6", "Nobody answered me."),
            user("p7", "Only a rejected answer.", bot("a8", "Rude.", review_result=False)),
            user("p8", "Auf Deutsch bitte?", bot("a9", "Mit Licht."), lang="de"),
            rank=1,
        ),
        lang="en",
    ),
    user("q1", "Wie spät ist es?", bot("b1", "Keine Ahnung."), lang="de"),
    user(
        "d1",
        "Deleted tree",
        bot("e1", "Reply", user("d2", "Follow-up", bot("e2", "."))),
        deleted=True,
        lang="en",
    ),
    user("u1", "A question nobody answered", lang="en"),
]


def jsonl(*records: Any) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def tree_file(trees: list[Node] = TREES) -> bytes:
    return jsonl(*({"message_tree_id": t["message_id"], "prompt": t} for t in trees))


def message_lines(trees: list[Node] = TREES) -> list[dict[str, Any]]:
    """The trees as the message dumps give them: one line per message, parent_id for nesting,
    every message carrying its `lang` (OASST2 sets it on each)."""
    lines: list[dict[str, Any]] = []

    def walk(n: Node, parent: str | None, lang: str | None) -> None:
        lang = n.get("lang", lang)
        fields = {k: v for k, v in n.items() if k != "replies"}
        lines.append({**fields, "parent_id": parent, "lang": lang})
        for reply in n["replies"]:
            walk(reply, n["message_id"], lang)

    for tree in trees:
        walk(tree, None, None)
    return lines


def options(turns: str = "first", lang: str = "") -> Oasst2Options:
    return Oasst2Options.of(turns, lang, default=Oasst2Options())


def texts(items: list[Any]) -> list[Any]:
    return [getattr(item, "content", None) or getattr(item, "prompt", None) for item in items]


# OASST2: counts per setting


@pytest.mark.parametrize(
    ("turns", "lang", "prompts", "left_out"),
    [
        ("first", "", 3, (1, 0, 0)),
        ("first", "en", 2, (1, 1, 0)),
        ("all", "", 5, (4, 0, 3)),
        ("all", "en", 3, (4, 2, 3)),
        ("all", "de, EN", 5, (4, 0, 3)),
    ],
)
def test_oasst2_trees_give_prompts_per_setting(
    turns: str, lang: str, prompts: int, left_out: tuple[int, int, int]
) -> None:
    result = parse_prompts(tree_file(), "oasst2.trees.jsonl", None, options(turns, lang))

    assert result.errors == []
    assert len(result.prompts) == prompts
    counts = result.oasst2
    assert counts is not None
    assert (counts.deleted, counts.other_language, counts.unanswered) == left_out
    first, every = {"": (3, 5), "en": (2, 3), "de, EN": (3, 5)}[lang]
    assert (counts.first_turns, counts.every_turn) == (first, every)


def test_the_default_keeps_one_prompt_per_tree_as_before() -> None:
    result = parse_prompts(tree_file(), "oasst2.trees.jsonl")

    assert texts(result.prompts) == [
        "How do plants make food?",
        "Wie spät ist es?",
        "A question nobody answered",
    ]
    assert [p.line for p in result.prompts] == [1, 2, 4]
    assert result.ignored == 1  # the deleted tree
    assert result.oasst2 is not None
    assert result.oasst2.setting == Oasst2Options()


def test_every_turn_carries_its_ancestors_in_order() -> None:
    result = parse_prompts(tree_file(), "oasst2.trees.jsonl", None, options("all", "en"))

    assert texts(result.prompts) == [
        "How do plants make food?",
        turns("How do plants make food?", "By photosynthesis.", "What does it need?"),
        turns(
            "How do plants make food?",
            "By photosynthesis.",
            "What does it need?",
            "Light, water and CO2.",
            "And at night?",
        ),
    ]
    assert [p.response for p in result.prompts] == [
        "By photosynthesis.",
        "Light, water and CO2.",
        "Rest.",
    ]


def test_message_lines_in_any_order_give_what_the_trees_give() -> None:
    lines = message_lines()
    random.Random(7).shuffle(lines)
    for turns_setting, lang in [("first", ""), ("all", ""), ("all", "en")]:
        chosen = options(turns_setting, lang)
        from_lines = parse_prompts(jsonl(*lines), "messages.jsonl", None, chosen)
        from_trees = parse_prompts(tree_file(), "trees.jsonl", None, chosen)

        assert from_lines.errors == []
        assert sorted(map(repr, texts(from_lines.prompts))) == sorted(
            map(repr, texts(from_trees.prompts))
        )
        assert from_lines.oasst2 is not None
        assert from_trees.oasst2 is not None
        assert from_lines.oasst2 == from_trees.oasst2


def test_a_message_without_lang_takes_its_parents() -> None:
    lines = [
        {"message_id": "r", "parent_id": None, "role": "prompter", "text": "Hola", "lang": "es"},
        {"message_id": "a", "parent_id": "r", "role": "assistant", "text": "¡Hola!"},
        {"message_id": "f", "parent_id": "a", "role": "prompter", "text": "¿Qué tal?"},
        {"message_id": "b", "parent_id": "f", "role": "assistant", "text": "Bien."},
    ]

    result = parse_prompts(jsonl(*lines), "m.jsonl", None, options("all", "en"))

    assert result.prompts == []
    assert result.oasst2 is not None
    assert result.oasst2.other_language == 2


def test_demonstrations_take_every_answered_turn_by_default_and_first_turns_on_request() -> None:
    every = parse_demonstrations(tree_file(), "trees.jsonl")
    first = parse_demonstrations(tree_file(), "trees.jsonl", None, options("first"))
    english = parse_demonstrations(tree_file(), "trees.jsonl", None, options("all", "en"))

    assert [d.response for d in every.demonstrations] == [
        "By photosynthesis.",
        "Light, water and CO2.",
        "Rest.",
        "Mit Licht.",
        "Keine Ahnung.",
    ]
    assert every.demonstrations[3].prompt == turns(
        "How do plants make food?", "Chlorophyll does it.", "Auf Deutsch bitte?"
    )
    assert [d.response for d in first.demonstrations] == ["By photosynthesis.", "Keine Ahnung."]
    assert first.oasst2 is not None
    assert first.oasst2.every_turn == 5
    assert len(english.demonstrations) == 3
    assert english.ignored == 3  # the German tree, the deleted one, the unanswered one


def test_a_broken_link_is_an_error_only_where_the_setting_takes_the_turn() -> None:
    lines = [
        {"message_id": "r", "parent_id": None, "role": "prompter", "text": "Root"},
        {"message_id": "f", "parent_id": "gone", "role": "prompter", "text": "Orphan"},
        {"message_id": "b", "parent_id": "f", "role": "assistant", "text": "Answer"},
    ]

    first = parse_prompts(jsonl(*lines), "m.jsonl", None, options("first"))
    every = parse_prompts(jsonl(*lines), "m.jsonl", None, options("all"))

    assert (texts(first.prompts), first.errors) == (["Root"], [])
    assert [(e.line, "'gone'" in e.message) for e in every.errors] == [(2, True)]
    assert every.prompts == []  # the root has no reply


@pytest.mark.parametrize(("turns_setting", "lang"), [("some", ""), ("all", "english!")])
def test_an_unknown_setting_is_refused(turns_setting: str, lang: str) -> None:
    with pytest.raises(InvalidInput):
        options(turns_setting, lang)


# OASST2: any tree


@st.composite
def trees(draw: st.DrawFn) -> list[Node]:
    """Small OASST2 forests: alternating roles, random ranks, deletions and languages."""
    counter = iter(range(10_000))

    def message(role: str, depth: int) -> Node:
        mid = f"m{next(counter)}"
        extra: dict[str, Any] = {"rank": draw(st.integers(0, 2))}
        if draw(st.integers(0, 5)) == 0:
            extra["deleted"] = True
        if draw(st.integers(0, 4)) == 0:
            extra["lang"] = draw(st.sampled_from(["en", "de"]))
        replies = []
        if depth < 4:
            other = "assistant" if role == "prompter" else "prompter"
            replies = [message(other, depth + 1) for _ in range(draw(st.integers(0, 2)))]
        return node(mid, role, f"text {mid}", *replies, **extra)

    forest = [message("prompter", 0) for _ in range(draw(st.integers(1, 3)))]
    for root in forest:
        root["lang"] = draw(st.sampled_from(["en", "de"]))
    return forest


@settings(max_examples=60, deadline=None)
@given(
    forest=trees(),
    turns_setting=st.sampled_from(["first", "all"]),
    lang=st.sampled_from(["", "en"]),
)
def test_any_forest_reads_the_same_as_trees_and_as_message_lines(
    forest: list[Node], turns_setting: str, lang: str
) -> None:
    chosen = options(turns_setting, lang)
    from_trees = parse_prompts(tree_file(forest), "t.jsonl", None, chosen)
    from_lines = parse_prompts(jsonl(*message_lines(forest)), "m.jsonl", None, chosen)

    assert from_trees.errors == from_lines.errors == []
    assert [(p.content, p.response) for p in from_trees.prompts] == sorted(
        ((p.content, p.response) for p in from_lines.prompts),
        key=lambda pair: [  # the lines' order is the trees' depth-first order
            repr(p.content) for p in from_trees.prompts
        ].index(repr(pair[0])),
    )
    counts = from_trees.oasst2
    assert counts is not None
    assert counts == from_lines.oasst2
    expected = counts.first_turns if turns_setting == "first" else counts.every_turn
    assert len(from_trees.prompts) == expected
    for prompt in from_trees.prompts:
        conversation = (
            [{"role": "user", "content": prompt.content}]
            if isinstance(prompt.content, str)
            else prompt.content
        )
        assert [m["role"] for m in conversation] == ["user", "assistant"] * (
            len(conversation) // 2
        ) + ["user"]
        if turns_setting == "all":
            assert prompt.response is not None


# TRL conversational files


SYSTEM = {"role": "system", "content": "Answer in one word."}


def test_trl_conversational_prompts_import_as_they_are() -> None:
    prompt_only = [SYSTEM, {"role": "user", "content": "Sky colour?"}]
    preference = [{"role": "user", "content": "Grass colour?"}]
    data = jsonl(
        {"prompt": prompt_only},
        {
            "prompt": preference,
            "chosen": [{"role": "assistant", "content": "Green."}],
            "rejected": [{"role": "assistant", "content": "Blue."}],
        },
    )

    result = parse_prompts(data, "trl.jsonl")

    assert result.errors == []
    assert result.format == "plain"
    assert texts(result.prompts) == [prompt_only, "Grass colour?"]
    assert [p.response for p in result.prompts] == [None, "Green."]
    assert result.oasst2 is None


def test_trl_conversational_sft_messages_are_demonstrations() -> None:
    chat = [SYSTEM, *turns("Hi", "Hello.", "Sky colour?", "Blue.")]
    completion = {
        "prompt": [{"role": "user", "content": "Grass colour?"}],
        "completion": [{"role": "assistant", "content": "Green."}],
    }

    result = parse_demonstrations(jsonl({"messages": chat}, completion), "sft.jsonl")

    assert result.errors == []
    assert [(d.prompt, d.response) for d in result.demonstrations] == [
        (chat[:-1], "Blue."),
        ("Grass colour?", "Green."),
    ]


# The admin form and the API


@pytest.fixture
def project(db_session: Session) -> Project:
    made = make_project(db_session)
    db_session.commit()
    return made


@pytest.fixture
def admin_csrf(client: httpx.Client, db_session: Session) -> str:
    make_user(db_session, username="root", role=Role.admin)
    db_session.commit()
    return login(client, "root")


def shown(page: httpx.Response) -> dict[str, int]:
    found = re.findall(r'data-count="([^"]+)">(\d+)', page.text)
    return {name: int(number) for name, number in found}


def test_the_admin_form_previews_and_imports_every_english_turn(
    client: httpx.Client, db_session: Session, admin_csrf: str, project: Project
) -> None:
    url = f"/admin/projects/{project.id}/prompts/import"
    headers = {"X-CSRF-Token": admin_csrf, "HX-Request": "true"}
    page = client.get(url, headers={"X-CSRF-Token": admin_csrf})
    assert '<option value="first" selected>' in page.text
    assert 'name="lang"' in page.text

    preview = client.post(
        url,
        files={"file": ("oasst2.trees.jsonl", tree_file(), "application/octet-stream")},
        data={"format": "", "turns": "all", "lang": "en"},
        headers=headers,
    )

    assert preview.status_code == 200, preview.text
    counts = shown(preview)
    assert (counts["new"], counts["first-turns"], counts["every-turn"]) == (3, 2, 3)
    assert (counts["deleted"], counts["other-language"], counts["unanswered"]) == (4, 2, 3)
    assert "every answered user turn, language en" in preview.text
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token
    confirmed = client.post(f"{url}/confirm", data={"token": token.group(1)}, headers=headers)
    assert "Imported 3 prompts" in confirmed.text
    stored = db_session.scalars(select(Prompt).where(Prompt.project_id == project.id)).all()
    assert sorted(len(p.messages or []) for p in stored) == [0, 3, 5]


def test_the_admin_form_refuses_a_bad_language_code(
    client: httpx.Client, admin_csrf: str, project: Project
) -> None:
    preview = client.post(
        f"/admin/projects/{project.id}/prompts/import",
        files={"file": ("t.jsonl", tree_file(), "application/octet-stream")},
        data={"format": "", "turns": "all", "lang": "<en>"},
        headers={"X-CSRF-Token": admin_csrf, "HX-Request": "true"},
    )

    assert preview.status_code == 422
    assert "Not a language code: &lt;en&gt;" in preview.text


@pytest.fixture
def writer(db_session: Session) -> dict[str, str]:
    admin = make_user(db_session, role=Role.admin)
    issued = tokens.create_token(
        db_session, name="t", scopes=["read", "write"], created_by_id=admin.id
    )
    db_session.commit()
    return {"Authorization": f"Bearer {issued.secret}", "Content-Type": "application/x-ndjson"}


def test_the_api_takes_the_setting_as_query_parameters(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    base = f"/api/v1/projects/{project.id}"

    prompts = client.post(
        f"{base}/prompts",
        params={"turns": "all", "lang": "en"},
        content=tree_file(),
        headers=writer,
    )
    demos = client.post(
        f"{base}/demonstrations", params={"turns": "first"}, content=tree_file(), headers=writer
    )
    plain = client.post(f"{base}/prompts", content=jsonl({"prompt": "Hi"}), headers=writer)

    assert prompts.status_code == 200, prompts.text
    assert prompts.json()["added"] == 3
    assert prompts.json()["oasst2"] == {
        "turns": "all",
        "languages": ["en"],
        "first_turns": 2,
        "every_turn": 3,
        "deleted": 4,
        "other_language": 2,
        "unanswered": 3,
    }
    assert demos.json()["added"] == 2
    assert demos.json()["oasst2"]["every_turn"] == 5
    assert "oasst2" not in plain.json()
    responses = db_session.scalars(
        select(Demonstration.response).where(Demonstration.project_id == project.id)
    )
    assert sorted(responses) == ["By photosynthesis.", "Keine Ahnung."]


def test_the_api_documents_the_setting() -> None:
    spec = create_app().openapi()
    operation = spec["paths"]["/api/v1/projects/{project_id}/prompts"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}

    assert "every user message that has an assistant reply" in params["turns"]["description"]
    assert "comma-separated" in params["lang"]["description"]


def test_the_api_refuses_an_unknown_turns_value(
    client: httpx.Client, writer: dict[str, str], project: Project
) -> None:
    response = client.post(
        f"/api/v1/projects/{project.id}/prompts",
        params={"turns": "some"},
        content=tree_file(),
        headers=writer,
    )

    assert response.status_code == 422


# A prompt import that keeps the file's answers as demonstrations


def stored_demonstrations(session: Session, project_id: int) -> list[tuple[str, str, str]]:
    """(prompt, response, source) of a project's demonstrations, the prompt as JSON."""
    rows = session.execute(
        select(Prompt.text, Prompt.messages, Demonstration.response, Demonstration.source)
        .join(Prompt, Demonstration.prompt_id == Prompt.id)
        .where(Demonstration.project_id == project_id)
    )
    return sorted(
        (json.dumps(messages or text), answer, source) for text, messages, answer, source in rows
    )


def import_trees(
    session: Session,
    folder: Path,
    project_id: int,
    *,
    turns: str,
    keep: bool = True,
    kind: ImportKind[Any] = PROMPTS,
) -> tuple[int | None, ImportOutcome | None]:
    """An import of TREES (prompts unless `kind` says otherwise) through preview and confirm:
    the demonstrations the preview counted, and the outcome (None when nothing to import)."""
    admin = make_user(session)
    where = {"project_id": project_id, "user_id": admin.id, "staging_dir": folder}
    preview = kind.preview(
        session,
        data=tree_file(),
        filename="t.jsonl",
        fmt=None,
        oasst2=options(turns),
        demonstrations=keep,
        **where,
    )
    if preview.token is None:
        return preview.new_demonstrations, None
    return preview.new_demonstrations, kind.confirm(session, token=preview.token, **where)


@pytest.mark.parametrize("turns_setting", ["first", "all"])
def test_a_prompt_import_keeping_answers_adds_what_a_demonstration_import_adds(
    db_session: Session, tmp_path: Path, turns_setting: str
) -> None:
    kept, demos = make_project(db_session), make_project(db_session)
    expected = parse_demonstrations(tree_file(), "t.jsonl", None, options(turns_setting))

    counted, outcome = import_trees(db_session, tmp_path, kept.id, turns=turns_setting)
    _, demonstrated = import_trees(
        db_session, tmp_path, demos.id, turns=turns_setting, keep=False, kind=DEMONSTRATIONS
    )

    assert outcome is not None
    assert demonstrated is not None
    prompts = parse_prompts(tree_file(), "t.jsonl", None, options(turns_setting)).prompts
    assert outcome.added == len(prompts)
    assert counted == outcome.demonstrations_added == len(expected.demonstrations)
    assert stored_demonstrations(db_session, kept.id) == stored_demonstrations(db_session, demos.id)
    assert len(stored_demonstrations(db_session, kept.id)) == {"first": 2, "all": 5}[turns_setting]


def test_a_re_import_keeps_no_answer_twice_and_brings_the_missing_ones(
    db_session: Session, tmp_path: Path
) -> None:
    project = make_project(db_session)
    import_trees(db_session, tmp_path, project.id, turns="all", keep=False)

    counted, later = import_trees(db_session, tmp_path, project.id, turns="all")
    again, nothing = import_trees(db_session, tmp_path, project.id, turns="all")

    assert later is not None
    assert (later.added, later.in_project, counted, later.demonstrations_added) == (0, 5, 5, 5)
    assert (again, nothing) == (0, None)
    assert len(stored_demonstrations(db_session, project.id)) == 5


def test_a_prompt_import_without_the_setting_keeps_no_answer(
    db_session: Session, tmp_path: Path
) -> None:
    project = make_project(db_session)

    counted, outcome = import_trees(db_session, tmp_path, project.id, turns="all", keep=False)

    assert outcome is not None
    assert (outcome.added, counted, outcome.demonstrations_added) == (5, None, None)
    assert stored_demonstrations(db_session, project.id) == []


def test_the_admin_form_keeps_the_answers_when_its_box_is_checked(
    client: httpx.Client, db_session: Session, admin_csrf: str, project: Project
) -> None:
    forms = {
        kind: client.get(f"/admin/projects/{project.id}/{kind}/import").text
        for kind in ("prompts", "demonstrations")
    }
    assert 'name="demonstrations" value="true" checked' in forms["prompts"]
    assert 'name="demonstrations"' not in forms["demonstrations"]
    url = f"/admin/projects/{project.id}/prompts/import"
    headers = {"X-CSRF-Token": admin_csrf, "HX-Request": "true"}

    preview = client.post(
        url,
        files={"file": ("oasst2.trees.jsonl", tree_file(), "application/octet-stream")},
        data={"format": "", "turns": "all", "lang": "", "demonstrations": "true"},
        headers=headers,
    )

    assert preview.status_code == 200, preview.text
    assert (shown(preview)["new"], shown(preview)["new-demonstrations"]) == (5, 5)
    assert "Import 5 prompts and 5 demonstrations" in preview.text
    token = re.search(r'name="token" value="([^"]+)"', preview.text)
    assert token
    confirmed = client.post(f"{url}/confirm", data={"token": token.group(1)}, headers=headers)
    assert "Imported 5 prompts" in confirmed.text
    assert 'Added <span id="import-demonstrations">5 demonstrations</span>' in confirmed.text
    assert len(stored_demonstrations(db_session, project.id)) == 5


def test_the_api_keeps_the_answers_only_when_asked(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    url = f"/api/v1/projects/{project.id}/prompts"
    asked = {"turns": "all", "demonstrations": "true"}

    first = client.post(url, params=asked, content=tree_file(), headers=writer)
    again = client.post(url, params=asked, content=tree_file(), headers=writer)
    plain = client.post(url, params={"turns": "all"}, content=tree_file(), headers=writer)

    assert first.status_code == 200, first.text
    assert (first.json()["added"], first.json()["demonstrations_added"]) == (5, 5)
    assert (again.json()["added"], again.json()["demonstrations_added"]) == (0, 0)
    assert "demonstrations_added" not in plain.json()
    assert len(stored_demonstrations(db_session, project.id)) == 5


def test_the_api_documents_the_demonstrations_setting_on_the_prompt_import_only() -> None:
    paths = create_app().openapi()["paths"]
    prompts = {
        p["name"]: p for p in paths["/api/v1/projects/{project_id}/prompts"]["post"]["parameters"]
    }
    demos = paths["/api/v1/projects/{project_id}/demonstrations"]["post"]["parameters"]

    assert "as demonstrations of their prompts" in prompts["demonstrations"]["description"]
    assert prompts["demonstrations"]["schema"]["default"] is False
    assert "demonstrations" not in {p["name"] for p in demos}


# The command line


@pytest.fixture
def cli_project(migrated_engine: Engine) -> Iterator[str]:
    """A project made by the CLI (committed), deleted with its prompts afterwards."""
    name = "cli conversations"
    assert CliRunner().invoke(cli, ["projects", "create", "--name", name]).exit_code == 0
    yield name
    with Session(migrated_engine) as session:
        session.execute(delete(Project).where(Project.name == name))
        session.commit()


def test_the_cli_import_takes_the_setting_and_prints_the_counts(
    cli_project: str, tmp_path: Path
) -> None:
    path = tmp_path / "oasst2.trees.jsonl"
    path.write_bytes(tree_file())
    argv = ["prompts", "import", "--project", cli_project, "--turns", "all", "--lang", "en"]

    result = CliRunner().invoke(cli, [*argv, str(path)])

    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert "OASST2, every answered user turn, language en: 2 prompts with --turns first, " in out
    assert "3 with --turns all; user turns left out: 4 deleted or rejected, 2 in another" in out
    assert "(oasst2): imported 3;" in out


def test_the_cli_import_keeps_the_answers_with_demonstrations(
    cli_project: str, tmp_path: Path, migrated_engine: Engine
) -> None:
    path = tmp_path / "oasst2.trees.jsonl"
    path.write_bytes(tree_file())
    argv = ["prompts", "import", "--project", cli_project, "--turns", "all", "--demonstrations"]

    result = CliRunner().invoke(cli, [*argv, str(path)])
    again = CliRunner().invoke(cli, [*argv, str(path)])

    assert result.exit_code == 0, result.output
    assert "Added 5 demonstrations from the file's answers" in " ".join(result.output.split())
    assert "Added 0 demonstrations" in " ".join(again.output.split())
    with Session(migrated_engine) as session:
        project_id = session.scalars(select(Project.id).where(Project.name == cli_project)).one()
        assert len(stored_demonstrations(session, project_id)) == 5
