"""Input-pipeline throughput: end-to-end (raw text -> batches) and blank-infilling only. Prints JSON.

  python benchmarks/data_pipeline.py --seq_length=512 --batch=16 --batches=200
Tokens/s counts batch slots (batch * seq_length) per second, padding included; the padding
fraction is reported next to it. The default corpus (KJV) is used; its tokenizer is trained once.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from input_pipeline import blank_infilling, config as config_lib, pipeline, sources  # noqa: E402
from input_pipeline import tokenizer as tokenizer_lib  # noqa: E402


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--seq_length', type=int, default=512)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--batches', type=int, default=200)
  p.add_argument('--cache_dir', default=os.path.expanduser('~/.cache/glm_jax/tokenizers'))
  p.add_argument('--bert_prob', type=float, default=1.0)
  p.add_argument('--gap_sentence_prob', type=float, default=0.0)
  a = p.parse_args()
  cfg = config_lib.default_data_config()
  cfg.bert_prob, cfg.gap_sentence_prob = a.bert_prob, a.gap_sentence_prob
  tok = tokenizer_lib.load_or_train(cfg, a.cache_dir)

  # End to end: a fresh iterator, clock started before the first batch (includes start-up).
  it = pipeline.make_iterator(cfg, tok, split='train', seq_length=a.seq_length,
                              per_host_batch=a.batch, seed=0)
  start = time.perf_counter()
  for _ in range(a.batches):
    next(it)
  e2e = time.perf_counter() - start
  slots = a.batches * a.batch * a.seq_length
  text_tokens = slots * (1 - it.padding_fraction)
  it.close()

  # Blank infilling only, on a pre-tokenized stream.
  stream = np.concatenate([[tok.special_ids['CLS']] + tok.encode(t) + [tok.special_ids['eos']]
                           for t in sources.kjv_chapters()[:200]]).astype(np.int32)
  bi = blank_infilling.BlankInfilling(tok.special_ids, a.seq_length, sentence_end_ids=tok.sentence_end_ids,
                                      bert_prob=a.bert_prob, gap_sentence_prob=a.gap_sentence_prob)
  rng = np.random.default_rng(0)
  cls_id = tok.special_ids['CLS']
  pos = 0
  start = time.perf_counter()
  for _ in range(a.batches):  # as the pipeline does: plan each sample, lay out the batch at once
    objective = bi.choose_objective(rng)
    draws = bi.draw(rng, objective, a.batch)
    plans = []
    for b in range(a.batch):
      if pos + a.seq_length >= len(stream):
        pos = 0
      window, extra = stream[pos:pos + a.seq_length], 0
      if window[0] != cls_id:  # a window inside a document gets a [CLS]
        window, extra = np.concatenate([[cls_id], window[:-1]]), 1
      plans.append(bi.plan(window, rng, objective, draws, b))
      pos += plans[-1].tokens.shape[0] - extra
    bi.layout(plans)
  bi_time = time.perf_counter() - start

  print(json.dumps({
      'seq_length': a.seq_length, 'per_host_batch': a.batch, 'batches': a.batches,
      'vocab_size': tok.vocab_size, 'cpu_count': os.cpu_count(),
      'end_to_end_tokens_per_s': round(slots / e2e),
      'end_to_end_text_tokens_per_s': round(text_tokens / e2e),
      'blank_infilling_tokens_per_s': round(a.batches * a.batch * a.seq_length / bi_time),
      'padding_fraction': round(it.padding_fraction, 4),
  }))


if __name__ == '__main__':
  main()
