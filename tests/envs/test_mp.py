"""Worker processes: what isolating them from the parent's process group must not break."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("termios")

# A session on a fresh pseudo-terminal with ``stty tostop`` set: a process of a background
# process group that writes to it is stopped by SIGTTOU unless it ignores that signal. A worker
# isolated from the parent's group is such a process, and a stopped worker would hang the run.
SCRIPT = textwrap.dedent(
    """
    import fcntl, os, queue, select, termios
    from trainers.envs._mp import isolate_from_group_signals, worker_context

    def worker(done):
        isolate_from_group_signals()
        print("a warning from the worker", flush=True)
        done.put(True)

    if __name__ == "__main__":
        try:
            master, terminal = os.openpty()
        except OSError as err:  # a sandbox without pseudo-terminals
            print(f"no-pty {err}")
            raise SystemExit(0)
        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)  # this session's controlling terminal
        attrs = termios.tcgetattr(terminal)
        attrs[3] |= termios.TOSTOP
        termios.tcsetattr(terminal, termios.TCSANOW, attrs)
        report = os.dup(1)
        os.dup2(terminal, 1)  # stderr stays the test's: tracebacks reach it
        context = worker_context()
        done = context.Queue()
        process = context.Process(target=worker, args=(done,))
        process.start()
        try:
            outcome = "wrote" if done.get(timeout=20) else "?"
        except queue.Empty:
            outcome = "stopped"
        process.kill()
        process.join()
        readable, _, _ = select.select([master], [], [], 1)
        written = os.read(master, 4096) if readable else b""
        os.write(report, f"{outcome} {written!r}".encode())
    """
)


def test_an_isolated_worker_can_write_to_a_tostop_terminal(tmp_path):
    script = tmp_path / "tostop_worker.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # a session leader without a terminal can take the pty
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("no-pty"):
        pytest.skip(result.stdout)
    assert result.stdout.startswith("wrote"), result.stdout
    assert "a warning from the worker" in result.stdout
