"""`fairgate audit export`: JSONL of a time range, from --db or FAIRGATE_AUDIT_DB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from fairgate.service.audit import AuditTrail, SQLiteAuditStore
from fairgate.service.cli import main

T0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def fill(db: Path) -> None:
    store = SQLiteAuditStore(path=db)
    for minutes, action in enumerate(["flag", "block", "allow", "flag"]):
        when = T0 + timedelta(minutes=minutes)
        AuditTrail(store=store, policy_version="p", models={"classifier": "c:1"}, clock=lambda w=when: w.timestamp()).record(
            [SimpleNamespace(text=f"text {minutes}", group="male")],
            [SimpleNamespace(request_id=f"r{minutes}", action=action, reasons=[], label=None, scores={}, toxicity={}, groups=["male"])],
        )
    store.close()


def test_export_writes_jsonl_for_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "audit.db"
    fill(db)
    out = tmp_path / "out.jsonl"
    code = main(["audit", "export", "--since", "2026-11-22T07:00:00Z", "--until", "2026-11-22T07:03:00Z",
                 "--db", str(db), "--out", str(out)])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["request_id"] for line in lines] == ["r0", "r1"]
    assert lines[1]["action"] == "block" and lines[1]["time"].startswith("2026-11-22T07:01:00")
    assert "exported 2 audit records" in capsys.readouterr().err


def test_export_to_stdout_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "audit.db"
    fill(db)
    monkeypatch.setenv("FAIRGATE_AUDIT_DB", str(db))
    assert main(["audit", "export", "--since", "2026-11-22"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r0", "r1", "r3"]


def test_export_errors_name_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "export", "--since", "last tuesday", "--db", str(tmp_path / "x.db")]) == 2
    assert "not a time; use ISO 8601" in capsys.readouterr().err
    assert main(["audit", "export", "--since", "1h", "--db", str(tmp_path / "missing.db")]) == 1
    assert "does not exist; pass --db PATH or set FAIRGATE_AUDIT_DB" in capsys.readouterr().err
    assert main(["audit", "export", "--since", "2026-11-22", "--until", "2026-11-21", "--db", str(tmp_path / "x.db")]) == 2
