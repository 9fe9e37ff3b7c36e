"""Scoring as the original GLM does it: cloze candidates, LAMBADA and windowed perplexity, the
scoring rows and evaluation files, the batched scorer, and the harness's token-level work."""
