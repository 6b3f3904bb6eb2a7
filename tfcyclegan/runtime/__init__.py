"""Where training runs: strategy (tf.distribute, CPU threads), precision (the dtype policy and
its CPU probe), cluster (TF_CONFIG, timeouts, lost workers). private.py is the only module of
tfcyclegan that touches private TensorFlow, Keras or LiteRT API."""
