"""``fairgate serve``: check the settings, the policy and the models, then become ``bentoml serve``.

A misconfigured service otherwise starts, forks its workers and only then fails (or, for
a missing model, answers 503 on /readyz forever). Checking first turns each of those into
one message naming the variable or file and the fix, and a non-zero exit, before anything
listens. Then the process is replaced (``exec``) by ``bentoml serve
fairgate.service.service:Fairgate`` with the host, port and workers of the settings, so
signals (Ctrl-C, SIGTERM from a supervisor, SIGHUP) reach BentoML's arbiter directly.

Registered by :mod:`fairgate.service.cli`; bentoml is imported only to look the models up.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairgate.service.settings import FairgateSettings

__all__ = ["ServeCheckError", "check_serving", "register", "serve_command"]

SERVICE_IMPORT = "fairgate.service.service:Fairgate"


class ServeCheckError(RuntimeError):
    """The service would not serve as configured; the message names what and the fix."""


def register(subparsers: Any, build_subparsers: Any) -> None:
    """Add ``serve`` to the ``fairgate`` command."""
    serve = subparsers.add_parser(
        "serve",
        help="check the settings, policy and models, then run the service (bentoml serve)",
        description=(
            "Validate the FAIRGATE_* settings, the API key files, the policy and that both models are "
            "in the BentoML store; then exec `bentoml serve fairgate.service.service:Fairgate` with "
            "the host, port and workers of the settings (FAIRGATE_HOST, FAIRGATE_PORT, FAIRGATE_WORKERS; "
            "the options below override them). Exit 2 on a problem, naming the fix."
        ),
    )
    serve.add_argument("--host", default=None, help="address to listen on (default: FAIRGATE_HOST, 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port (default: FAIRGATE_PORT, 3000)")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: FAIRGATE_WORKERS, 1)")
    serve.add_argument(
        "--skip-model-check", action="store_true", help="do not look the models up in the BentoML store first"
    )
    serve.add_argument("--dry-run", action="store_true", help="check, print the command, do not serve")
    serve.set_defaults(handler=_serve)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as ServiceSettings fields."""
    pairs = {"host": args.host, "port": args.port, "workers": args.workers}
    return {name: value for name, value in pairs.items() if value is not None}


def check_serving(overrides: dict[str, Any], *, models: bool = True) -> FairgateSettings:
    """The settings to serve with (the environment's, then ``overrides``), after every check.

    Raises :class:`ServeCheckError` naming the variable, file or model and the fix.
    """
    from pydantic import ValidationError

    from fairgate.guardrails.policy import PolicyError, default_policy_path, load_policy
    from fairgate.service.auth import AuthError
    from fairgate.service.settings import FairgateSettings, ServiceSettings, SettingsError

    try:
        settings = FairgateSettings.from_env()
    except SettingsError as error:
        raise ServeCheckError(str(error)) from None
    if overrides:
        try:
            service = ServiceSettings.model_validate({**settings.service.model_dump(), **overrides})
        except ValidationError as error:
            problems = "; ".join(f"--{'.'.join(map(str, e['loc']))} {e['input']!r}: {e['msg']}" for e in error.errors())
            raise ServeCheckError(f"invalid option: {problems}; fix the option") from None
        settings = settings.model_copy(update={"service": service})
    try:
        settings.auth.key_rings()
    except AuthError as error:
        raise ServeCheckError(str(error)) from None
    policy_path = settings.service.policy if settings.service.policy is not None else default_policy_path()
    try:
        load_policy(policy_path)  # validated here, so a bad file stops the start with its problems
    except PolicyError as error:
        raise ServeCheckError(
            f"{error}\n(FAIRGATE_POLICY={str(policy_path)!r}; `fairgate policy check FILE` lists every problem)"
        ) from None
    if models:
        _check_models(settings.service.classifier_tag, settings.service.guard_tag)
    return settings


def _check_models(classifier_tag: str, guard_tag: str | None = None) -> None:
    """Both models in the local store, or the command that builds them (never BentoCloud)."""
    import bentoml
    from bentoml.exceptions import NotFound

    wanted = [("FAIRGATE_CLASSIFIER_TAG", classifier_tag, "fairgate build classifier --if-missing")]
    if guard_tag is not None:
        wanted.append(("FAIRGATE_GUARD_TAG", guard_tag, "fairgate build guard --if-missing"))
    for variable, tag, build in wanted:
        try:
            bentoml.models.get(tag)
        except NotFound:
            raise ServeCheckError(
                f"model {tag!r} ({variable}) is not in the BentoML store ($BENTOML_HOME); build it with "
                f"`{build}` (or `make models`), or point {variable} at a tag `bentoml models list` shows"
            ) from None


def serve_command(settings: FairgateSettings) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and the variables its workers need to see the same settings."""
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        settings.service.host,
        "--port",
        str(settings.service.port),
    ]
    # The workers build the service from the environment: the overridden fields go there too.
    variables = {
        "FAIRGATE_HOST": settings.service.host,
        "FAIRGATE_PORT": str(settings.service.port),
        "FAIRGATE_WORKERS": str(settings.service.workers),
    }
    return command, variables


def _serve(args: argparse.Namespace) -> int:
    from fairgate.service.settings import environment_with

    try:
        settings = check_serving(_overrides(args), models=not args.skip_model_check)
    except ServeCheckError as error:
        print(f"fairgate serve: {error}", file=sys.stderr)
        return 2
    command, variables = serve_command(settings)
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in variables.items()) + " " + shlex.join(command)
    if args.dry_run:
        print(shown)
        return 0
    print(f"fairgate serve: {shown}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(command[0], command, environment_with(variables))
    return 0  # not reached: the process is bentoml serve now
