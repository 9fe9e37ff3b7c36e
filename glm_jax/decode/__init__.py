"""Decoding a GLM with a KV cache: one prefill and one decode step (`cache`), the greedy /
sampling loop (`loop`, choices in `sampling`), and one batched beam search whose stopping and
scoring rule is a parameter (`beam`), laid out for blank filling (`blank_beams`) and
seq2seq (`seq2seq_beams`)."""
