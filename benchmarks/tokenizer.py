"""Encoding speed of the released GLM tokenizers on one core, beside the original's. Prints JSON.

  python benchmarks/tokenizer.py --tokenizer_root=DIR [--original_repo=GLM_CHECKOUT]

DIR holds one directory per kind (bert-uncased/vocab.txt, gpt2/vocab.json + merges.txt, ...;
default: the small test vocabularies in tests/data/released_tokenizers). The corpus is the
default one (the KJV Bible, 1189 chapters), encoded with `encode_batch_numpy` in batches of 256
documents as the input pipeline does, pinned to one CPU core with Rust and sentencepiece on one
thread. `cold` is the first pass over the corpus (every distinct word encoded once), `warm` a
second pass. With --original_repo (an unpacked THUDM/GLM checkout and the `regex` package) the
original pure-Python tokenizer encodes the first --original_docs chapters in the same run, and
`ids_equal_original` says whether both gave the same ids there.
"""

import argparse
import json
import os
import sys
import time
import types

os.environ['RAYON_NUM_THREADS'] = '1'  # before `tokenizers` starts its thread pool
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from input_pipeline import sources  # noqa: E402
from input_pipeline import tokenizer as tokenizer_lib  # noqa: E402

KINDS = ('bert-uncased', 'gpt2', 'roberta', 'chinese-sp')


def _import_original(repo):
  """The original's tokenization module, imported without `data_utils/__init__` (it loads the
  datasets) and with import-only stand-ins for modules the tokenizers never call."""
  for name in ('nltk', 'nltk.tokenize', 'boto3', 'requests', 'botocore', 'botocore.exceptions',
               'tqdm', 'utils'):
    try:
      __import__(name)
    except ImportError:
      module = types.ModuleType(name)
      module.ClientError = Exception
      module.tqdm = lambda x, *a, **k: x
      module.print_rank_0 = lambda *a, **k: None
      sys.modules[name] = module
  package = types.ModuleType('data_utils')
  package.__path__ = [os.path.join(repo, 'data_utils')]
  sys.modules['data_utils'] = package
  from data_utils import tokenization, tokenization_gpt2, sp_tokenizer, wordpiece  # pylint: disable=g-import-not-at-top
  return tokenization, tokenization_gpt2, sp_tokenizer, wordpiece


def _original_tokenizer(repo, kind, directory):
  tokenization, gpt2, sp, wordpiece = _import_original(repo)
  if kind.startswith('bert'):
    name = 'bert-base-uncased' if kind == 'bert-uncased' else 'bert-base-cased'
    wordpiece.PRETRAINED_VOCAB_ARCHIVE_MAP[name] = os.path.join(directory, 'vocab.txt')
    return tokenization.BertWordPieceTokenizer(name, add_block_symbols=True, add_task_mask=True)
  if kind in ('gpt2', 'roberta'):
    gpt2.PRETRAINED_VOCAB_ARCHIVE_MAP[kind] = os.path.join(directory, 'vocab.json')
    gpt2.PRETRAINED_MERGES_ARCHIVE_MAP[kind] = os.path.join(directory, 'merges.txt')
    return tokenization.GPT2BPETokenizer(kind, add_block_symbols=True, add_task_mask=True)
  sp.PRETRAINED_MODEL_FILE = os.path.join(directory, 'cog-pretrain.model')
  return tokenization.ChineseSPTokenizer(add_block_symbols=True, add_task_mask=True)


def _encode_corpus(tok, docs, batch):
  start = time.perf_counter()
  out = []
  for i in range(0, len(docs), batch):
    out += tok.encode_batch_numpy(docs[i:i + batch])
  return out, time.perf_counter() - start


def bench(kind, directory, docs, args):
  tok = tokenizer_lib.load_pretrained(directory, kind, task_mask=True, num_threads=1)
  encoded, cold = _encode_corpus(tok, docs, args.batch)
  tokens = int(sum(a.size for a in encoded))
  warm = min(_encode_corpus(tok, docs, args.batch)[1] for _ in range(args.repeats))
  row = {'kind': kind, 'vocab_dir': directory, 'vocab_size': tok.vocab_size, 'documents': len(docs),
         'tokens': tokens, 'threads': 1,
         'tokens_per_s_cold': round(tokens / cold), 'tokens_per_s_warm': round(tokens / warm)}
  if args.original_repo:
    sys.stdout, saved = open(os.devnull, 'w'), sys.stdout  # the original prints while loading
    try:
      original = _original_tokenizer(args.original_repo, kind, directory)
    finally:
      sys.stdout = saved
    subset = docs[:args.original_docs]
    start = time.perf_counter()
    want = [original.EncodeAsIds(d).tokenization for d in subset]
    seconds = time.perf_counter() - start
    n = sum(map(len, want))
    row['original_documents'] = len(subset)
    row['original_tokens_per_s'] = round(n / seconds)
    row['ids_equal_original'] = [a.tolist() for a in encoded[:len(subset)]] == want
    row['warm_speedup_vs_original'] = round(row['tokens_per_s_warm'] / row['original_tokens_per_s'], 1)
    row['cold_speedup_vs_original'] = round(row['tokens_per_s_cold'] / row['original_tokens_per_s'], 1)
  return row


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--tokenizer_root', default=os.path.join(ROOT, 'tests', 'data', 'released_tokenizers'))
  p.add_argument('--kinds', default=','.join(KINDS))
  p.add_argument('--original_repo', default='', help='unpacked THUDM/GLM checkout (optional)')
  p.add_argument('--original_docs', type=int, default=150)
  p.add_argument('--batch', type=int, default=256, help='documents per encode call')
  p.add_argument('--repeats', type=int, default=2)
  args = p.parse_args()
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  docs = list(sources.kjv_chapters())
  for kind in args.kinds.split(','):
    print(json.dumps(bench(kind, os.path.join(args.tokenizer_root, kind), docs, args)), flush=True)


if __name__ == '__main__':
  main()
