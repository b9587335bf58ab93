"""Starting one service process: ``python -m services.<name>`` (what the containers run).

Loads the service, the runtime and ``shared`` only. ``alert-timing service <name>`` runs the
same ``serve`` after the CLI's own checks."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from services.runtime.service import Service
from shared import bus
from shared import settings as settings_mod
from shared.settings import ConfigError, Settings
from shared.telemetry.logging import setup_logging

T = TypeVar("T")

#: Builds a service from its settings (``services.<name>.app.build``).
Builder = Callable[[Settings], Service]


def module_of(name: str) -> str:
    """The package ``python -m`` starts for a service: ``hub-capture`` -> ``services.hub_capture``."""
    return "services." + name.replace("-", "_")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop where it is installed, else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class Unreachable(Exception):
    """NATS could not be reached at start-up (the message says where and why)."""


async def reachable(settings: Settings, name: str) -> None:
    """Connect once, failing fast (not reconnecting forever) with the real cause when NATS
    cannot be reached."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    try:
        nc = await bus.connect(settings, name, max_reconnect_attempts=1, connect_timeout=3,
                               allow_reconnect=False, error_cb=on_error)
    except Exception as exc:  # noqa: BLE001 - NoServersError, OSError, TimeoutError, auth errors
        cause = errors[-1] if errors else exc
        raise Unreachable(f"cannot reach NATS at {settings.nats_url}: "
                          f"{type(cause).__name__}: {cause}".rstrip(": ")) from None
    await nc.close()


def serve(service: Service) -> int:
    """Run the service until SIGTERM or SIGINT (then it drains and returns) or a failure; its
    exit status (1: failed, to be started again)."""
    return run_loop(service.run())


def parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {module_of(name)}",
        description=f"Run the {name} service against $NATS_URL / --nats-url until SIGTERM, then drain. "
                    "Settings come from the ALERT_TIMING_*, NATS_* and OTEL_* environment variables.")
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated (default: $NATS_URL)")
    return p


def main(name: str, build: Builder, argv: Sequence[str] | None = None) -> int:
    """Parse ``--nats-url``, check the settings and that NATS can be reached (a problem is one
    line on stderr and exit status 2), serve."""
    args = parser(name).parse_args(argv)
    try:
        settings = settings_mod.load(nats_url=args.nats_url)
        setup_logging(name, settings.log_level)
        service = build(settings)  # telemetry's settings checked before NATS is tried
        run_loop(reachable(settings, name))
    except (ConfigError, Unreachable) as exc:
        print(f"{module_of(name)}: {exc}", file=sys.stderr)
        return 2
    return serve(service)
