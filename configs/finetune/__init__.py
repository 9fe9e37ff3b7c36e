"""Finetuning configs: one file per task family, size-independent (the shape comes from init_from)."""
