"""Ctrl-C ends an operations command even when its body drops the cancellation (Python 3.11's
``wait_for`` drops one that lands as a reply arrives): a real process, a real SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: A command whose body takes the first cancellation as if a reply had come, and waits on.
COMMAND = textwrap.dedent("""
    import argparse, asyncio, sys
    from tools.ops.common import command

    async def body(args):
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # dropped
        await asyncio.Event().wait()

    sys.exit(command("demo", body)(argparse.Namespace()))
""")


def test_ctrl_c_ends_a_command_whose_body_dropped_the_cancellation() -> None:
    proc = subprocess.Popen([sys.executable, "-c", COMMAND], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
