"""The command-line tools: flags -> config -> library. One module per console script:
tfcyclegan-train (train), tfcyclegan-export (export), tfcyclegan-translate (translate),
tfcyclegan-evaluate (evaluate), tfcyclegan-serve (serve)."""

import os


def quiet_tensorflow() -> None:
    """TensorFlow's C++ INFO and WARNING log lines off, unless the user set the level.

    Call before TensorFlow is imported: the level is read once, when it loads. (The few lines
    TensorFlow prints before its logging starts, such as oneDNN's notice, ignore the level.)
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
