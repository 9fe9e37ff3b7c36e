"""The command tokens of each released GLM tokenizer: their texts and ids, in the original's order.

Each `*_commands` function gives `(commands, n)`: the command tokens of one kind and the vocabulary
size they leave (the next free id), exactly as the original's tokenizer classes number them.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from input_pipeline.errors import TokenizerError


@dataclasses.dataclass(frozen=True)
class CommandToken:
  """A special token of a released tokenizer: its key, its text and its id."""
  key: str            # key in `special_ids`
  text: str           # how it is written in text
  id: int
  lstrip: bool = False  # swallows the whitespace on its left (GPT-2, RoBERTa, Chinese masks)


def _require(pieces: Iterable[str], vocab, kind: str, file_name: str):
  missing = [p for p in pieces if p not in vocab]
  if missing:
    raise TokenizerError(f'{file_name} lacks {missing}, which the {kind!r} tokenizer needs as '
                         'command tokens; use the vocabulary file of the released model')


def _with_block_and_task(commands, n, task_mask, *, lstrip_task):
  """Appends sop/eop at n, n+1 and (task_mask) gMASK/sMASK after them; returns (commands, n)."""
  commands += [CommandToken('sop', '<|startofpiece|>', n),
               CommandToken('eop', '<|endofpiece|>', n + 1)]
  n += 2
  if task_mask:
    commands += [CommandToken('gMASK', '[gMASK]', n, lstrip_task),
                 CommandToken('sMASK', '[sMASK]', n + 1, lstrip_task)]
    n += 2
  return commands, n


def with_decoder_mask(commands, n, decoder_mask):
  """Appends [dBLOCK] at n when `decoder_mask` (the original's add_decoder_mask: last, after the
  block symbols and task masks, no whitespace stripping); returns (commands, n)."""
  if decoder_mask:
    return commands + [CommandToken('dBLOCK', '[dBLOCK]', n)], n + 1
  return commands, n


def bert_commands(vocab: dict, task_mask: bool, kind: str = 'bert-uncased', *,
                  decoder_mask: bool = False):
  """WordPiece: the vocabulary's own [PAD] [CLS] [MASK] [UNK] [SEP]; eos is [PAD]."""
  _require(('[PAD]', '[CLS]', '[MASK]', '[UNK]', '[SEP]'), vocab, kind, 'vocab.txt')
  commands = [CommandToken('pad', '[PAD]', vocab['[PAD]']),
              CommandToken('CLS', '[CLS]', vocab['[CLS]']),
              CommandToken('MASK', '[MASK]', vocab['[MASK]']),
              CommandToken('unk', '[UNK]', vocab['[UNK]']),
              CommandToken('SEP', '[SEP]', vocab['[SEP]']),
              CommandToken('eos', '[PAD]', vocab['[PAD]'])]
  return with_decoder_mask(
      *_with_block_and_task(commands, len(vocab), task_mask, lstrip_task=False), decoder_mask)


def gpt2_commands(encoder: dict, task_mask: bool, *, decoder_mask: bool = False):
  """GPT-2: eos/pad is <|endoftext|>; sop, eop, [CLS], [MASK], [SEP], [UNK] follow the
  vocabulary."""
  _require(('<|endoftext|>',), encoder, 'gpt2', 'vocab.json')
  eos, n = encoder['<|endoftext|>'], len(encoder)
  commands = [CommandToken('pad', '<|endoftext|>', eos), CommandToken('eos', '<|endoftext|>', eos),
              CommandToken('sop', '<|startofpiece|>', n),
              CommandToken('eop', '<|endofpiece|>', n + 1),
              CommandToken('CLS', '[CLS]', n + 2), CommandToken('MASK', '[MASK]', n + 3, True),
              CommandToken('SEP', '[SEP]', n + 4), CommandToken('unk', '[UNK]', n + 5)]
  n += 6
  if task_mask:
    commands += [CommandToken('gMASK', '[gMASK]', n, True),
                 CommandToken('sMASK', '[sMASK]', n + 1, True)]
    n += 2
  return with_decoder_mask(commands, n, decoder_mask)


def roberta_commands(encoder: dict, task_mask: bool, *, decoder_mask: bool = False):
  """RoBERTa: eos/pad/[SEP] are </s>, [CLS] is <s>, [MASK] is <mask>, [UNK] is <unk>."""
  _require(('<s>', '</s>', '<mask>', '<unk>'), encoder, 'roberta', 'vocab.json')
  end = encoder['</s>']
  commands = [CommandToken('pad', '<|endoftext|>', end), CommandToken('eos', '<|endoftext|>', end),
              CommandToken('SEP', '[SEP]', end), CommandToken('CLS', '[CLS]', encoder['<s>']),
              CommandToken('MASK', '[MASK]', encoder['<mask>'], True),
              CommandToken('unk', '[UNK]', encoder['<unk>'])]
  return with_decoder_mask(
      *_with_block_and_task(commands, len(encoder), task_mask, lstrip_task=True), decoder_mask)


def chinese_commands(num_pieces: int, task_mask: bool, fix_command_token: bool, *,
                     decoder_mask: bool = False):
  """cog-pretrain: eos, [SEP], [CLS], [MASK], [UNK] after the pieces; sop/eop skip one id.

  Without `fix_command_token` (GLM-10B-Chinese) [gMASK] shares eop's id, as in the original
  (and so does [dBLOCK] when there are no task masks); GLM-Large-Chinese was trained with the
  fix ([sMASK], [gMASK] after eop).
  """
  v = num_pieces
  commands = [CommandToken('pad', '<|endoftext|>', v), CommandToken('eos', '<|endoftext|>', v),
              CommandToken('SEP', '[SEP]', v + 1), CommandToken('CLS', '[CLS]', v + 2),
              CommandToken('MASK', '[MASK]', v + 3, True), CommandToken('unk', '[UNK]', v + 4)]
  n = v + 5
  commands += [CommandToken('sop', '<|startofpiece|>', n + 1),
               CommandToken('eop', '<|endofpiece|>', n + 2)]
  n += 3 if fix_command_token else 2
  if task_mask:
    order = (('sMASK', '[sMASK]'), ('gMASK', '[gMASK]')) if fix_command_token else \
            (('gMASK', '[gMASK]'), ('sMASK', '[sMASK]'))
    commands += [CommandToken(k, t, n + i, True) for i, (k, t) in enumerate(order)]
    n += 2
  return with_decoder_mask(commands, n, decoder_mask)
