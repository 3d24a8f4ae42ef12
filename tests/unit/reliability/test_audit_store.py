"""The SQLite audit store and trail: WAL, one transaction per batch, durable across SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from fairgate.guardrails.decision import Reason
from fairgate.service.audit import (
    AuditError,
    AuditRecord,
    AuditTrail,
    SQLiteAuditStore,
    open_audit_store,
    parse_time,
    text_digest,
)
from fairgate.service.settings import FairgateSettings

T0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def result(request_id: str, action: str, label: str | None = "negative") -> SimpleNamespace:
    reasons = []
    if action != "allow":
        reasons = [
            Reason(monitor="toxicity", stage="input", code="toxicity_toxicity", action=action, category="toxicity",
                   value=0.93, threshold=0.8, message="toxicity score 0.930 >= block threshold 0.8")
        ]
    return SimpleNamespace(
        request_id=request_id, action=action, reasons=reasons, label=None if action == "block" else label,
        scores={} if action == "block" else {"negative": 0.7, "positive": 0.3},
        toxicity={"toxicity": 0.93}, groups=["female"],
    )


def item(text: str, group: str | None = "female") -> SimpleNamespace:
    return SimpleNamespace(text=text, group=group)


def trail(store: SQLiteAuditStore, *, store_text: bool = False, when: datetime = T0) -> AuditTrail:
    return AuditTrail(
        store=store, policy_version="p-7", models={"classifier": "c:1", "guard": "g:1"},
        store_text=store_text, clock=when.timestamp,
    )


def test_store_is_wal_with_the_chosen_sync(tmp_path: Path) -> None:
    store = SQLiteAuditStore(path=tmp_path / "a" / "audit.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    relaxed = SQLiteAuditStore(path=tmp_path / "b.db", synchronous="NORMAL")
    assert relaxed._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_only_flag_and_block_are_recorded_with_hash_not_text(tmp_path: Path) -> None:
    store = SQLiteAuditStore(path=tmp_path / "audit.db")
    items = [item("fine text"), item("awful text", None), item("meh text")]
    results = [result("r1", "allow"), result("r2", "block"), result("r3", "flag")]
    assert trail(store).record(items, results) == 2
    records = list(store.iter_records())
    assert [r.request_id for r in records] == ["r2", "r3"]
    blocked = records[0]
    assert blocked.action == "block" and blocked.label is None and blocked.group is None
    assert blocked.text is None and blocked.text_sha256 == text_digest("awful text")
    assert blocked.text_chars == len("awful text")
    assert blocked.reasons[0]["code"] == "toxicity_toxicity" and blocked.reasons[0]["threshold"] == 0.8
    assert blocked.policy_version == "p-7" and blocked.models == {"classifier": "c:1", "guard": "g:1"}
    assert blocked.time == T0
    raw = (tmp_path / "audit.db").read_bytes() + (tmp_path / "audit.db-wal").read_bytes()
    assert b"awful text" not in raw


def test_raw_text_only_when_opted_in(tmp_path: Path) -> None:
    store = SQLiteAuditStore(path=tmp_path / "audit.db")
    trail(store, store_text=True).record([item("awful text")], [result("r1", "block")])
    assert next(store.iter_records()).text == "awful text"


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    store = SQLiteAuditStore(path=tmp_path / "audit.db")
    trail(store).record([item("a")], [result("dup", "flag")])
    with pytest.raises(AuditError, match="cannot write 2 audit records"):
        trail(store).record([item("b"), item("c")], [result("new", "flag"), result("dup", "flag")])
    assert [r.request_id for r in store.iter_records()] == ["dup"]  # "new" rolled back with the batch
    trail(store).record([item("d")], [result("after", "block")])
    assert store.count() == 2


def test_time_range_is_half_open(tmp_path: Path) -> None:
    store = SQLiteAuditStore(path=tmp_path / "audit.db")
    for minutes in range(4):
        trail(store, when=T0 + timedelta(minutes=minutes)).record([item("x")], [result(f"m{minutes}", "flag")])
    got = [r.request_id for r in store.iter_records(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))]
    assert got == ["m1", "m2"]


def test_parse_time_forms() -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert parse_time("2h", now=now) == now - timedelta(hours=2)
    assert parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("2026-11-22", now=now) == datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_time("2026-11-22T07:30:00Z") == datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since 'yesterday': not a time; use ISO 8601"):
        parse_time("yesterday")


def test_settings_and_other_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    settings = FairgateSettings.from_env().audit
    assert settings.enabled and settings.location() == str(tmp_path / "home" / "fairgate" / "audit.sqlite3")
    monkeypatch.setenv("FAIRGATE_AUDIT_DB", "off")
    assert not FairgateSettings.from_env().audit.enabled
    with pytest.raises(AuditError, match="'postgresql' audit store is not built yet"):
        open_audit_store("postgresql://db/audit")
    assert isinstance(open_audit_store(f"sqlite:///{tmp_path}/x.db"), SQLiteAuditStore)


def test_unwritable_path_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((AuditError, OSError)):
        SQLiteAuditStore(path=blocker / "audit.db")


def test_appended_records_survive_sigkill(tmp_path: Path) -> None:
    """A child appends batches, reports each append, and is SIGKILLed mid-stream: every
    batch it reported is in the file (WAL commit), whatever it was doing when killed."""
    db = tmp_path / "audit.db"
    code = textwrap.dedent(
        f"""
        import sys
        from types import SimpleNamespace
        from fairgate.service.audit import SQLiteAuditStore, AuditTrail
        store = SQLiteAuditStore(path={str(db)!r})
        trail = AuditTrail(store=store, policy_version="p", models={{}})
        for batch in range(100000):
            items = [SimpleNamespace(text=f"t{{batch}}-{{i}}", group=None) for i in range(8)]
            results = [SimpleNamespace(request_id=f"b{{batch}}-{{i}}", action="flag", reasons=[], label="x",
                                       scores={{}}, toxicity={{}}, groups=["none"]) for i in range(8)]
            trail.record(items, results)
            sys.stdout.write(f"{{batch}}\\n"); sys.stdout.flush()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[3], text=True
    )
    assert child.stdout is not None
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) >= 30:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    store = SQLiteAuditStore(path=db)
    stored = {r.request_id for r in store.iter_records()}
    for batch in acknowledged:
        assert {f"b{batch}-{i}" for i in range(8)} <= stored
    # Whole batches only: a batch is in completely or not at all.
    batches = {rid.split("-")[0] for rid in stored}
    assert len(stored) == 8 * len(batches)
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_record_model_round_trips() -> None:
    record = AuditRecord(
        request_id="r", time=T0, policy_version="p", models={}, action="flag", reasons=[], label="x",
        text_sha256="0" * 64, text_chars=1,
    )
    assert AuditRecord.model_validate_json(record.model_dump_json()) == record
