"""Finetuning tasks: each supplies its data, loss and metric to the shared training loop."""
