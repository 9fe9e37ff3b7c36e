"""Scoring rows in the original GLM layout: `[CLS] text_a text_b [eos] [sop] answer...`
(numpy-free lists).

The layout is the one of THUDM/GLM `tasks/data_utils.build_input_from_ids` (add_cls, no [SEP],
add_piece): Part A is `[CLS] text_a text_b` (+ `[eos]` unless `add_eos=False`) at positions
0, 1, ... with block position 0; Part B is `[sop]` at the position of the LAST mask token (block
position 1) followed by the answer's tokens but the last, at the same position with block
positions 2, 3, ...; the targets of Part B are the answer's tokens. With `answer=None` Part B is
`[sop]` alone with one (dummy) target: the single-token cloze row.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from glm_jax import special_ids as special_ids_lib
from glm_jax.errors import EvaluationError


REQUIRED_SPECIAL_KEYS = ("eos", "CLS", "MASK", "sop", "eop")


def check_special_ids(special_ids: Mapping[str, int], extra: Sequence[str] = ()) -> dict[str, int]:
  """The ids the layouts need (and `extra`), as ints; one clear error when some are missing."""
  keys = tuple(REQUIRED_SPECIAL_KEYS) + tuple(k for k in extra if k not in REQUIRED_SPECIAL_KEYS)
  return special_ids_lib.require(special_ids, keys, EvaluationError)


def as_id_list(ids, what: str) -> list[int]:
  """A sequence of token ids (list, tuple, 1-D array) -> list of ints, or a clear error."""
  if ids is None:
    raise EvaluationError(f"{what} is None; pass a list of token ids.")
  try:
    out = [int(t) for t in (ids.tolist() if hasattr(ids, "tolist") else ids)]
  except (TypeError, ValueError) as e:
    raise EvaluationError(f"{what} must be a flat list of integer token ids, "
                          f"got {ids!r:.80}.") from e
  return out


@dataclasses.dataclass(frozen=True)
class Row:
  """One model input: ids, 2D positions, the Part-A length and the scored targets."""
  ids: tuple[int, ...]
  positions: tuple[int, ...]
  block_positions: tuple[int, ...]
  sep: int
  targets: tuple[int, ...]      # 0 where not scored
  loss_mask: tuple[int, ...]    # 1 where scored

  def __len__(self) -> int:
    return len(self.ids)

  @property
  def sop_index(self) -> int:
    """The slot of `[sop]` (= sep): the single-token cloze reads its logits there."""
    return self.sep


def build_row(text_a: Sequence[int], text_b: Sequence[int] | None, answer: Sequence[int] | None, *,
              special: Mapping[str, int], mask_id: int, max_length: int,
              add_eos: bool = True) -> Row:
  """The row of `build_input_from_ids(text_a, text_b, answer, max_length, add_cls=True,
  add_sep=False, add_piece=True, add_eos=add_eos, mask_id=mask_id)`, without padding.

  Why `max_length`: like the original, Part A longer than `max_length - 1` is cut to
  `max_length - 1` tokens (callers truncate their own way before; this is the last guard).
  """
  part_a = [special["CLS"]] + list(text_a) + (list(text_b) if text_b is not None else [])
  if len(part_a) >= max_length - (1 if add_eos else 0):
    part_a = part_a[:max_length - 1]
  if add_eos:
    part_a.append(special["eos"])
  if mask_id not in part_a:
    raise EvaluationError(
        f"The context has no mask token (id {mask_id}) to fill; put a [MASK] where the answer "
        "goes (it may have been cut off by truncation: shorten the text or raise seq_length).")
  sep = len(part_a)
  mask_position = sep - 1 - part_a[::-1].index(mask_id)
  ids = part_a + [special["sop"]]
  positions = list(range(sep)) + [mask_position]
  block = [0] * sep + [1]
  targets, loss = [0] * sep, [0] * sep
  if answer is None:
    targets.append(0)
    loss.append(1)
  else:
    answer = list(answer)
    ids += answer[:-1]
    positions += [mask_position] * max(len(answer) - 1, 0)
    block += list(range(2, len(answer) + 1))
    targets += answer
    loss += [1] * len(answer)
    if not answer:  # nothing to predict: the [sop] slot carries no target
      targets.append(0)
      loss.append(0)
  return Row(tuple(ids), tuple(positions), tuple(block), sep, tuple(targets), tuple(loss))
