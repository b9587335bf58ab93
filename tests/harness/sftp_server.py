"""Real SFTP servers on a free loopback port, serving a temporary directory: OpenSSH's ``sshd``
(``SftpServer``) and asyncssh's own SFTP server (``AsyncsshSftpServer``, a second implementation).

Throw-away host and user keys are made per server; the client's ``known_hosts`` holds the host
key. ``read_only=True`` refuses every write (``internal-sftp -R``; asyncssh: permission denied),
so a test can make the gateway refuse and then accept again by restarting it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from alert_timing.nats_server import greets

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class SftpServer:
    kind = "openssh"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "landing"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = keygen(workdir / "host_ed25519")
        self.user_key = keygen(workdir / "user_ed25519")
        (workdir / "authorized_keys").write_text(Path(f"{self.user_key}.pub").read_text())
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root}"

    def env(self) -> dict[str, str]:
        return {"ALERT_TIMING_DELIVERY_URL": self.url, "ALERT_TIMING_DELIVERY_KEY": str(self.user_key),
                "ALERT_TIMING_DELIVERY_KNOWN_HOSTS": str(self.known_hosts)}

    def start(self, read_only: bool = False) -> None:
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            f"Subsystem sftp internal-sftp{' -R' if read_only else ''}",
            "LogLevel ERROR",
            "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=(self.workdir / "sshd.log").open("ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.workdir / 'sshd.log').read_text()}")
            if greets("127.0.0.1", self.port, b"SSH-"):
                return
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def stop(self) -> None:
        """The gateway goes away: the listener and every open session (a real outage)."""
        if self.proc is not None and self.proc.poll() is None:
            sessions = psutil.Process(self.proc.pid).children(recursive=True)
            for proc in [*sessions, psutil.Process(self.proc.pid)]:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(5)
        self.proc = None

    def restart(self, read_only: bool = False) -> None:
        self.stop()
        self.start(read_only=read_only)


class AsyncsshSftpServer(SftpServer):
    """asyncssh's SFTP server (``tests.harness.asyncssh_sftp``) in a process of its own, with the
    same keys, URL and controls as ``SftpServer``."""

    kind = "asyncssh"

    def start(self, read_only: bool = False) -> None:
        repo = Path(__file__).resolve().parents[2]
        cmd = [sys.executable, "-m", "tests.harness.asyncssh_sftp", "--port", str(self.port),
               "--host-key", str(self.host_key), "--authorized-keys", str(self.workdir / "authorized_keys")]
        self.proc = subprocess.Popen([*cmd, *(["--read-only"] if read_only else [])], cwd=repo,
                                     stdout=subprocess.PIPE, stderr=(self.workdir / "asyncssh.log").open("ab"))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server says so once it accepts connections
        if line.strip() != b"listening":
            self.proc.wait(10)
            raise RuntimeError(f"asyncssh SFTP server did not start: {(self.workdir / 'asyncssh.log').read_text()}")

    def stop(self) -> None:
        proc = self.proc
        super().stop()
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


#: Both implementations, by name (tests are parametrized over them).
SERVERS: dict[str, type[SftpServer]] = {"openssh": SftpServer, "asyncssh": AsyncsshSftpServer}
