"""Sources: the embedded corpus, text files, TFDS names; splits and shards are disjoint."""

import pytest

from input_pipeline import config as config_lib
from input_pipeline import sources


def _texts(ds):
  return [t.decode('utf-8', 'replace') for t in ds.as_numpy_iterator()]


def test_default_corpus_is_the_kjv_and_available_offline():
  chapters = sources.kjv_chapters()
  assert len(chapters) == 1189
  assert chapters[0].startswith('In the beginning God created the heaven')
  assert not any(c[:1].isdigit() for c in chapters)  # verse numbers removed


def test_default_corpus_splits_are_disjoint_and_cover_everything():
  cfg = config_lib.default_data_config()
  train = _texts(sources.documents(cfg, 'train'))
  held = _texts(sources.documents(cfg, 'eval'))
  assert 0 < len(held) < 0.05 * len(train)
  assert not set(train) & set(held)
  assert len(train) + len(held) == 1189


@pytest.mark.parametrize('n_files', [1, 4])
def test_process_shards_are_disjoint_and_complete(tmp_path, n_files):
  lines = [f'document number {i} says hello.' for i in range(100)]
  for f in range(n_files):
    (tmp_path / f'{f}.txt').write_text('\n'.join(lines[f::n_files]) + '\n')
  cfg = config_lib.default_data_config()
  cfg.source, cfg.files, cfg.eval_holdout_fraction = 'files', str(tmp_path / '*.txt'), 0.0
  a = _texts(sources.documents(cfg, 'train', 0, 2))
  b = _texts(sources.documents(cfg, 'train', 1, 2))
  assert a and b and not set(a) & set(b)
  assert sorted(a + b) == sorted(lines)


def test_empty_files_and_blank_lines_are_skipped(tmp_path):
  (tmp_path / 'empty.txt').write_text('')
  (tmp_path / 'some.txt').write_text('one.\n\n   \ntwo.\n')
  cfg = config_lib.default_data_config()
  cfg.source, cfg.files, cfg.eval_holdout_fraction = 'files', str(tmp_path / '*.txt'), 0.0
  assert _texts(sources.documents(cfg, 'train')) == ['one.', 'two.']


def test_glob_matching_nothing_is_a_clear_error(tmp_path):
  cfg = config_lib.default_data_config()
  cfg.source, cfg.files = 'files', str(tmp_path / '*.txt')
  with pytest.raises(sources.DataSourceError, match='no files match'):
    sources.documents(cfg, 'train')


def test_unknown_tfds_name_is_a_clear_error(tmp_path):
  cfg = config_lib.default_data_config()
  cfg.source, cfg.tfds_name, cfg.tfds_data_dir = 'tfds', 'no_such_dataset_xyz', str(tmp_path)
  with pytest.raises(sources.DataSourceError, match='unknown TFDS dataset'):
    sources.documents(cfg, 'train')


def test_unknown_source_and_split_are_clear_errors():
  cfg = config_lib.default_data_config()
  cfg.source = 'web'
  with pytest.raises(sources.DataSourceError, match='cfg.source'):
    sources.documents(cfg, 'train')
  cfg.source = 'default'
  with pytest.raises(sources.DataSourceError, match='split'):
    sources.documents(cfg, 'test')


def test_in_memory_documents_match_the_tf_data_source():
  cfg = config_lib.default_data_config()
  for split in ('train', 'eval'):
    for index in (0, 1):
      want = _texts(sources.documents(cfg, split, index, 2))
      assert sources.in_memory_documents(cfg, split, index, 2) == want
    assert not set(sources.in_memory_documents(cfg, split, 0, 2)) & set(
        sources.in_memory_documents(cfg, split, 1, 2))
  cfg.source = 'files'
  assert sources.in_memory_documents(cfg, 'train') is None  # streamed sources go through tf.data
