"""Prometheus and promtool for the tests: install on demand, run on 127.0.0.1, stop after.

``ensure_prometheus()`` runs ``tests/setup/prometheus.sh`` (installs Debian's
``prometheus`` package when ``prometheus``/``promtool`` are missing) and skips the calling
test with the script's reason only when they cannot be installed. ``PrometheusServer``
starts a private Prometheus with a temporary config and data directory, listening on
127.0.0.1 only, and kills it on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml

from loadtests._server import free_port
from tests.setup._install import run_setup_script

SETUP_SCRIPT = Path(__file__).resolve().parent / "prometheus.sh"


class PrometheusUnavailable(RuntimeError):
    """prometheus/promtool are missing and could not be installed here."""


def ensure_prometheus() -> Path:
    """The directory holding ``prometheus`` and ``promtool``, installing them if needed.

    Raises :class:`PrometheusUnavailable` with the setup script's reason otherwise.
    """
    found = shutil.which("promtool")
    if found and shutil.which("prometheus"):
        return Path(found).parent
    return run_setup_script(SETUP_SCRIPT, error=PrometheusUnavailable)


def require_prometheus() -> Path:
    """Like :func:`ensure_prometheus`, but skips the calling pytest test when unavailable."""
    import pytest

    try:
        return ensure_prometheus()
    except PrometheusUnavailable as error:
        pytest.skip(f"Prometheus cannot be installed here: {error}")


class PrometheusServer:
    """A private Prometheus on 127.0.0.1 scraping ``targets`` with the given rule files.

    Use as a context manager; the process and its data directory are removed on exit.
    """

    def __init__(
        self,
        *,
        bin_dir: Path,
        targets: list[str],
        rule_files: list[Path],
        job: str = "fairgate",
        interval_s: float = 1.0,
        base_config: Path | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.targets = targets
        self.rule_files = rule_files
        self.job = job
        self.interval = f"{interval_s:g}s"
        self.base_config = base_config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def config(self) -> dict[str, Any]:
        """The shipped prometheus.yml with the test's targets, intervals and rule paths."""
        base: dict[str, Any] = yaml.safe_load(self.base_config.read_text(encoding="utf-8")) if self.base_config else {}
        config = dict(base)
        config["global"] = {
            **base.get("global", {}),
            "scrape_interval": self.interval,
            "evaluation_interval": self.interval,
        }
        config["rule_files"] = [str(path) for path in self.rule_files]
        jobs = [dict(job) for job in base.get("scrape_configs", [])] or [{"job_name": self.job}]
        for job in jobs:
            if job["job_name"] == self.job:
                job["scrape_interval"] = self.interval
                job["scrape_timeout"] = self.interval
                job["static_configs"] = [{"targets": list(self.targets)}]
        config["scrape_configs"] = jobs
        return config

    def __enter__(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="fairgate-prometheus-"))
        config_file = self._dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False), encoding="utf-8")
        self._log = open(self._dir / "prometheus.log", "wb")
        self._process = subprocess.Popen(
            [
                str(self.bin_dir / "prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout_s=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout_s}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._dir is None or not (self._dir / "prometheus.log").exists():
            return ""
        text = (self._dir / "prometheus.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- HTTP API ----------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns ``data`` or raises with Prometheus's error."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now; the result vector (``[{metric, value: [t, "v"]}, ...]``)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for_scrape_after(self, moment: float, *, timeout_s: float = 30.0) -> None:
        """Until a scrape of the job that started after ``moment`` (a ``time.time()``) is stored.

        Prometheus adds static targets only after its discovery throttle (about 5 s after
        start), so the first scrape comes late; counters created before a target's first
        scrape lose those increments to rate(). Wait for this before and after a warm-up.
        """
        deadline = time.monotonic() + timeout_s
        expr = f'max(timestamp(up{{job="{self.job}"}}))'
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result and float(result[0]["value"][1]) > moment:
                return
            time.sleep(0.2)
        raise RuntimeError(f"no scrape of job {self.job} after {moment} within {timeout_s}s: {self.log_tail()}")

    def targets_health(self) -> list[str]:
        return [t["health"] for t in self.api("targets")["activeTargets"]]
