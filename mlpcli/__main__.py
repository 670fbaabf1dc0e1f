"""The `mlp` command (and `python -m mlpcli`): Ctrl-C handling around the click app in mlpcli.cli.

A Ctrl-C while the program is still starting up (importing its libraries) ends it at once with exit code 130:
nothing has been written yet. Once a command runs, Ctrl-C raises KeyboardInterrupt (training turns it into a
clean stop that saves last.npz); from the first Ctrl-C on, further ones are ignored, so that the clean-up and
the exit (code 130) are not cut short.
"""

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, _abort_start_up)
    import click

    from mlpcli.cli import cli

    global _command_running
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        code = _run(cli, click)
        _command_running = False      # done: from here a Ctrl-C raises nothing (no traceback) ...
    except KeyboardInterrupt:         # a Ctrl-C between the command's end and the line above
        _command_running = False
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # ... nor kills the interpreter's shutdown (exit code -2)
    if code == 130:     # interrupted, and cleaned up: leave before the interpreter's shutdown meets a pending Ctrl-C
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _run(cli, click) -> int:
    """Run the click app; its exit code (130 after a Ctrl-C before the command began its work)."""
    try:
        return cli.main(prog_name="mlp", standalone_mode=False)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except (click.Abort, KeyboardInterrupt):          # a Ctrl-C before the command began its work
        click.echo("Aborted.", err=True)
        return 130
    except BrokenPipeError:                           # the reader went away (`mlp runs | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _abort_start_up(signum, frame) -> None:
    os.write(2, b"Aborted.\n")
    os._exit(130)


_command_running = True


def _interrupt_once(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _command_running:
        raise KeyboardInterrupt


if __name__ == "__main__":
    main()
