"""Imports say the right thing: the confirmation tells copies inside the file from prompts the
project already had, in correct English; a gzip that unpacks past the cap is refused without
ever being unpacked into memory."""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc

import httpx
import pytest
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.projects import demonstrations, imports, prompt_import
from app.projects.prompt_import import parse_prompts
from tests.admin.conftest import LoggedIn, admin
from tests.factories import make_project, make_prompt, make_user
from tests.projects.conftest import Staging

__all__ = ["admin"]


def jsonl(*records: object) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def upload(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def _preview_and_confirm(staging: Staging, data: bytes) -> imports.ImportOutcome:
    project = make_project(staging.session)
    make_prompt(staging.session, project, "Old")
    user = make_user(staging.session)
    preview = staging.preview(imports.PROMPTS, project.id, user.id, data)
    assert preview.token
    return staging.confirm(imports.PROMPTS, project.id, user.id, preview.token)


def test_a_copy_inside_the_file_is_counted_as_such_not_as_in_the_project(
    staging: Staging,
) -> None:
    outcome = _preview_and_confirm(
        staging, jsonl({"prompt": "A"}, {"prompt": "B"}, {"prompt": "A"})
    )

    assert (outcome.added, outcome.repeated, outcome.in_project) == (2, 1, 0)


def test_copies_and_known_prompts_are_counted_apart(staging: Staging) -> None:
    data = jsonl({"prompt": "A"}, {"prompt": "Old"}, {"prompt": "A"}, {"prompt": "A"})

    outcome = _preview_and_confirm(staging, data)

    assert (outcome.added, outcome.repeated, outcome.in_project) == (1, 2, 1)
    assert outcome.duplicates == 3


def test_the_confirmation_page_says_which_duplicates_were_skipped_in_good_english(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_prompt(db_session, project, "Old")
    db_session.commit()

    def import_file(data: bytes) -> str:
        preview = client.post(
            f"/admin/projects/{project.id}/prompts/import",
            files=upload("p.jsonl", data),
            headers=admin.htmx,
        )
        token = re.search(r'name="token" value="([^"]+)"', preview.text)
        assert token, preview.text
        confirmed = client.post(
            f"/admin/projects/{project.id}/prompts/import/confirm",
            data={"token": token.group(1)},
            headers=admin.htmx,
        )
        assert confirmed.status_code == 200
        found = re.search(r'<p class="notice" id="import-outcome">(.*?)</p>', confirmed.text, re.S)
        assert found
        return found.group(1)

    one_copy = import_file(jsonl({"prompt": "A"}, {"prompt": "B"}, {"prompt": "A"}))
    assert one_copy == "Imported 2 prompts from p.jsonl; 1 repeated in the file was skipped."

    mixed = import_file(
        jsonl({"prompt": "C"}, {"prompt": "Old"}, {"prompt": "A"}, {"prompt": "C"})
        + b"\n{bad\n{bad"
    )
    assert mixed == (
        "Imported 1 prompt from p.jsonl; 1 repeated in the file was skipped; "
        "2 already in the project were skipped; 2 bad lines were left out."
    )


def test_demonstration_imports_count_copies_and_known_ones_apart(
    db_session: Session, staging: Staging
) -> None:
    project = make_project(db_session)
    user = make_user(db_session)
    first = jsonl({"prompt": "Q1", "response": "A1"})
    staging.confirm(
        demonstrations.DEMONSTRATIONS,
        project.id,
        user.id,
        staging.preview(demonstrations.DEMONSTRATIONS, project.id, user.id, first, "d.jsonl").token
        or "",
    )
    data = jsonl(
        {"prompt": "Q1", "response": "A1"},
        {"prompt": "Q2", "response": "A2"},
        {"prompt": "Q2", "response": "A2"},
    )
    preview = staging.preview(demonstrations.DEMONSTRATIONS, project.id, user.id, data, "d.jsonl")
    assert preview.token

    outcome = staging.confirm(demonstrations.DEMONSTRATIONS, project.id, user.id, preview.token)

    assert (outcome.added, outcome.repeated, outcome.in_project) == (1, 1, 1)


# Gzip: the cap holds while unpacking ----------------------------------------------------------


def test_a_gzip_bomb_is_refused_without_being_unpacked_into_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cap = 8 * 2**20
    monkeypatch.setattr(prompt_import, "MAX_UNZIPPED_BYTES", cap)
    bomb = gzip.compress(b'{"prompt": "again"}\n' * (4 * 2**20), compresslevel=9)  # 80 MiB
    assert len(bomb) < cap // 20

    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="over 8 MiB"):
            parse_prompts(bomb, "bomb.jsonl.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < cap // 4  # a few chunks, never the cap's worth


def test_a_gzip_under_the_cap_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_import, "MAX_UNZIPPED_BYTES", 2**20)
    monkeypatch.setattr(prompt_import, "GUNZIP_CHUNK_BYTES", 1000)  # many chunks
    data = jsonl(*({"prompt": f"Prompt {i}?"} for i in range(20_000)))
    assert 2**19 < len(data) < 2**20
    two_members = gzip.compress(data[:300_000]) + gzip.compress(data[300_000:])

    result = parse_prompts(two_members, "p.jsonl.gz")

    assert len(result.prompts) == 20_000
    assert not result.errors


def test_a_gzip_just_over_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompt_import, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(InvalidInput, match="Unpacked, the file is over"):
        parse_prompts(gzip.compress(b" " * 1001), "p.jsonl.gz")
    assert parse_prompts(gzip.compress(b" " * 1000), "p.jsonl.gz").prompts == []
