"""What pretraining and finetuning share: the loop, the train state and steps, the optimizer and
objective, the data the loop reads, checkpoints with their data state, metrics, profiling and
the ahead-of-time compile for a TPU topology."""
