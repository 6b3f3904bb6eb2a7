"""The command-line tools: flags -> config -> library. One module per console script:
tfcyclegan-train (train), tfcyclegan-export (export), tfcyclegan-translate (translate),
tfcyclegan-evaluate (evaluate)."""
