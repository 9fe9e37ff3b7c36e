"""source='tfds' resumes by seeking (TFDS split slicing) to the saved window: the batches after
`set_state` equal the uninterrupted iterator's. The dataset is a tiny one built here, offline."""

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from input_pipeline import config as config_lib, pipeline, sources  # noqa: E402
from input_pipeline import tokenizer as tokenizer_lib  # noqa: E402


class GlmTinyText(tfds.core.GeneratorBasedBuilder):
  """330 KJV chapter openings, 'train' and 'validation'."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
        {"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 300),
            "validation": self._generate_examples(300, 330)}

  def _generate_examples(self, lo, hi):
    chapters = sources.kjv_chapters()
    for i in range(lo, hi):
      yield i, {"text": f"doc{i} " + chapters[i][:600]}


@pytest.mark.slow
def test_tfds_shard_resumes_inside_windows_to_the_same_batches(tmp_path):
  GlmTinyText(data_dir=str(tmp_path / "tfds")).download_and_prepare()
  cfg = config_lib.default_data_config()
  cfg.source, cfg.tfds_name, cfg.tfds_data_dir = "tfds", "glm_tiny_text", str(tmp_path / "tfds")
  cfg.shuffle_buffer, cfg.read_batch_documents, cfg.vocab_size = 16, 8, 600
  tok = tokenizer_lib.load_or_train(cfg, str(tmp_path / "tok"))

  def make():
    return pipeline.make_iterator(cfg, tok, split="train", seq_length=256, per_host_batch=4,
                                  seed=0, process_index=1, process_count=2)
  it, states, batches = make(), [], []
  for _ in range(25):
    states.append(json.loads(json.dumps(it.get_state())))
    batches.append(next(it))
  assert len({tuple(s["loc"] or ()) for s in states}) > 10
  for start in (3, 17, 24):
    restored = make()
    restored.set_state(states[start])
    got = next(restored)
    assert all(np.array_equal(batches[start][k], got[k]) for k in got), start
  assert sum(1 for _ in pipeline.make_iterator(cfg, tok, split="eval", seq_length=256,
                                               per_host_batch=4, seed=0)) > 0
