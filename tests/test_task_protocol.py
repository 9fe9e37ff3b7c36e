"""The finetuning task protocol (glm_jax/tasks/protocol.py): SuperGLUE's cloze task and the seq2seq
task implement it, and the finetune loop reads nothing of a task that the protocol lacks."""

import ast
import pathlib
import typing

from glm_jax import finetune
from glm_jax.tasks import protocol
from glm_jax.tasks.seq2seq import task as seq2seq_task
from glm_jax.tasks.superglue import task as superglue_task
from tests import test_finetune
from tests import test_finetune_seq2seq

FINETUNE = pathlib.Path(finetune.__file__)


def _members(cls) -> set[str]:
  """The protocol's attributes and methods (what `isinstance` checks)."""
  return set(typing.get_type_hints(cls)) | {
      n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def test_cloze_and_seq2seq_tasks_satisfy_the_protocol(tmp_path):
  (tmp_path / "boolq").mkdir()
  (tmp_path / "copy").mkdir()
  test_finetune.write_synthetic_boolq(tmp_path / "boolq", sizes=(8, 4, 2))
  test_finetune_seq2seq.write_copy_task(tmp_path / "copy", sizes=(8, 4, 2))
  for config, cls in ((test_finetune.tiny_config(tmp_path / "boolq"), superglue_task.ClozeTask),
                      (test_finetune_seq2seq.tiny_config(tmp_path / "copy"),
                       seq2seq_task.Seq2SeqTask)):
    task = finetune.build_task(config, finetune.load_task_tokenizer(config))
    assert type(task) is cls and isinstance(task, protocol.Task)
    assert set(task.sizes) == set(protocol.SPLITS) and task.sizes["train"] == 8
    assert task.tokens_per_example > 0 and task.main_metric and task.name
    batches = task.train_data()
    assert isinstance(batches, protocol.TrainBatches) and batches.steps_per_epoch >= 1
    batch = next(batches)
    assert set(batch) == set(task.objective.batch_ndims)


def _task_attributes(tree) -> set[str]:
  """Every `task.X` that a module reads."""
  return {node.attr for node in ast.walk(tree)
          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id == "task"}


def test_the_finetune_loop_reads_only_protocol_members_of_a_task():
  tree = ast.parse(FINETUNE.read_text())
  used = _task_attributes(tree)
  assert used and used <= _members(protocol.Task), used - _members(protocol.Task)
  probes = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", "") in ("hasattr", "getattr")
            and any(getattr(a, "id", "") == "task" for a in node.args)]
  assert not probes   # no duck typing: what the loop needs is in the protocol
