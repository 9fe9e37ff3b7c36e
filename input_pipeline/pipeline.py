"""Raw text -> fixed-shape GLM batches: read -> tokenize -> pack -> blank-infill -> batch.

Reading and sentencepiece run on a background thread (the embedded corpus straight from memory,
streamed sources through tf.data); the main thread plans each sample and lays out whole batches.

Packing: documents become one stream `[CLS] doc [eos] [CLS] doc [eos] ...`; each sample takes the
longest prefix of the stream whose Part A + Part B fills `seq_length` (cut at a sentence end when
one is near), and a sample that starts inside a document gets a fresh [CLS].

Determinism and resume: the stream order is a function of (seed, epoch, shard) (streams.py); the
batch at step t draws its randomness from `default_rng([seed, process_index, split, t])`. The
iterator state is just the stream location (epoch, the document's seekable location, token offset)
plus the step, so restoring seeks to that document (reading at most one shuffle window again, not
the stream before it) and yields exactly the batches the original would have.
"""

from __future__ import annotations

import atexit
import collections
import queue
import threading
import weakref

import numpy as np

from input_pipeline import blank_infilling, sources, streams
from input_pipeline import tokenizer as tokenizer_lib
from input_pipeline.bounded_queue import put_unless_stopped
from input_pipeline.errors import DataSourceError

_STATE_VERSION = 2  # 2: a seekable location per document (streams.py) instead of an index
_FIRST_READ_DOCUMENTS = 16  # a small first read: the first batch need not wait for a full one
_KNOBS = ('bert_prob', 'gap_sentence_prob', 'gpt_infill_prob', 'gpt_min_ratio', 'mask_ratio',
          'gap_sentence_ratio', 'poisson_lambda', 'max_span_length', 'shuffle_spans',
          'sentence_cut_slack', 'task_mask', 'block_mask_prob', 'context_mask_ratio')


class _Chunk(collections.namedtuple('_Chunk', 'epoch doc_locs lengths tokens skipped')):
  """Tokenized documents: `tokens` is `[CLS] doc [eos]` for each, concatenated; `doc_locs`
  holds each one's (location, location of the document after it) in its epoch's stream."""


_LIVE_READERS = weakref.WeakSet()


@atexit.register
def _close_live_readers():
  """Stops reader threads before interpreter exit: a daemon thread killed inside sentencepiece's
  C++ thread pool aborts the process ('terminate called without an active exception')."""
  for reader in list(_LIVE_READERS):
    reader.close()


class _Reader:
  """Background thread: tokenized documents of one shard, in order, from (epoch, location).

  Reading and sentencepiece (which runs in C++ on several threads) overlap with blank
  infilling on the main thread. Stops on `close()`; errors are re-raised in the consumer.
  """

  _END = object()

  def __init__(self, cfg, tok, split, seed, process_index, process_count, epoch, loc):
    self._args = (cfg, tok, split, seed, process_index, process_count)
    self._queue = queue.Queue(maxsize=max(2, cfg.prefetch))
    self._stop = threading.Event()
    self._started = False
    self._thread = threading.Thread(target=self._run, args=(epoch, loc), daemon=True)
    self._thread.start()
    _LIVE_READERS.add(self)

  def _put(self, item) -> bool:
    return put_unless_stopped(self._queue, item, self._stop)

  def _epoch_pieces(self, epoch, loc):
    """`streams.Piece`s of one epoch from location `loc` (None: the epoch's start)."""
    cfg, _, split, seed, pi, pc = self._args
    permute = split == 'train' and cfg.shuffle_buffer > 1
    window = int(cfg.shuffle_buffer) if cfg.shuffle_buffer > 1 else int(cfg.read_batch_documents)
    common = dict(permute=permute, seed=seed, epoch=epoch, loc=loc,
                  size=int(cfg.read_batch_documents))
    docs = sources.in_memory_documents(cfg, split, pi, pc)
    if docs is not None:  # the embedded corpus: straight from memory, no tf.data
      return streams.memory_stream(docs, **common)
    if cfg.source == 'files':
      return streams.file_stream(cfg, split, shard=pi, num_shards=pc, window=window, **common)
    if cfg.source == 'tfds':
      return streams.tfds_stream(cfg, split, shard=pi, num_shards=pc, window=window, **common)
    raise DataSourceError(f"cfg.source must be 'default', 'files' or 'tfds', got {cfg.source!r}")

  def _first_small(self, pieces):
    """The first piece split so that the first batch need not wait for a full read."""
    for piece in pieces:
      if not self._started and len(piece.docs) > _FIRST_READ_DOCUMENTS:
        n = _FIRST_READ_DOCUMENTS
        yield streams.Piece(piece.docs[:n], piece.locs[:n], piece.locs[n])
        piece = streams.Piece(piece.docs[n:], piece.locs[n:], piece.end)
      self._started = True
      yield piece

  def _tokenize(self, epoch, piece) -> _Chunk:
    """One sentencepiece call for a piece of documents, packed as `[CLS] doc [eos]` ..."""
    tok = self._args[1]
    texts, locs, nexts, skipped = [], [], [], collections.Counter()
    following = list(piece.locs[1:]) + [piece.end]
    for raw, loc, after in zip(piece.docs, piece.locs, following):
      if isinstance(raw, bytes):
        try:
          raw = raw.decode('utf-8')
        except UnicodeDecodeError:
          skipped['invalid_utf8'] += 1
          continue
      texts.append(raw)
      locs.append(loc)
      nexts.append(after)
    cls = np.array([tok.special_ids['CLS']], np.int32)
    eos = np.array([tok.special_ids['eos']], np.int32)
    pieces, keep, lengths = [], [], []
    for loc, after, encoded in zip(locs, nexts, tok.encode_batch_numpy(texts)):
      if not encoded.size:
        skipped['empty'] += 1
        continue
      pieces += (cls, encoded, eos)
      keep.append((loc, after))
      lengths.append(encoded.size + 2)
    flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    return _Chunk(epoch, keep, lengths, flat, skipped)

  def _run(self, epoch, loc):
    cfg, _, split, *_ = self._args
    try:
      while not self._stop.is_set():
        tokens_in_epoch = 0
        for piece in self._first_small(self._epoch_pieces(epoch, loc)):
          chunk = self._tokenize(epoch, piece)
          tokens_in_epoch += chunk.tokens.shape[0]
          if not self._put(chunk):
            return
        if split != 'train':
          self._put(self._END)
          return
        if tokens_in_epoch == 0 and loc is None:
          raise sources.DataSourceError(
              f'the train split of this shard has no usable documents (source={cfg.source!r}); '
              'check the corpus, cfg.eval_holdout_fraction and the number of processes')
        epoch, loc = epoch + 1, None
    except Exception as e:  # handed to the consumer, raised there
      self._put(e)

  def get(self):
    """Next `_Chunk`, or None at the end of a finite split."""
    item = self._queue.get()
    if item is self._END:
      return None
    if isinstance(item, Exception):
      raise item
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=10)


class BatchIterator:
  """Yields dicts of numpy `[per_host_batch, seq_length]` arrays; see the module docstring."""

  def __init__(self, cfg, tok, *, split, seq_length, per_host_batch, seed, process_index,
               process_count, objective_batch_size=None, objective_interleave=1):
    if split not in ('train', 'eval'):
      raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if per_host_batch < 1:
      raise ValueError(f'per_host_batch must be >= 1, got {per_host_batch}')
    self.cfg, self.tok, self.split = cfg, tok, split
    self.seq_length, self.batch_size = int(seq_length), int(per_host_batch)
    # Raw tokens a sample may take: `seq_length` ('fit': Part A + Part B fill the row), or the
    # original's `raw_length` ('raw': the sample grows to n + 2k inside the longer row).
    mode = cfg.get('length_mode', 'fit')
    if mode not in ('fit', 'raw'):
      raise DataSourceError(f"config.data.length_mode must be 'fit' or 'raw', got {mode!r}")
    self.single_span_prob = float(cfg.get('single_span_prob', 0.0))
    self.short_seq_prob = float(cfg.get('short_seq_prob', 0.0))
    self.random_position = bool(cfg.get('random_position', False))
    self.window_length = self.seq_length
    if mode == 'raw':
      raw = int(cfg.raw_length)
      if not 8 <= raw < self.seq_length:
        raise DataSourceError(f'length_mode=raw needs 8 <= raw_length ({raw}) < seq_length '
                              f'({self.seq_length}): the row must hold the raw tokens plus 2 per '
                              'span (e.g. raw_length 512 in rows of 640)')
      self.window_length = raw
    # Samples that share one objective draw (the original: one collate call = one data-parallel
    # micro-batch); None = the whole host batch. With `objective_interleave` = A micro-batches
    # per step, a group is every A-th row of a block of size * A rows (how the train step splits
    # a device's rows into accumulation micro-batches).
    self.objective_batch_size = int(objective_batch_size or per_host_batch)
    self.objective_interleave = int(objective_interleave)
    if self.objective_batch_size < 1 or self.objective_interleave < 1:
      raise DataSourceError(f'objective_batch_size and objective_interleave must be >= 1, got '
                            f'{objective_batch_size}, {objective_interleave}')
    self.seed, self.process_index, self.process_count = (int(seed), int(process_index),
                                                          int(process_count))
    try:
      self.bi = blank_infilling.BlankInfilling(
          tokenizer_lib.with_blank_fallbacks(tok.special_ids), seq_length,
          sentence_end_ids=tok.sentence_end_ids, **{k: cfg[k] for k in _KNOBS})
    except ValueError as e:  # a knob that cannot work: one line for the trainer, no traceback
      raise DataSourceError(f'config.data: {e}') from None
    self.stats = collections.Counter()
    self._pad_tokens = 0
    self._total_tokens = 0
    self._reader = None
    self._reset(step=0, epoch=0, loc=None, offset=0)

  # -- stream --------------------------------------------------------------------------------
  def _reset(self, step, epoch, loc, offset):
    if self._reader is not None:
      self._reader.close()
    self._step = step
    self._buf = np.zeros(0, np.int32)
    self._pos = 0
    self._segs = collections.deque()  # [epoch, loc, length, next loc] per document in the buffer
    self._offset = 0  # tokens of segs[0] already consumed
    self._exhausted = False
    self._next_loc = (epoch, loc)
    self._reader = _Reader(self.cfg, self.tok, self.split, self.seed, self.process_index,
                           self.process_count, epoch, loc)
    self._skip_first = offset

  def _refill(self, need: int):
    while not self._exhausted and self._buf.shape[0] - self._pos < need:
      chunk = self._reader.get()
      if chunk is None:
        self._exhausted = True
        break
      self.stats.update(chunk.skipped)
      tokens = chunk.tokens
      for (loc, after), length in zip(chunk.doc_locs, chunk.lengths):
        self._segs.append([chunk.epoch, loc, length, after])
      if self._skip_first:  # resuming inside a document
        self._consume_segs(self._skip_first)
        tokens = tokens[self._skip_first:]
        self._skip_first = 0
      self._buf = np.concatenate([self._buf[self._pos:], tokens])
      self._pos = 0

  def _consume_segs(self, count: int):
    while count > 0:
      seg = self._segs[0]
      left = seg[2] - self._offset
      if count >= left:
        count -= left
        self._segs.popleft()
        self._offset = 0
        self._next_loc = (seg[0], seg[3])
      else:
        self._offset += count
        count = 0

  def _short_window(self, head, target: int):
    """The original's short_seq_prob pieces: `target` + 1 tokens, ending at the last sentence end
    or eos when that keeps at least half of them."""
    head = head[:target + 1]
    ends = np.flatnonzero(self.bi.is_sentence_end(head[1:])
                          | (head[1:] == self.tok.special_ids['eos']))
    if ends.size and ends[-1] + 1 >= target // 2:
      head = head[:ends[-1] + 2]
    return head

  def _next_plan(self, rng, objective, draws, b, short_target=0):
    """Plans the next sample from the stream head and consumes the tokens it uses (None at the end).

    `short_target` > 0: a short piece of about that many tokens (see `_short_window`)."""
    S = self.window_length
    self._refill(S)
    avail = self._buf.shape[0] - self._pos
    if avail == 0:
      return None
    head = self._buf[self._pos:self._pos + S]
    cls_id = self.tok.special_ids['CLS']
    extra = 0
    if head[0] != cls_id:  # starts inside a document: give it its own [CLS]
      head = np.concatenate([[cls_id], head[:S - 1]]).astype(np.int32)
      extra = 1
    if short_target:
      head = self._short_window(head, short_target)
    plan = self.bi.plan(head, rng, objective, draws, b)
    used = plan.tokens.shape[0] - extra
    self._pos += used
    self._consume_segs(used)
    return plan

  # -- iteration ------------------------------------------------------------------------------
  def __iter__(self):
    return self

  def __next__(self) -> dict:
    S, B = self.seq_length, self.batch_size
    split_id = 0 if self.split == 'train' else 1
    rng = np.random.default_rng([self.seed, self.process_index, split_id, self._step])
    plans, objectives, shorts = [], [], []
    size, interleave = self.objective_batch_size, self.objective_interleave
    groups = {}  # group -> (objective, draws, short target): one draw per micro-batch, in row order
    for b in range(B):
      group = (b // (size * interleave)) * interleave + b % interleave
      if group not in groups:
        # The original's order: short pieces (short_seq_prob), then one-span token batches
        # (single_span_prob), then the objective.
        short = 0
        if self.short_seq_prob > 0 and rng.random() < self.short_seq_prob:
          short = int(rng.integers(32, max(33, self.window_length - 1)))
        single = self.single_span_prob > 0 and rng.random() < self.single_span_prob
        objective = 'token' if single else self.bi.choose_objective(rng)
        groups[group] = (objective, self.bi.draw(rng, objective, size, single_span=single), short)
      objective, draws, short = groups[group]
      plan = self._next_plan(rng, objective, draws, (b % (size * interleave)) // interleave, short)
      if plan is None:
        break
      plans.append(plan)
      objectives.append(objective)
      shorts.append(short)
    if not plans:
      raise StopIteration
    out = self.bi.layout(plans, batch_size=B)  # one vectorized layout for the whole batch
    token_rows = [r for r, o in enumerate(objectives) if o == 'token']
    self.bi.block_mask(out, token_rows, rng)
    self.bi.context_mask(out, token_rows, rng)
    if self.random_position:
      self.bi.random_positions(out, plans, rng, self.window_length)
    sep = out['sep']
    used = int(sep.sum() + out['loss_mask'].sum())
    self._pad_tokens += B * S - used
    self._total_tokens += B * S
    self._step += 1
    self.last_objectives = objectives  # per row of the batch just returned (rows past it: padding)
    self.last_short_targets = shorts  # per row: the short piece's target length, 0 = a full window
    return {
        'input_ids': out['input_ids'],
        'target_ids': out['target_ids'],
        'loss_mask': out['loss_mask'].astype(np.float32),
        'position_ids': np.stack([out['position_ids'], out['block_position_ids']], axis=1),
        'sep': sep,
    }

  @property
  def padding_fraction(self) -> float:
    """Fraction of batch slots that are padding, over all batches so far."""
    return self._pad_tokens / self._total_tokens if self._total_tokens else 0.0

  # -- state ----------------------------------------------------------------------------------
  def _identity(self):
    return {'split': self.split, 'seed': self.seed, 'process_index': self.process_index,
            'process_count': self.process_count, 'seq_length': self.seq_length,
            'per_host_batch': self.batch_size}

  def get_state(self) -> dict:
    """Small JSON-serializable state: where the stream stands and the step."""
    if self._segs:
      epoch, loc, *_ = self._segs[0]
      offset = self._offset
    else:
      (epoch, loc), offset = self._next_loc, 0
    return {'version': _STATE_VERSION, **self._identity(), 'step': self._step,
            'epoch': int(epoch), 'loc': None if loc is None else [int(x) for x in loc],
            'offset': int(offset) + self._skip_first,
            'exhausted': bool(self._exhausted and not self._segs),
            'pad_tokens': self._pad_tokens, 'total_tokens': self._total_tokens,
            'stats': dict(self.stats)}

  def set_state(self, state: dict):
    """Continues from `state`; afterwards yields exactly the batches the original would have."""
    mismatch = {k: (state.get(k), v) for k, v in self._identity().items() if state.get(k) != v}
    if state.get('version') != _STATE_VERSION or mismatch:
      raise ValueError(f'iterator state does not belong to this iterator (saved, current): '
                       f'{mismatch or state.get("version")}; build the iterator with the same '
                       'split, seed, process index/count, seq_length and batch size')
    loc = None if state['loc'] is None else tuple(state['loc'])
    self._reset(step=state['step'], epoch=state['epoch'], loc=loc, offset=state['offset'])
    if state.get('exhausted'):
      self._reader.close()
      self._exhausted = True
    self._pad_tokens, self._total_tokens = state['pad_tokens'], state['total_tokens']
    self.stats = collections.Counter(state.get('stats', {}))

  def close(self):
    """Stops the background reader thread."""
    self._reader.close()

  def __del__(self):
    try:
      self._reader.close()
    except Exception:
      pass


def make_iterator(cfg, tok, *, split='train', seq_length, per_host_batch, seed=0,
                  process_index=0, process_count=1, objective_batch_size=None,
                  objective_interleave=1) -> BatchIterator:
  """The training loop's data: infinite for 'train' (epochs reshuffled), finite for 'eval'.

  `objective_batch_size`: samples per objective draw (None: the whole host batch);
  `objective_interleave`: accumulation micro-batches per step (see `BatchIterator`).
  """
  return BatchIterator(cfg, tok, split=split, seq_length=seq_length,
                       per_host_batch=per_host_batch, seed=seed, process_index=process_index,
                       process_count=process_count, objective_batch_size=objective_batch_size,
                       objective_interleave=objective_interleave)
