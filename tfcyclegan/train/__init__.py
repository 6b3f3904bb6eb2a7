"""Training: step (the compiled CycleGAN step, no I/O), optim (Adam and the learning-rate
policy), checkpoint (the run's state on disk), trainer (stages, epochs, checkpoints,
summaries, samples; `trainer.run`)."""
