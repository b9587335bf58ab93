"""asyncssh's own SFTP server on a loopback port: a second, independent SFTP implementation for
the delivery tests (``tests.harness.sftp_server.AsyncsshSftpServer`` runs it as a process, so
stopping it ends the listener and every session, as an outage would).

    python -m tests.harness.asyncssh_sftp --port P --host-key KEY --authorized-keys FILE [--read-only]

It serves the real file system with key authentication only, and prints ``listening`` once it
accepts connections. ``--read-only`` refuses every write (permission denied), like OpenSSH's
``internal-sftp -R``.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncssh


class ReadOnlySFTPServer(asyncssh.SFTPServer):
    """Every request that would change the file system is refused."""

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC | asyncssh.FXF_APPEND):
            raise asyncssh.SFTPPermissionDenied("read-only")
        return super().open(path, pflags, attrs)

    def _refuse(self, *args: object) -> None:
        raise asyncssh.SFTPPermissionDenied("read-only")

    write = mkdir = rename = posix_rename = remove = rmdir = setstat = _refuse  # type: ignore[assignment]


async def serve(port: int, host_key: str, authorized_keys: str, read_only: bool) -> None:
    server = await asyncssh.listen(
        "127.0.0.1", port, server_host_keys=[host_key], authorized_client_keys=authorized_keys,
        sftp_factory=ReadOnlySFTPServer if read_only else asyncssh.SFTPServer, allow_scp=False,
        password_auth=False, kbdint_auth=False)
    print("listening", flush=True)
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--authorized-keys", required=True)
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.host_key, args.authorized_keys, args.read_only))


if __name__ == "__main__":
    main()
