"""A seq2seq task for the shared finetuning loop (`tasks.protocol.Task`): training rows in the
pretraining batch's keys with the original's label-smoothed loss on the target, dev ROUGE by the
original's beam search (rouge-1 picks the best checkpoint, as the original's finetune loop), and
test predictions one per line (`test.jsonl.hyps`, with the references in `.refs`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from glm_jax.decode import seq2seq_beams
from glm_jax.errors import FinetuneError
from glm_jax.modeling import sharding
from glm_jax.tasks import cloze_task
from glm_jax.tasks.seq2seq import data, rouge

BATCH_NDIMS = {"input_ids": 2, "target_ids": 2, "loss_mask": 2, "position_ids": 3, "sep": 1}


def smoothed_token_sums(logits, target_ids, loss_mask, label_smoothing: float):
  """`{loss_sum, correct_sum, tokens}` of the original's seq2seq loss: (1 - e) * cross-entropy +
  e * mean over the vocabulary of -log p (tasks/seq2seq/finetune.py), on loss_mask positions."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, target_ids[..., None], axis=-1)[..., 0]
  losses = nll
  if label_smoothing > 0:
    losses = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
  mask = loss_mask.astype(jnp.float32)
  correct = (jnp.argmax(logp, axis=-1) == target_ids).astype(jnp.float32)
  return {"loss_sum": jnp.sum(losses * mask), "correct_sum": jnp.sum(correct * mask),
          "tokens": jnp.sum(mask)}


def make_objective(label_smoothing: float, src_seq_length: int):
  """The train step's objective. Only the target part goes through the vocabulary projection
  (the cloze task's slot logits): the source has no loss."""
  from glm_jax.training.train_state import Objective  # the shared loop's type

  def sums(glm, params, batch, rng, deterministic):
    length = batch["input_ids"].shape[1]
    slots = jnp.broadcast_to(jnp.arange(src_seq_length, length, dtype=jnp.int32),
                             (batch["input_ids"].shape[0], 1, length - src_seq_length))
    view = {"ids": batch["input_ids"][:, None], "position_ids": batch["position_ids"][:, None],
            "sep": batch["sep"][:, None], "slots": slots}
    logits = cloze_task.slot_logits(glm, params, view, rng, deterministic)[:, 0]
    return smoothed_token_sums(logits, batch["target_ids"][:, src_seq_length:],
                               batch["loss_mask"][:, src_seq_length:], label_smoothing)

  return Objective(sums, lambda batch: jnp.sum(batch["loss_mask"].astype(jnp.float32)),
                   dict(BATCH_NDIMS))


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What differs between seq2seq tasks: name, output file, metric."""
  name: str
  submission_file: str = "test.jsonl.hyps"   # the original's output file name


def pack_rows(rows: dict, items: Sequence[int | None]) -> dict:
  """One host batch from row indices; None is a padding row (a copy of row 0 without loss)."""
  index = np.array([0 if i is None else i for i in items], np.int64)
  real = np.array([i is not None for i in items], np.float32)
  return {"input_ids": rows["tokens"][index], "target_ids": rows["targets"][index],
          "loss_mask": rows["loss_mask"][index] * real[:, None],
          "position_ids": rows["position_ids"][index], "sep": rows["sep"][index]}


class Seq2SeqTask:
  """Data, loss, decoding and ROUGE of one seq2seq task, built from the finetune config."""

  def __init__(self, config, tokenizer, *, train: Sequence[data.Example] = (),
               dev: Sequence[data.Example] = (), test: Sequence[data.Example] = ()):
    self.config, self.tokenizer = config, tokenizer
    self.info = TaskInfo(data.check_task(config.task))
    task_mask = bool(getattr(tokenizer, "task_mask", False)) if config.task_mask < 0 \
        else bool(config.task_mask)
    self.layout = data.make_layout(tokenizer, config.src_seq_length, config.tgt_seq_length,
                                   task_mask)
    self.train_examples, self.dev_examples, self.test_examples = list(train), list(dev), list(test)
    self.name, self.submission_file = self.info.name, self.info.submission_file
    self.sizes = {"train": len(self.train_examples), "dev": len(self.dev_examples),
                  "test": len(self.test_examples)}
    self.tokens_per_example = int(config.seq_length)   # one row: source + target
    self.stats = data.ReadStats()
    self.train_rows = (data.train_rows(self.info.name, self.train_examples, tokenizer,
                                       self.layout, self.stats) if self.train_examples else None)
    self.metric_dataset = rouge.metric_dataset(self.info.name, getattr(tokenizer, "kind", ""))

  @property
  def main_metric(self) -> str:
    """ROUGE-1 picks the best checkpoint, as the original does."""
    return "rouge-1"

  @property
  def objective(self):
    """The seq2seq loss (label-smoothed cross-entropy on the target part only)."""
    return make_objective(float(self.config.label_smoothing), int(self.config.src_seq_length))

  def train_data(self, mesh=None) -> cloze_task.EpochBatches:
    """Batches of row indices, reshuffled per epoch (the cloze task's resumable iterator)."""
    return cloze_task.EpochBatches(list(range(len(self.train_rows["sep"]))),
                                   self.config.global_batch_size, int(self.config.seed),
                                   functools.partial(pack_rows, self.train_rows), mesh)

  def decode(self, params, examples: Sequence[data.Example]) -> list[str]:
    """Beam-decodes each example (batches of eval_batch_size, the last one padded) to text."""
    cfg = self.config
    rows = data.eval_rows(self.info.name, examples, self.tokenizer, self.layout)
    size = max(int(cfg.eval_batch_size), 1)
    drop = {self.layout.eop_id, self.layout.pad_id}
    texts = []
    for start in range(0, len(examples), size):
      source = rows["source"][start:start + size]
      masks = rows["mask_position"][start:start + size]
      real = len(source)
      if real < size:  # one compiled shape for every batch
        source = np.concatenate([source, np.repeat(source[:1], size - real, 0)])
        masks = np.concatenate([masks, np.repeat(masks[:1], size - real, 0)])
      tokens, lengths, _ = seq2seq_beams.decode_seq2seq(
          cfg, params, source, masks, sop_id=self.layout.sop_id, eop_id=self.layout.eop_id,
          num_beams=int(cfg.num_beams), max_length=int(cfg.tgt_seq_length),
          length_penalty=float(cfg.length_penalty), min_length=int(cfg.min_tgt_length),
          no_repeat_ngram_size=int(cfg.no_repeat_ngram_size),
          vocab_limit=None)  # the original decodes over the whole (padded) vocabulary
      tokens, lengths = sharding.to_host(tokens), sharding.to_host(lengths)
      for i in range(real):
        ids = [int(t) for t in tokens[i, :lengths[i]] if int(t) not in drop]
        texts.append(self.tokenizer.decode(ids))
    return texts

  def evaluate(self, params, mesh=None) -> dict:
    """ROUGE-1/2/L F1 in percent (the paper's unit) of the dev set's decoded predictions."""
    del mesh
    predictions = self.decode(params, self.dev_examples)
    scores = rouge.rouge_scores(predictions, [ex.ref for ex in self.dev_examples],
                                self.metric_dataset)
    return {k: 100.0 * v for k, v in scores.items()}

  def predict(self, params, mesh=None) -> list[str]:
    """The test set's predictions, in order (the loop writes them one per line)."""
    del mesh
    return self.decode(params, self.test_examples)

  def output_files(self, predictions: Sequence[str]) -> dict[str, str]:
    """The original's outputs: `test.jsonl.hyps` (one prediction per line) and `.refs`."""
    def lines(texts):
      return "".join(" ".join(t.splitlines()) + "\n" for t in texts)
    return {self.info.submission_file: lines(predictions),
            "test.jsonl.refs": lines(ex.ref for ex in self.test_examples)}


def build(config, tokenizer, warn: Callable[[str], None]) -> Seq2SeqTask:
  """Reads the splits (test may be absent) and lays out the training rows; `warn`s of empty
  lines and of targets cut to tgt_seq_length."""
  splits = {}
  for split in ("train", "dev", "test"):
    test_file = "test.json" if config.task.lower() == "squad_generation" else "test.source"
    if (split == "test" and config.data_source == "files"
        and not (epath.Path(config.data_dir) / test_file).exists()):
      splits[split] = []
      continue
    splits[split], stats = data.load_examples(
        config.task, split, tokenizer, data_dir=config.data_dir, data_source=config.data_source)
    if stats.empty_sources or stats.empty_targets:
      warn(f"{config.task} {split}: {stats.empty_sources} empty source lines, "
           f"{stats.empty_targets} empty target lines (kept, as the original keeps them).")
  if not splits["train"]:
    raise FinetuneError(f"{config.data_dir}: the training set is empty.")
  task = Seq2SeqTask(config, tokenizer, train=splits["train"], dev=splits["dev"],
                     test=splits["test"])
  if task.stats.truncated_targets:
    warn(f"{config.task} train: {task.stats.truncated_targets} of {len(splits['train'])} targets "
         f"longer than tgt_seq_length={config.tgt_seq_length} were cut (the original's rule).")
  return task
