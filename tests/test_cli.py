"""How the training commands end (cli.train_or_exit): a signal's stop with the shell's status, the
user's errors in one line with status 1, a bug with its traceback."""

import errno
import signal

import pytest

from instagan_jax import checkpoint, cli, divergence, stopping


def ending(error: Exception):
    def train(config, workdir):
        raise error

    return train


@pytest.mark.parametrize(
    "error, status",
    [
        (stopping.StopRequested(signal.SIGTERM), 0),
        (stopping.StopRequested(signal.SIGINT), 130),
        (divergence.Diverged("non-finite loss ['G_A'] at step 3"), 1),
        (checkpoint.CheckpointWriteError("could not write checkpoint 4"), 1),
        (ValueError("config.batch_size must be a positive integer, got 0"), 1),
    ],
)
def test_a_training_command_ends_with_the_status_a_shell_expects(error, status, capsys):
    with pytest.raises(SystemExit) as ended:
        cli.train_or_exit(ending(error), {"batch_size": 0}, "run")
    assert ended.value.code == status
    if status == 1:
        assert capsys.readouterr().err == f"error: {error}\n"


def test_errors_a_trainer_names_end_in_one_line_and_any_other_keeps_its_traceback(capsys):
    class TrainingError(RuntimeError):
        pass

    with pytest.raises(SystemExit):
        cli.train_or_exit(ending(TrainingError("init_from holds other networks")), {}, "run", errors=(TrainingError,))
    assert capsys.readouterr().err == "error: init_from holds other networks\n"
    with pytest.raises(OSError, match="No space left"):  # not one of those: the traceback stays
        cli.train_or_exit(ending(OSError(errno.ENOSPC, "No space left on device")), {}, "run")
