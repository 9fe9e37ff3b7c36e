"""Synthetic token windows shared by the blank-infilling reference tests and the script that ran
the original `ConstructBlockStrategy` on them (see tests/data/README.md).

Ids: eos 0, [CLS] 1, [MASK] 2, sop 3, eop 4, [gMASK] 5, [sMASK] 6, [dBLOCK] 7; sentence ends 8..12
(the tokens `.`, and the Chinese `。`, `！`, `？`, `…`); words 20..99.
"""

import numpy as np

IDS = dict(eos=0, CLS=1, MASK=2, sop=3, eop=4, gMASK=5, sMASK=6, dBLOCK=7)
SENTENCE_END_IDS = (8, 9, 10, 11, 12)


def document(rng: np.random.Generator) -> np.ndarray:
  """Words with a sentence end after ~1 in 9; a third of the documents end mid-sentence."""
  length = int(rng.integers(1, 120))
  words = rng.integers(20, 100, length)
  ends = rng.random(length) < 0.11
  words[ends] = rng.choice(SENTENCE_END_IDS, int(ends.sum()))
  if rng.random() < 0.66:
    words[-1] = rng.choice(SENTENCE_END_IDS)
  return words


def window(seed: int, max_length: int = 200) -> np.ndarray:
  """`[CLS] doc [eos] [CLS] doc [eos] ...` cut to a random length (3 .. max_length)."""
  rng = np.random.default_rng([7, seed])
  pieces, total = [], 0
  target = int(rng.integers(3, max_length + 1))
  while total < target:
    doc = np.concatenate([[IDS['CLS']], document(rng), [IDS['eos']]])
    pieces.append(doc)
    total += doc.shape[0]
  return np.concatenate(pieces)[:target].astype(np.int64)
