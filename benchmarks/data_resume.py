"""Time to the first batch after `set_state` deep into a `files` corpus, vs a fresh start. JSON.

  python benchmarks/data_resume.py                      # 400k one-line documents, written to a temp dir
  python benchmarks/data_resume.py --documents=100000 --positions=10,50000,99000

The corpus is generated here (KJV verses, one ~200-character document per line, one file). A
state at document N is the state a run saved there: the location of N's shuffle window (its
byte offset and first line) and N's rank in it (input_pipeline/streams.py). A resume that re-read
the stream up to N would grow linearly with N; `ratio_last_to_first` should stay near 1.
"""

import argparse
import json
import os
import sys
import statistics
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from input_pipeline import config as config_lib, pipeline, sources  # noqa: E402
from input_pipeline import tokenizer as tokenizer_lib  # noqa: E402


def write_corpus(path: str, documents: int) -> list[int]:
  """`documents` lines of KJV text; returns each line's byte offset."""
  text = ' '.join(sources.kjv_chapters()).encode('utf-8')
  offsets, position = [], 0
  with open(path, 'wb') as f:
    for i in range(documents):
      start = (i * 997) % (len(text) - 300)
      line = b'doc%d ' % i + text[start:start + 200].replace(b'\n', b' ') + b'\n'
      offsets.append(position)
      f.write(line)
      position += len(line)
  return offsets


def first_batch_seconds(cfg, tok, args, state=None) -> float:
  """The median over --repeats fresh iterators of (set_state +) the first batch."""
  return statistics.median(_one_first_batch(cfg, tok, args, state) for _ in range(args.repeats))


def _one_first_batch(cfg, tok, args, state) -> float:
  it = pipeline.make_iterator(cfg, tok, split='train', seq_length=args.seq_length,
                              per_host_batch=args.batch, seed=0)
  start = time.perf_counter()
  if state is not None:
    it.set_state(state)
  next(it)
  seconds = time.perf_counter() - start
  it.close()
  return seconds


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--documents', type=int, default=400_000)
  p.add_argument('--positions', default='10,200000,390000')
  p.add_argument('--seq_length', type=int, default=128)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--cache_dir', default=os.path.expanduser('~/.cache/glm_jax/tokenizers'))
  a = p.parse_args()
  tok = tokenizer_lib.load_or_train(config_lib.default_data_config(), a.cache_dir)
  with tempfile.TemporaryDirectory() as root:
    offsets = write_corpus(os.path.join(root, 'corpus.txt'), a.documents)
    cfg = config_lib.default_data_config()
    cfg.source, cfg.files, cfg.eval_holdout_fraction = 'files', os.path.join(root, '*.txt'), 0.0
    window = int(cfg.shuffle_buffer)
    template = pipeline.make_iterator(cfg, tok, split='train', seq_length=a.seq_length,
                                      per_host_batch=a.batch, seed=0)
    next(template)
    template_state = template.get_state()
    template.close()
    result = {'documents': a.documents, 'shuffle_window': window,
              'fresh_start_s': round(first_batch_seconds(cfg, tok, a), 4), 'resume_s': {}}
    for n in (int(x) for x in a.positions.split(',')):
      first = (n // window) * window
      state = dict(template_state, step=n, offset=0, loc=[0, offsets[first], first, n - first])
      result['resume_s'][str(n)] = round(first_batch_seconds(cfg, tok, a, state), 4)
  times = list(result['resume_s'].values())
  result['ratio_last_to_first'] = round(times[-1] / times[0], 3)
  print(json.dumps(result))


if __name__ == '__main__':
  main()
