"""Pairs and rankings exports: TRL format through `datasets`, filters, snapshots, pseudonyms,
compression; every check reads the real stream over HTTP from committed rows."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.export.service import pseudonym
from app.models import Comparison, Sample, SnapshotComparison
from app.rounds.snapshots import preference_pairs
from tests.conftest import FreshDatabase
from tests.export.conftest import World

PLAIN = {"Accept-Encoding": "identity"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **PLAIN}


def export(
    api: TestClient, world: World, kind: str = "pairs", *, token: str = "read", **params: Any
) -> list[dict[str, Any]]:
    project = params.pop("project", world.project)
    response = api.get(
        f"/api/v1/projects/{project}/{kind}.jsonl",
        params=params,
        headers=bearer(world.tokens[token]),
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def comparisons(db: FreshDatabase, world: World, *where: Any) -> list[Comparison]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Comparison)
                .where(Comparison.project_id == world.project, *where)
                .order_by(Comparison.id)
            )
        )


def texts(db: FreshDatabase) -> dict[int, str]:
    with db.session() as session:
        return dict(session.execute(select(Sample.id, Sample.text)).tuples().all())


def default_expected(db: FreshDatabase, world: World) -> list[Comparison]:
    """Non-tie pairs, without dave (excluded) and without pairs touching the flagged sample."""
    return [
        c
        for c in comparisons(db, world, Comparison.tie.is_(False))
        if c.user_id != world.users["dave"] and world.flagged not in (c.winner_id, c.loser_id)
    ]


def load_with_datasets(path: Path, cache: Path, **options: Any) -> Any:
    import datasets

    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    return datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(cache), **options
    )


# Round trip through datasets


def test_pairs_load_with_datasets_as_the_expected_preference_rows(
    api: TestClient, world: World, app_database: FreshDatabase, tmp_path: Path
) -> None:
    response = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl", headers=bearer(world.tokens["read"])
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert (
        response.headers["content-disposition"]
        == f'attachment; filename="project-{world.project}-pairs.jsonl"'
    )
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(response.content)

    dataset = load_with_datasets(path, tmp_path / "cache")

    from datasets import Value

    # TRL's (standard) preference format: string prompt, chosen and rejected
    assert dataset.column_names[:3] == ["prompt", "chosen", "rejected"]
    for column in ("prompt", "chosen", "rejected"):
        assert dataset.features[column] == Value("string")
    sample_text = texts(app_database)
    expected = default_expected(app_database, world)
    assert [row["comparison_id"] for row in dataset] == [c.id for c in expected]
    for row, comparison in zip(dataset, expected, strict=True):
        assert row["chosen"] == sample_text[comparison.winner_id]
        assert row["rejected"] == sample_text[comparison.loser_id]
        assert (row["chosen_id"], row["rejected_id"]) == (comparison.winner_id, comparison.loser_id)
        assert row["prompt_id"] == comparison.prompt_id
        assert row["policy_versions"] == {
            "chosen": comparison.winner_version_id,
            "rejected": comparison.loser_version_id,
        }
    best = next(r for r in dataset if r["chosen"] == "t1 best" and r["rejected"] == "t1 poor")
    assert best["prompt"].startswith("Prompt number")
    # the round of a pair: the newest round that trained one of its two versions
    for row in dataset:
        trained = world.v2 in row["policy_versions"].values()
        assert row["round"] == (world.round1 if trained else 0)
    assert any(row["round"] == world.round1 for row in dataset)
    assert "tie" not in dataset.column_names


@pytest.mark.parametrize("kind", ["pairs", "rankings"])
def test_exports_load_with_datasets_chunk_by_chunk(
    kind: str, api: TestClient, world: World, tmp_path: Path
) -> None:
    """`datasets` reads JSON lines in 10 MB chunks and types each column by the first one: a
    column that is null in the first chunk and set later (a project's base-version rankings,
    then its first round) would fail to load. Chunks of a line or two show it on a small file."""
    response = api.get(
        f"/api/v1/projects/{world.project}/{kind}.jsonl", headers=bearer(world.tokens["read"])
    )
    path = tmp_path / f"{kind}.jsonl"
    path.write_bytes(response.content)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert {line["round"] for line in lines} == {0, world.round1}

    dataset = load_with_datasets(path, tmp_path / "cache", chunksize=512)

    assert dataset["round"] == [line["round"] for line in lines]
    if kind == "rankings":
        reasons = dataset["none_usable_reason"]
        assert "all off-topic" in reasons
        assert "" in reasons


def test_conversational_prompts_export_as_message_lists_for_every_line(
    api: TestClient, world: World, tmp_path: Path
) -> None:
    response = api.get(
        f"/api/v1/projects/{world.conv_project}/pairs.jsonl",
        headers=bearer(world.tokens["read"]),
    )
    path = tmp_path / "conv.jsonl"
    path.write_bytes(response.content)
    dataset = load_with_datasets(path, tmp_path / "cache")

    message = {"role": Any, "content": Any}
    for column in ("prompt", "chosen", "rejected"):
        feature = dataset.features[column]
        inner = getattr(feature, "feature", feature[0] if isinstance(feature, list) else None)
        assert set(inner) == set(message), feature  # a list of {"role", "content"}
    rows = list(dataset)
    conversation = [r for r in rows if r["prompt"][0]["role"] == "system"]
    assert conversation[0]["prompt"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "How are you?"},
    ]
    plain = [r for r in rows if r["prompt"][0]["role"] == "user"]
    assert plain
    assert all(len(r["prompt"]) == 1 for r in plain)
    assert all(r["chosen"][0]["role"] == "assistant" and len(r["chosen"]) == 1 for r in rows)

    as_text = export(api, world, project=world.conv_project, prompt_format="text")
    assert {type(line["prompt"]) for line in as_text} == {str}


# Ties, annotators


def test_ties_are_left_out_unless_asked_for(
    api: TestClient, world: World, app_database: FreshDatabase
) -> None:
    default = export(api, world)
    assert all("tie" not in line for line in default)
    with_ties = export(api, world, include_ties="true")
    ties = [line for line in with_ties if line["tie"]]
    assert len(with_ties) == len(default) + len(ties)
    assert all("tie" in line for line in with_ties)
    tied = {
        c.id
        for c in comparisons(app_database, world, Comparison.tie.is_(True))
        if c.user_id != world.users["dave"]
    }
    assert {line["comparison_id"] for line in ties} == tied


def test_annotators_are_stable_pseudonyms_without_read_annotators(
    api: TestClient, world: World
) -> None:
    first, second = export(api, world), export(api, world)
    names = {line["annotator"] for line in first}
    assert [line["annotator"] for line in first] == [line["annotator"] for line in second]
    assert all(name.startswith("annotator-") for name in names)
    assert not names & {"alice", "bob", "carol"}
    assert pseudonym(world.users["alice"], os.environ["RANKLOOP_SECRET_KEY"]) in names
    assert len(names) == 3  # alice, bob, carol (dave is excluded)
    named = {line["annotator"] for line in export(api, world, token="names")}
    assert named == {"alice", "bob", "carol"}


# Filters


def test_policy_version_and_round_filters(api: TestClient, world: World) -> None:
    everything = export(api, world)
    by_version = export(api, world, policy_version=world.v2)
    assert by_version
    assert all(world.v2 in line["policy_versions"].values() for line in by_version)
    assert len(by_version) < len(everything)
    assert export(api, world, round=world.round1) == by_version
    both = export(api, world, policy_version=[world.v2, world.base])
    assert both == everything


def test_annotator_filter_takes_pseudonyms_or_names_with_the_scope(
    api: TestClient, world: World
) -> None:
    alias = pseudonym(world.users["bob"], os.environ["RANKLOOP_SECRET_KEY"])
    bob = export(api, world, annotator=alias)
    assert bob
    assert {line["annotator"] for line in bob} == {alias}
    named = export(api, world, token="names", annotator="bob")
    assert [x["comparison_id"] for x in named] == [x["comparison_id"] for x in bob]
    refused = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl",
        params={"annotator": "bob"},
        headers=bearer(world.tokens["read"]),
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "annotator"


def test_since_and_until_bound_the_creation_time(api: TestClient, world: World) -> None:
    window = export(api, world, since="2026-03-02T00:00:00Z", until="2026-03-03T00:00:00Z")
    assert window
    assert all(line["created_at"].startswith("2026-03-02") for line in window)
    naive = export(api, world, since="2026-03-02T00:00:00", until="2026-03-03T00:00:00")
    assert naive == window  # a time without zone is UTC


def test_min_agreement_keeps_tasks_whose_annotators_agree(
    api: TestClient, world: World, app_database: FreshDatabase
) -> None:
    from app.ratings.agreement import pairwise_agreement

    s1 = world.samples["t1"]
    alice, bob = [[s] for s in s1], [[s1[0]], [s1[1]], [s1[3]], [s1[2]]]
    assert pairwise_agreement(alice, bob) == pytest.approx(5 / 6)
    agreeing = export(api, world, min_agreement=0.8)
    assert agreeing
    assert {line["prompt_id"] for line in agreeing} == {
        c.prompt_id
        for c in comparisons(app_database, world, Comparison.task_id == world.tasks["t1"])
    }
    assert len(agreeing) == 12  # both annotators' 6 pairs of t1
    assert export(api, world, min_agreement=0.9) == []
    # t2 (agreement 0) adds its non-tie pairs: 5 of alice (one tie) and 6 of bob
    assert len(export(api, world, min_agreement=0)) == len(agreeing) + 11


def test_flagged_samples_and_excluded_annotators_are_left_out_by_default(
    api: TestClient, world: World
) -> None:
    default = export(api, world)
    assert all(world.flagged not in (x["chosen_id"], x["rejected_id"]) for x in default)
    flagged = export(api, world, exclude_flagged="false")
    assert len(flagged) == len(default) + 3
    with_dave = export(api, world, include_excluded_annotators="true")
    assert len(with_dave) == len(default) + 6


def test_the_snapshot_parameter_returns_exactly_its_comparisons(
    api: TestClient, world: World, app_database: FreshDatabase
) -> None:
    lines = export(api, world, snapshot=world.snapshot)
    with app_database.session() as session:
        members = set(
            session.scalars(
                select(SnapshotComparison.comparison_id).where(
                    SnapshotComparison.snapshot_id == world.snapshot
                )
            )
        )
        ties = set(session.scalars(select(Comparison.id).where(Comparison.tie.is_(True))))
        dpo_rows = preference_pairs(session, world.snapshot)
    assert {x["comparison_id"] for x in lines} == members - ties
    assert [(x["prompt"], x["chosen"], x["rejected"]) for x in lines] == dpo_rows
    assert all(x["prompt"] != "late" for x in lines)
    with_ties = export(api, world, snapshot=world.snapshot, include_ties="true")
    assert {x["comparison_id"] for x in with_ties} == members
    # the snapshot fixed its criteria when it was taken: later rankings are not in it
    late = export(api, world, since="2026-03-07T00:00:00Z")
    assert late
    assert not {x["comparison_id"] for x in late} & members


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"policy_version": "OTHER_VERSION"}, "policy_version"),
        ({"round": "OTHER_ROUND"}, "round"),
        ({"snapshot": "OTHER_SNAPSHOT"}, "snapshot"),
        ({"annotator": "annotator-00000000"}, "annotator"),
        ({"min_agreement": "1.5"}, "min_agreement"),
        ({"since": "yesterday"}, "since"),
        ({"since": "9999-12-31T23:59:59-01:00"}, "since"),  # past the last UTC date
        ({"until": "0001-01-01T00:30:00+01:00"}, "until"),  # before the first
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "until"),
        ({"prompt_format": "xml"}, "prompt_format"),
    ],
)
def test_filters_that_do_not_fit_the_project_are_422(
    api: TestClient, world: World, params: dict[str, str], field: str
) -> None:
    other = {
        "OTHER_VERSION": world.other_version,
        "OTHER_ROUND": world.other_round,
        "OTHER_SNAPSHOT": world.other_snapshot,
    }
    params = {k: other.get(v, v) for k, v in params.items()}
    for kind in ("pairs", "rankings"):
        response = api.get(
            f"/api/v1/projects/{world.project}/{kind}.jsonl",
            params=params,
            headers=bearer(world.tokens["read"]),
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field


def test_an_unknown_project_is_404(api: TestClient, world: World) -> None:
    response = api.get("/api/v1/projects/99999/pairs.jsonl", headers=bearer(world.tokens["read"]))
    assert response.status_code == 404


# Rankings


def test_rankings_export_one_line_per_ranking_with_ordered_groups(
    api: TestClient, world: World
) -> None:
    lines = export(api, world, "rankings")
    by_task: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_task.setdefault(line["task_id"], []).append(line)
    assert world.tasks["t5"] not in by_task  # dave is excluded
    alice_t2 = by_task[world.tasks["t2"]][0]
    assert [[s["text"] for s in g] for g in alice_t2["groups"]] == [
        ["new a"],
        ["new b", "old a"],
        ["old b"],
    ]
    assert alice_t2["round"] == world.round1
    assert alice_t2["groups"][0][0]["policy_version"] == world.v2
    none_usable = by_task[world.tasks["t3"]][0]
    assert none_usable["none_usable"] is True
    assert none_usable["groups"] == []
    carol = by_task[world.tasks["t4"]][0]
    assert [g[0]["text"] for g in carol["groups"]] == ["c0", "c1", "c2"]  # flagged one dropped
    with_flagged = export(api, world, "rankings", exclude_flagged="false")
    carol_all = next(x for x in with_flagged if x["task_id"] == world.tasks["t4"])
    assert [g[0]["text"] for g in carol_all["groups"]][-1] == "harmful"


def test_rankings_of_a_snapshot_are_restricted_to_it(api: TestClient, world: World) -> None:
    lines = export(api, world, "rankings", snapshot=world.snapshot)
    assert world.late_ranking not in {x["ranking_id"] for x in lines}
    assert all(x["groups"] for x in lines)  # a none-usable ranking has no comparisons
    carol = next(x for x in lines if x["task_id"] == world.tasks["t4"])
    assert "harmful" not in [s["text"] for g in carol["groups"] for s in g]


def test_rankings_load_with_datasets(api: TestClient, world: World, tmp_path: Path) -> None:
    response = api.get(
        f"/api/v1/projects/{world.project}/rankings.jsonl", headers=bearer(world.tokens["read"])
    )
    path = tmp_path / "rankings.jsonl"
    path.write_bytes(response.content)
    dataset = load_with_datasets(path, tmp_path / "cache")
    assert len(dataset) == len(response.text.splitlines())
    assert {"prompt", "groups", "annotator", "none_usable"} <= set(dataset.column_names)


# Compression


def test_compress_gzip_sends_a_jsonl_gz_file(api: TestClient, world: World) -> None:
    plain = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl", headers=bearer(world.tokens["read"])
    )
    packed = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl",
        params={"compress": "gzip"},
        headers=bearer(world.tokens["read"]),
    )
    assert packed.headers["content-type"] == "application/gzip"
    assert packed.headers["content-disposition"].endswith('pairs.jsonl.gz"')
    assert "content-encoding" not in packed.headers
    assert gzip.decompress(packed.content) == plain.content


def test_accept_encoding_gzip_compresses_on_the_wire(api: TestClient, world: World) -> None:
    plain = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl", headers=bearer(world.tokens["read"])
    )
    wire = api.get(
        f"/api/v1/projects/{world.project}/pairs.jsonl",
        headers={"Authorization": f"Bearer {world.tokens['read']}", "Accept-Encoding": "gzip"},
    )
    assert wire.headers["content-encoding"] == "gzip"
    assert wire.content == plain.content  # httpx decodes it


def test_export_streams_in_chunks(api: TestClient, world: World) -> None:
    """Sanity check of the generator: one chunk per batch, each ending on a full line."""
    from app.export import service
    from app.export.schemas import export_params

    with app_session() as session:
        plan = service.plan_export(
            session,
            project_id=world.project,
            kind="pairs",
            params=export_params(),
            show_names=False,
        )
    chunks = list(service.stream_pairs(plan))
    assert chunks
    assert all(chunk.endswith(b"\n") for chunk in chunks)


def app_session() -> Any:
    from app.db import session_scope

    return session_scope(readonly=True)
