"""Finetuning tasks: each supplies its data, loss and metric to the shared training loop, through
the task protocol (`tasks/protocol.py`)."""
