"""The command-line tools: flags -> config -> library. One module per console script:
tfcyclegan-train (train), tfcyclegan-export (export), tfcyclegan-translate (translate),
tfcyclegan-evaluate (evaluate), tfcyclegan-serve (serve)."""

import os
import sys


def quiet_tensorflow() -> None:
    """TensorFlow's C++ INFO and WARNING log lines off, unless the user set the level.

    Call before TensorFlow is imported: the level is read once, when it loads. (The few lines
    TensorFlow prints before its logging starts, such as oneDNN's notice, ignore the level.)
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def define_key_flags(define) -> None:
    """Calls define() and makes the flags it adds the ones --help lists.

    absl's --help shows the flags of the script that was run (train.py, or a console script);
    these are defined in tfcyclegan.cli.*, so without this --help would only say "Try --helpfull".
    """
    from absl import flags

    before = set(flags.FLAGS)
    define()
    for name in sorted(set(flags.FLAGS) - before):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


def run_command(define, main, *, absl_warnings_only: bool = False) -> None:
    """A console entry point: TensorFlow quiet, the command's flags (listed by --help), then main."""
    from absl import app, logging

    quiet_tensorflow()
    define_key_flags(define)
    if absl_warnings_only:
        logging.set_verbosity(logging.WARNING)
    app.run(main)
