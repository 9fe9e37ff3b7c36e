"""Sequence-to-sequence tasks (CNN/DailyMail, XSum, Gigaword, SQuAD question generation): data and
rows (`data`), ROUGE as the original reports it (`rouge`); decoding is
`glm_jax.decode.seq2seq_beams`."""
