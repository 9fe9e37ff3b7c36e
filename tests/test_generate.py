"""Blank filling: the cached loop against the original's procedure by full recomputation,
batching, sampling, beam search and input errors. Tiny random models (2 layers, hidden 64)."""

import numpy as np
import pytest
import jax

from glm_jax import convert, generate
from glm_jax.decode import sampling
from tests import recompute_decode, reference_glm

SPECIAL = {"eos": 1, "CLS": 2, "MASK": 3, "sMASK": 4, "gMASK": 5, "sop": 6, "eop": 7}
ENDS = (SPECIAL["eop"], SPECIAL["eos"])
BLANKS = (SPECIAL["MASK"], SPECIAL["sMASK"], SPECIAL["gMASK"])
HEADS = 4


def _random_model(seed=0, vocab=40, positions=97, eop_boost=2.0):
  """THUDM-named random weights (spread logits: weights N(0, 0.2)) and their Flax conversion.

  The eop row of the embedding is scaled up so that some blanks end before their budget, which
  the comparisons must then get right too.
  """
  rng = np.random.default_rng(seed)
  sd = reference_glm.random_state_dict(rng, num_layers=2, hidden=64, vocab=vocab,
                                       positions=positions)
  sd["word_embeddings.weight"][SPECIAL["eop"]] *= eop_boost
  cfg, params = convert.from_thudm(sd, HEADS)
  return sd, cfg, params


def original_greedy_fill(sd, prompt, max_new_tokens):
  """The original generate_samples.py procedure, plainly: the prompt with sep = len(prompt);
  per blank left to right, sop at (blank position, block 1), then each token at block 2, 3, ...;
  stop at eop/eos (not fed) or after max_new_tokens (the last one not fed). Full recomputation of
  the whole sequence every step with the independent numpy model; no cache, no padding."""
  ids, pos, block = list(prompt), list(range(len(prompt))), [0] * len(prompt)
  filled = []
  for blank in [i for i, t in enumerate(prompt) if t in BLANKS]:
    ids.append(SPECIAL["sop"])
    pos.append(blank)
    block.append(1)
    tokens = []
    while True:
      logits = reference_glm.glm_forward(
          sd, np.array([ids]), np.array([[pos, block]]), np.array([len(prompt)]), HEADS)
      nxt = int(np.argmax(logits[0, -1]))
      if nxt in ENDS:
        break
      tokens.append(nxt)
      if len(tokens) == max_new_tokens:
        break
      ids.append(nxt)
      pos.append(blank)
      block.append(block[-1] + 1)
    filled.append(tokens)
  return filled


def _prompt(rng, n_text, blanks, vocab=40, end_with_gmask=False):
  """[CLS] text with blank tokens at random places [eos] (or ... [gMASK])."""
  text = list(rng.integers(8, vocab, n_text))
  for b in blanks:
    text.insert(int(rng.integers(0, len(text) + 1)), b)
  return [SPECIAL["CLS"]] + text + ([SPECIAL["gMASK"]] if end_with_gmask else [SPECIAL["eos"]])


def _fill(cfg, params, prompts, **kw):
  return generate.fill_blanks(cfg, params, prompts, special_ids=SPECIAL, **kw)


@pytest.mark.slow
def test_cached_greedy_equals_the_original_procedure_by_full_recomputation():
  sd, cfg, params = _random_model(seed=1)
  rng = np.random.default_rng(11)
  prompts = [_prompt(rng, 9, [SPECIAL["MASK"]]),
             _prompt(rng, 20, [SPECIAL["MASK"], SPECIAL["sMASK"], SPECIAL["MASK"]]),
             _prompt(rng, 3, [SPECIAL["sMASK"], SPECIAL["MASK"]]),
             _prompt(rng, 30, [SPECIAL["MASK"]] * 4)]
  expected = [original_greedy_fill(sd, p, 6) for p in prompts]
  got = [_fill(cfg, params, p, max_new_tokens=6) for p in prompts]
  assert got == expected
  lengths = [len(t) for blanks in expected for t in blanks]
  assert min(lengths) < 6 and max(lengths) == 6, "need both early-ended and cut-off blanks"
  assert len({t for blanks in expected for b in blanks for t in b}) > 5, "degenerate choices"


@pytest.mark.slow
def test_batch_of_different_lengths_equals_one_prompt_at_a_time():
  _, cfg, params = _random_model(seed=2)
  rng = np.random.default_rng(12)
  prompts = [_prompt(rng, n, [SPECIAL["MASK"]] * k) for n, k in [(4, 1), (25, 3), (12, 2), (40, 1)]]
  batched = _fill(cfg, params, prompts, max_new_tokens=7)
  assert batched == [_fill(cfg, params, p, max_new_tokens=7) for p in prompts]


def test_cache_and_full_recompute_loops_agree_on_a_batch():
  _, cfg, params = _random_model(seed=3)
  rng = np.random.default_rng(13)
  prompts = [_prompt(rng, n, [SPECIAL["MASK"]] * k) for n, k in [(6, 2), (17, 1), (30, 3)]]
  cached = _fill(cfg, params, prompts, max_new_tokens=8)
  assert cached == recompute_decode.greedy_fill_blanks(cfg, params, prompts, special_ids=SPECIAL,
                                                       max_new_tokens=8)


def test_gmask_long_generation_equals_the_original_procedure():
  sd, cfg, params = _random_model(seed=4, eop_boost=1.0)
  rng = np.random.default_rng(14)
  prompt = _prompt(rng, 12, [], end_with_gmask=True)
  got = _fill(cfg, params, prompt, max_new_tokens=60)
  assert got == original_greedy_fill(sd, prompt, 60)
  assert len(got) == 1 and len(got[0]) > 30


def test_prompt_filling_the_position_table_is_accepted():
  sd, cfg, params = _random_model(seed=5, positions=33)
  rng = np.random.default_rng(15)
  prompt = _prompt(rng, 30, [SPECIAL["MASK"]])  # [CLS] + 30 + [MASK] + [eos] = 33 rows
  assert len(prompt) == cfg.max_sequence_length + 1
  assert _fill(cfg, params, prompt, max_new_tokens=4) == original_greedy_fill(sd, prompt, 4)


# ----------------------------------------------------------------------------- sampling


def test_sampling_is_reproducible_by_seed_and_varies_with_it():
  _, cfg, params = _random_model(seed=6)
  rng = np.random.default_rng(16)
  prompts = [_prompt(rng, 10, [SPECIAL["MASK"]] * 2), _prompt(rng, 5, [SPECIAL["MASK"]])]
  kw = dict(max_new_tokens=8, strategy="sample", temperature=1.5, top_k=0)
  first = _fill(cfg, params, prompts, seed=3, **kw)
  assert first == _fill(cfg, params, prompts, seed=3, **kw)
  others = [_fill(cfg, params, prompts, seed=s, **kw) for s in (4, 5, 6)]
  assert any(o != first for o in others)


@pytest.mark.slow
def test_sampling_with_top_k_one_is_greedy():
  _, cfg, params = _random_model(seed=7)
  rng = np.random.default_rng(17)
  prompts = [_prompt(rng, 10, [SPECIAL["MASK"]] * 2), _prompt(rng, 22, [SPECIAL["sMASK"]])]
  greedy = _fill(cfg, params, prompts, max_new_tokens=6)
  assert _fill(cfg, params, prompts, max_new_tokens=6, strategy="sample", top_k=1,
               seed=9) == greedy


def _draws(logits, n=4000, **kw):
  logits = np.tile(np.asarray(logits, np.float32), (n, 1))
  return np.asarray(sampling.choose(logits, jax.random.PRNGKey(0), greedy=False, **kw))


def test_top_k_draws_only_the_k_most_likely_tokens():
  logits = np.log([0.05, 0.3, 0.02, 0.25, 0.18, 0.2])
  draws = _draws(logits, temperature=1.0, top_k=3, top_p=0.0)
  assert set(np.unique(draws)) == {1, 3, 5}


def test_top_p_draws_only_from_the_nucleus():
  logits = np.log([0.05, 0.3, 0.02, 0.25, 0.18, 0.2])
  # 0.3 + 0.25 = 0.55 < 0.6, so the nucleus also needs 0.2: {1, 3, 5}.
  draws = _draws(logits, temperature=1.0, top_k=0, top_p=0.6)
  assert set(np.unique(draws)) == {1, 3, 5}
  np.testing.assert_allclose(np.mean(draws == 1), 0.3 / 0.75, atol=0.03)


def test_no_repeat_ngram_mask_bans_the_token_that_would_repeat_a_bigram():
  generated = np.array([[5, 6, 5, 7, 5, -1], [1, 2, 3, -1, -1, -1]])
  banned = np.asarray(sampling.no_repeat_ngram_mask(generated, np.array([5, 3]), 2, 10))
  assert sorted(np.nonzero(banned[0])[0]) == [6, 7]   # "5 6" and "5 7" were seen after a 5
  assert not banned[1].any()                           # "3" never started a bigram


def test_no_repeat_ngram_generation_never_repeats_a_trigram():
  _, cfg, params = _random_model(seed=8, eop_boost=0.0)
  rng = np.random.default_rng(18)
  prompt = _prompt(rng, 6, [], end_with_gmask=True)
  (tokens,) = _fill(cfg, params, prompt, max_new_tokens=40, no_repeat_ngram_size=3)
  trigrams = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
  assert len(trigrams) == len(set(trigrams)) and len(tokens) > 20


# ----------------------------------------------------------------------------- beam search


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def exhaustive_best(sd, prompt, blank, length_penalty):
  """Best hypothesis over every continuation of at most 2 tokens for a prompt's only blank:
  [end], [a, end], [a, b] (cut at the budget), score = sum log p / scored tokens ** penalty."""
  n, vocab = len(prompt), sd["word_embeddings.weight"].shape[0]
  first = _log_softmax(reference_glm.glm_forward(
      sd, np.array([prompt + [SPECIAL["sop"]]]),
      np.array([[list(range(n)) + [blank], [0] * n + [1]]]), np.array([n]), HEADS)[0, -1])
  ids = np.array([prompt + [SPECIAL["sop"], a] for a in range(vocab)])
  pos = np.array([[list(range(n)) + [blank, blank], [0] * n + [1, 2]]] * vocab)
  second = _log_softmax(reference_glm.glm_forward(sd, ids, pos, np.full(vocab, n), HEADS)[:, -1])
  best = (-np.inf, None)
  for a in range(vocab):
    if a in ENDS:
      best = max(best, (first[a] / 1 ** length_penalty, []))
      continue
    for b in range(vocab):
      tokens, scored = ([a], 2) if b in ENDS else ([a, b], 2)
      best = max(best, ((first[a] + second[a, b]) / scored ** length_penalty, tokens))
  return best[1]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 3.0])
def test_beam_search_with_enough_beams_finds_the_exhaustive_best(length_penalty):
  sd, cfg, params = _random_model(seed=9, vocab=16, eop_boost=2.5)
  rng = np.random.default_rng(19)
  for _ in range(3):
    prompt = _prompt(rng, 8, [SPECIAL["MASK"]], vocab=16)
    blank = prompt.index(SPECIAL["MASK"])
    got = _fill(cfg, params, prompt, max_new_tokens=2, strategy="beam", num_beams=8,
                length_penalty=length_penalty)
    assert got == [exhaustive_best(sd, prompt, blank, length_penalty)]


@pytest.mark.slow
def test_one_beam_without_length_penalty_is_greedy_over_several_blanks():
  _, cfg, params = _random_model(seed=10)
  rng = np.random.default_rng(20)
  prompts = [_prompt(rng, 15, [SPECIAL["MASK"]] * 3), _prompt(rng, 7, [SPECIAL["sMASK"]] * 2)]
  greedy = _fill(cfg, params, prompts, max_new_tokens=6)
  assert _fill(cfg, params, prompts, max_new_tokens=6, strategy="beam", num_beams=1,
               length_penalty=0.0) == greedy


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def tiny():
  _, cfg, params = _random_model(seed=0, positions=33)
  return cfg, params


def test_prompt_without_blank_is_rejected_with_the_fix(tiny):
  with pytest.raises(generate.GenerationError, match="no blank.*gMASK"):
    _fill(*tiny, [2, 9, 10, 1])


def test_prompt_longer_than_position_table_is_rejected(tiny):
  with pytest.raises(generate.GenerationError, match="position table holds 33"):
    _fill(*tiny, [2] + [9] * 40 + [3, 1])


def test_unknown_strategy_is_rejected(tiny):
  with pytest.raises(generate.GenerationError, match="strategy='topk'.*greedy"):
    _fill(*tiny, [2, 9, 3, 1], strategy="topk")


def test_missing_special_id_is_rejected(tiny):
  with pytest.raises(generate.GenerationError, match=r"lacks \['sop'\]"):
    generate.fill_blanks(*tiny, [2, 9, 3, 1], special_ids={k: v for k, v in SPECIAL.items()
                                                          if k != "sop"})
