"""The special token ids a layout needs ([CLS], [MASK], [sop], ...): one check for generation and
scoring, so a tokenizer that lacks one fails the same way in every command."""

from __future__ import annotations

from typing import Mapping, Sequence

_TASK_MASKS = ("sMASK", "gMASK")


def require(special_ids: Mapping[str, int], keys: Sequence[str], error: type[Exception],
            fill_from: Mapping[str, str] | None = None) -> dict[str, int]:
  """`keys` of `special_ids` as ints, or one `error` naming the missing ones.

  fill_from: a key absent from `special_ids` takes the id of another (e.g. a tokenizer without
    task masks uses [MASK] for [gMASK]).
  """
  if not isinstance(special_ids, Mapping):
    raise error(f"special_ids must be a mapping (a tokenizer's `special_ids`), got "
                f"{type(special_ids).__name__}.")
  special_ids = dict(special_ids)
  fill_from = fill_from or {}
  for key, source in fill_from.items():
    if source in special_ids:
      special_ids.setdefault(key, special_ids[source])
  missing = [k for k in keys if k not in special_ids]
  if missing:
    hint = ("; [gMASK] needs a tokenizer with task_mask"
            if any(k in _TASK_MASKS and k not in fill_from for k in missing) else "")
    raise error(f"special_ids lacks {missing}; pass the tokenizer's `special_ids` (it must hold "
                f"{list(keys)}{hint}).")
  return {k: int(special_ids[k]) for k in keys}
