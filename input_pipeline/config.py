"""Every knob of the input pipeline, one line each, with the released GLM defaults."""

import ml_collections


def default_data_config() -> ml_collections.ConfigDict:
  """The data config; size configs override a few lines of it."""
  c = ml_collections.ConfigDict()

  # --- Where the text comes from -------------------------------------------------------------
  c.source = 'default'                  # 'default' (embedded KJV Bible) | 'tfds' | 'files'
  c.tfds_name = ''                      # TFDS dataset name, e.g. 'wikipedia/20230601.en'
                                        # (source='tfds')
  c.tfds_data_dir = ''                  # TFDS data_dir ('' = TFDS default ~/tensorflow_datasets)
  c.tfds_train_split = 'train'          # TFDS split used for training
  c.tfds_eval_split = 'validation'      # TFDS split used for eval; '' = hold out from
                                        # the train split
  c.text_key = 'text'                   # feature holding the document text (source='tfds')
  c.files = ''                          # glob of UTF-8 text files, one document per line
                                        # (source='files')
  c.eval_holdout_fraction = 0.01        # fraction of documents held out for eval
                                        # (default/files, or tfds without eval split)

  # --- Tokenizer ----------------------------------------------------------------------------
  c.vocab_size = 4000                   # sentencepiece vocab size to train
                                        # (command tokens included)
  c.tokenizer_model_path = ''           # an existing .model to load instead of training
                                        # ('' = train / reuse cache)
  c.tokenizer_cache_dir = ''            # where trained models are cached
                                        # ('' = ~/.cache/glm_jax/tokenizers)
  c.tokenizer_model_type = 'unigram'    # sentencepiece model type: 'unigram' | 'bpe'
  c.tokenizer_train_sentences = 200_000  # max sentences sampled for tokenizer training
                                         # (keeps it < 1 min)
  c.tokenizer_train_max_chars = 50_000_000  # max characters of corpus text read for
                                            # tokenizer training
  c.tokenizer_threads = 2               # threads used by sentencepiece
                                        # (training and batched encoding)
  c.tokenizer_kind = ''                  # released GLM tokenizer: bert-uncased | bert-cased |
                                         # gpt2 | roberta | chinese-sp ('' = our sentencepiece)
  c.tokenizer_path = ''                  # directory with the released tokenizer's files
                                         # (vocab.txt / vocab.json + merges.txt /
                                         # cog-pretrain.model)
  c.fix_command_token = False            # chinese-sp: GLM-Large-Chinese's command-token ids
                                         # (GLM-10B-Chinese: False)

  # --- Blank infilling (GLM objective; released GLM-Base/Large mix) --------------------------
  c.bert_prob = 1.0                     # P(token-level [MASK] objective) per micro-batch
  c.gap_sentence_prob = 0.0             # P(sentence-level objective) per micro-batch;
                                        # rest = document objective
  c.mask_ratio = 0.15                   # fraction of tokens masked by the token objective
  c.gap_sentence_ratio = 0.15           # fraction of tokens covered by the sentence objective
  c.poisson_lambda = 3.0                # token-objective span length ~ Poisson(lambda) ...
  c.max_span_length = 40                # ... restricted to 1 .. max_span_length - 1
                                        # (original: 40 -> 1..39)
  c.gpt_min_ratio = 0.5                 # document objective: span length >= gpt_min_ratio * n
  c.gpt_infill_prob = 0.5               # document objective: P(suffix form src [gMASK] [sop] tgt)
  c.shuffle_spans = True                # shuffle the order of spans in Part B
  c.task_mask = False                   # True: the tokenizer has [sMASK]/[gMASK] and sentence /
                                        # document blanks use them; False: both [MASK]
                                        # (original --task-mask, off by default)
  c.objective_batch_size = 0            # samples that share one objective draw (original: one per
                                        # data-parallel micro-batch); 0 = the per-device micro-batch
  c.block_mask_prob = 0.0               # token objective: P(a Part-B input token, not sop, becomes
                                        # [dBLOCK]); needs a tokenizer with [dBLOCK]
  c.context_mask_ratio = 0.0            # token objective: this fraction of n, Part-A tokens at the
                                        # edges (3) of text runs between blanks, becomes [dBLOCK]
                                        # (original --context-mask-ratio)
  c.single_span_prob = 0.0              # P(a micro-batch is token-objective with one span per
                                        # sample) (original --single-span-prob)
  c.short_seq_prob = 0.0                # P(a micro-batch takes short pieces: 32..seq_length-2
                                        # tokens, sentence-aligned, one per row)
                                        # (original --short-seq-prob)
  c.random_position = False             # shift each sample's positions by a random bias so all
                                        # position rows train (original --random-position)
  c.length_mode = 'fit'                 # 'fit': raw text shrinks so Part A + Part B fill
                                        # seq_length; 'raw': the original's, raw_length raw tokens
                                        # grow to n + 2k
  c.raw_length = 512                    # length_mode='raw': raw tokens per sample (the original's
                                        # --seq-length); seq_length is the row that holds n + 2k
  c.sentence_cut_slack = 0.05           # packing cuts at a sentence end within this fraction of
                                        # seq_length, else hard cut

  # --- Reading and ordering -----------------------------------------------------------------
  c.shuffle_buffer = 1024               # document shuffle buffer (tf.data), train split only
  c.read_batch_documents = 256          # documents tokenized per sentencepiece call
  c.prefetch = 4                        # tf.data prefetch of raw-text batches
  return c
