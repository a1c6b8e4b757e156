"""Export use cases: check the filters in the request, then stream lines from a generator that
opens its own read-only session (the request's session closes before streaming starts).

Memory stays flat: rows come from a server-side cursor in batches (`yield_per`), texts of the
batch's prompts and samples are looked up once each and kept in a bounded cache, and every
batch leaves as one chunk of bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.errors import InvalidInput
from app.export import repository
from app.export.repository import Filters
from app.export.schemas import SOURCES, ExportParams
from app.projects.service import require_project

BATCH_ROWS = 5000
CACHE_LIMIT = 100_000  # cached texts before the cache is cleared (rows come grouped by ranking)


def pseudonym(user_id: int, secret: str) -> str:
    """A stable name that does not reveal the user: keyed with the server secret, so nobody
    without it can map ids to pseudonyms (or back)."""
    digest = hmac.new(secret.encode(), f"user:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"annotator-{digest[:8]}"


@dataclass(frozen=True)
class ExportPlan:
    """Everything the generator needs, resolved in the request's transaction (ids only)."""

    filters: Filters
    conversational: bool
    show_names: bool
    secret: str = field(repr=False)
    version_rounds: dict[int, tuple[int, int] | None]
    """Policy version id → (round number, round id) of the round that trained it."""
    filename: str


def plan_export(
    session: Session,
    *,
    project_id: int,
    kind: str,
    params: ExportParams,
    show_names: bool,
    include_ties: bool = False,
) -> ExportPlan:
    """Validate the filters against the project; unknown ids are a 422 naming the field."""
    project = require_project(session, project_id)
    secret = get_settings().effective_secret_key()
    versions = repository.project_versions(session, project.id)
    rounds = repository.project_rounds(session, project.id)
    problems: list[dict[str, str]] = []

    unknown_versions = sorted(set(params.policy_version) - versions.keys())
    problems += [
        {"field": "policy_version", "message": f"no policy version {v} in this project"}
        for v in unknown_versions
    ]
    round_versions: frozenset[int] | None = None
    newer: frozenset[int] = frozenset()
    if params.round is not None:
        if params.round not in rounds:
            problems.append({"field": "round", "message": f"no round {params.round} here"})
        else:
            number = rounds[params.round]
            round_versions = frozenset(v for v, r in versions.items() if r == params.round)
            newer = frozenset(
                v for v, r in versions.items() if r is not None and rounds.get(r, 0) > number
            )
    if params.snapshot is not None:
        snapshot = repository.get_snapshot(session, params.snapshot)
        if snapshot is None or snapshot.project_id != project.id:
            problems.append({"field": "snapshot", "message": f"no snapshot {params.snapshot} here"})
    user_ids = None
    if params.annotator:
        user_ids, unknown = _resolve_annotators(
            session, project.id, params.annotator, secret=secret, by_name=show_names
        )
        problems += [
            {"field": "annotator", "message": f"no annotator {name!r} in this project"}
            for name in unknown
        ]
    if params.since and params.until and params.since >= params.until:
        problems.append({"field": "until", "message": "must be later than since"})
    if problems:
        raise InvalidInput("The export filters do not match this project", details=problems)

    if params.prompt_format == "auto":
        conversational = repository.has_conversations(session, project.id)
    else:
        conversational = params.prompt_format == "conversational"
    filters = Filters(
        project_id=project.id,
        version_ids=frozenset(params.policy_version) if params.policy_version else None,
        round_version_ids=round_versions,
        newer_version_ids=newer,
        user_ids=user_ids,
        since=params.since,
        until=params.until,
        min_agreement=params.min_agreement,
        exclude_flagged=params.exclude_flagged,
        excluded_user_ids=(
            frozenset()
            if params.include_excluded_annotators
            else repository.excluded_users(session, project.id)
        ),
        snapshot_id=params.snapshot,
        include_ties=include_ties,
        include_gold=params.include_gold,
        sources=SOURCES[params.source],
    )
    suffix = f"-snapshot-{params.snapshot}" if params.snapshot else ""
    extension = ".jsonl.gz" if params.compress == "gzip" else ".jsonl"
    return ExportPlan(
        filters=filters,
        conversational=conversational,
        show_names=show_names,
        secret=secret,
        version_rounds={
            v: (rounds[r], r) if r is not None and r in rounds else None
            for v, r in versions.items()
        },
        filename=f"project-{project.id}-{kind}{suffix}{extension}",
    )


def _resolve_annotators(
    session: Session, project_id: int, values: Iterable[str], *, secret: str, by_name: bool
) -> tuple[frozenset[int], list[str]]:
    """Pseudonyms always resolve; usernames only for tokens that may see them (otherwise a
    caller could probe which usernames annotate here)."""
    people = repository.annotators(session, project_id)
    lookup = {pseudonym(uid, secret): uid for uid, _ in people}
    if by_name:
        lookup.update({name: uid for uid, name in people})
    found = {lookup[v] for v in values if v in lookup}
    return frozenset(found), [v for v in values if v not in lookup]


# Streaming


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Lookups:
    """Texts and names of the rows being streamed, serialised once per id."""

    def __init__(self, session: Session, plan: ExportPlan) -> None:
        self.session = session
        self.plan = plan
        self.prompts: dict[int, str] = {}
        self.samples: dict[int, tuple[str, int]] = {}
        self.responses: dict[int, str] = {}
        self.annotators: dict[int, str] = {}
        self.rounds: dict[tuple[int, ...], str] = {}

    def load(
        self,
        prompt_ids: set[int],
        sample_ids: set[int],
        user_ids: set[int],
        *,
        with_versions: bool = False,
    ) -> None:
        """Fetch what the batch needs and the cache lacks: responses as JSON for pairs,
        (text, version) for rankings."""
        if len(self.responses) + len(self.samples) + len(self.prompts) > CACHE_LIMIT:
            self.prompts.clear()
            self.samples.clear()
            self.responses.clear()
        missing_prompts = prompt_ids - self.prompts.keys()
        for pid, (text, messages) in repository.prompts(self.session, missing_prompts).items():
            self.prompts[pid] = self._prompt(text, messages)
        if with_versions:
            missing = sample_ids - self.samples.keys()
            self.samples.update(repository.samples(self.session, missing))
        else:
            missing = sample_ids - self.responses.keys()
            conversational = self.plan.conversational
            for sid, text in repository.sample_texts(self.session, missing).items():
                self.responses[sid] = (
                    f'[{{"role":"assistant","content":{_dumps(text)}}}]'
                    if conversational
                    else _dumps(text)
                )
        missing_users = user_ids - self.annotators.keys()
        if missing_users:
            if self.plan.show_names:
                names = repository.usernames(self.session, missing_users)
            else:
                names = {uid: pseudonym(uid, self.plan.secret) for uid in missing_users}
            self.annotators.update((uid, _dumps(name)) for uid, name in names.items())

    def _prompt(self, text: str, messages: list[Any] | None) -> str:
        if not self.plan.conversational:
            return _dumps(text)
        return _dumps(messages or [{"role": "user", "content": text}])

    def round_of(self, *version_ids: int) -> str:
        """JSON of the id of the newest round that trained one of the versions, else 0: never
        null, as `datasets` types a column by its first chunk and refuses an int after nulls."""
        key = tuple(version_ids)
        found = self.rounds.get(key)
        if found is None:
            trained = [r for v in version_ids if (r := self.plan.version_rounds.get(v))]
            found = self.rounds[key] = str(max(trained)[1]) if trained else "0"
        return found


def _iso(value: datetime) -> str:
    """ISO 8601 in UTC; a zone-less value (SQLite keeps UTC without one) gets +00:00."""
    text = value.isoformat()
    return text if value.tzinfo is not None else text + "+00:00"


def stream_pairs(plan: ExportPlan) -> Iterator[bytes]:
    """pairs.jsonl: one TRL preference line per comparison, in comparison order."""
    with session_scope(readonly=True) as session:
        connection = session.connection().execution_options(yield_per=BATCH_ROWS)
        result = connection.execute(repository.pair_rows(plan.filters))
        lookups = _Lookups(session, plan)
        with_tie = plan.filters.include_ties
        for batch in result.partitions():
            lookups.load(
                {row[1] for row in batch},
                {row[2] for row in batch} | {row[3] for row in batch},
                {row[6] for row in batch},
            )
            prompts, responses, names = lookups.prompts, lookups.responses, lookups.annotators
            lines = []
            for cid, pid, win, lose, win_v, lose_v, uid, tie, created, source in batch:
                tie_part = (',"tie":true' if tie else ',"tie":false') if with_tie else ""
                lines.append(
                    f'{{"prompt":{prompts[pid]},"chosen":{responses[win]},'
                    f'"rejected":{responses[lose]},"comparison_id":{cid},"prompt_id":{pid},'
                    f'"chosen_id":{win},"rejected_id":{lose},"annotator":{names[uid]},'
                    f'"policy_versions":{{"chosen":{win_v},"rejected":{lose_v}}},'
                    f'"round":{lookups.round_of(win_v, lose_v)},'
                    f'"created_at":"{_iso(created)}","source":"{source}"{tie_part}}}\n'
                )
            yield "".join(lines).encode()


def stream_rankings(plan: ExportPlan) -> Iterator[bytes]:
    """rankings.jsonl: one line per ranking with its ordered tie groups and the samples' texts."""
    filters = plan.filters
    drop_flagged = filters.exclude_flagged and filters.snapshot_id is None
    # every line has the judge fields when judges' rankings may be among them (one schema)
    with_judge = filters.snapshot_id is not None or "ai" in filters.sources
    with session_scope(readonly=True) as session:
        result = session.execute(
            repository.ranking_rows(filters), execution_options={"yield_per": BATCH_ROWS // 4}
        )
        lookups = _Lookups(session, plan)
        for batch in result.partitions():
            sample_ids = {sid for row in batch for group in row[4] for sid in group}
            lookups.load(
                {row[2] for row in batch},
                sample_ids,
                {row[3] for row in batch},
                with_versions=True,
            )
            flagged = repository.flagged(session, sample_ids) if drop_flagged else set()
            members = (
                repository.snapshot_members(session, filters.snapshot_id, [r[0] for r in batch])
                if filters.snapshot_id is not None
                else None
            )
            lines = []
            for row in batch:
                rid, task_id, pid, uid, groups, none_usable, reason, created = row[:8]
                source, judge, prompt_version = row[8:]
                keep = members.get(rid, set()) if members is not None else None
                out_groups = []
                for group in groups:
                    kept = [
                        {
                            "sample_id": sid,
                            "text": lookups.samples[sid][0],
                            "policy_version": lookups.samples[sid][1],
                        }
                        for sid in group
                        if sid not in flagged and (keep is None or sid in keep)
                    ]
                    if kept:
                        out_groups.append(kept)
                versions = sorted({lookups.samples[sid][1] for g in groups for sid in g})
                lines.append(
                    f'{{"ranking_id":{rid},"task_id":{task_id},"prompt_id":{pid},'
                    f'"prompt":{lookups.prompts[pid]},"groups":{_dumps(out_groups)},'
                    f'"none_usable":{"true" if none_usable else "false"},'
                    f'"none_usable_reason":{_dumps(reason or "")},'
                    f'"annotator":{lookups.annotators[uid]},'
                    f'"round":{lookups.round_of(*versions)},'
                    f'"created_at":"{_iso(created)}","source":"{source}"'
                    + (
                        f',"judge":{_dumps(judge or "")},'
                        f'"judge_prompt_version":{prompt_version or 0}'
                        if with_judge
                        else ""
                    )
                    + "}\n"
                )
            yield "".join(lines).encode()


def gzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """One gzip member over the whole stream, compressed as it goes."""
    compressor = zlib.compressobj(5, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()
