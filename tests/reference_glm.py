"""An independent numpy transcription of the original GLM forward pass (THUDM/GLM, fp32, eval).

It reads THUDM-named weights directly ((out, in) linear layout, fused [Q; K; V]) and follows the
original's order of operations, so tests can check our Flax model on shapes the fixture lacks.
"""

import math

import numpy as np


def _layernorm(x, w, b, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x):
  return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)))


def _linear(x, sd, name):
  return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def glm_forward(sd, input_ids, position_ids, sep, num_heads):
  """Logits `[b, s, vocab]` of the original model for THUDM state dict `sd` (numpy, float64)."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  num_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))
  batch, length = input_ids.shape
  x = (sd["word_embeddings.weight"][input_ids]
       + sd["transformer.position_embeddings.weight"][position_ids[:, 0]]
       + sd["transformer.block_position_embeddings.weight"][position_ids[:, 1]])
  hidden = x.shape[-1]
  head_dim = hidden // num_heads
  # ltor mask as the original builds it: lower triangle, then Part A columns opened.
  mask = np.tril(np.ones((batch, length, length)))
  for b in range(batch):
    mask[b, :, :sep[b]] = 1
  for i in range(num_layers):
    p = f"transformer.layers.{i}."
    h = _layernorm(x, sd[p + "input_layernorm.weight"], sd[p + "input_layernorm.bias"])
    qkv = _linear(h, sd, p + "attention.query_key_value")
    q, k, v = np.split(qkv, 3, axis=-1)
    q, k, v = (t.reshape(batch, length, num_heads, head_dim).transpose(0, 2, 1, 3) for t in (q, k, v))
    scores = (q / math.sqrt(head_dim)) @ k.transpose(0, 1, 3, 2)
    scores = scores * mask[:, None] - 65504.0 * (1.0 - mask[:, None])
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    x = x + _linear(ctx, sd, p + "attention.dense")
    h = _layernorm(x, sd[p + "post_attention_layernorm.weight"], sd[p + "post_attention_layernorm.bias"])
    x = x + _linear(_gelu(_linear(h, sd, p + "mlp.dense_h_to_4h")), sd, p + "mlp.dense_4h_to_h")
  x = _layernorm(x, sd["transformer.final_layernorm.weight"], sd["transformer.final_layernorm.bias"])
  return x @ sd["word_embeddings.weight"].T


def random_state_dict(rng, *, num_layers, hidden, vocab, positions, ffn_ratio=4, scale=0.2):
  """THUDM-named random weights with random LayerNorm weights and biases (not 1 / 0)."""
  def w(*shape):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

  sd = {
      "word_embeddings.weight": w(vocab, hidden),
      "transformer.position_embeddings.weight": w(positions, hidden),
      "transformer.block_position_embeddings.weight": w(positions, hidden),
      "transformer.final_layernorm.weight": 1 + w(hidden),
      "transformer.final_layernorm.bias": w(hidden),
  }
  ffn = ffn_ratio * hidden
  for i in range(num_layers):
    p = f"transformer.layers.{i}."
    sd.update({
        p + "input_layernorm.weight": 1 + w(hidden), p + "input_layernorm.bias": w(hidden),
        p + "attention.query_key_value.weight": w(3 * hidden, hidden),
        p + "attention.query_key_value.bias": w(3 * hidden),
        p + "attention.dense.weight": w(hidden, hidden), p + "attention.dense.bias": w(hidden),
        p + "post_attention_layernorm.weight": 1 + w(hidden),
        p + "post_attention_layernorm.bias": w(hidden),
        p + "mlp.dense_h_to_4h.weight": w(ffn, hidden), p + "mlp.dense_h_to_4h.bias": w(ffn),
        p + "mlp.dense_4h_to_h.weight": w(hidden, ffn), p + "mlp.dense_4h_to_h.bias": w(hidden),
    })
  return sd


def glm_position_ids(rng, batch, length, seps, max_position):
  """Plausible GLM 2D positions: Part A counts up, Part B repeats mask positions with block ids."""
  pos = np.zeros((batch, 2, length), np.int64)
  for b in range(batch):
    sep = int(seps[b])
    pos[b, 0, :sep] = np.arange(sep)
    i = sep
    while i < length:
      span = int(rng.integers(1, 5))
      anchor = int(rng.integers(0, max(sep, 1)))
      n = min(span, length - i)
      pos[b, 0, i:i + n] = anchor
      pos[b, 1, i:i + n] = np.arange(1, n + 1)
      i += n
    if sep == 0:
      pos[b, 0] = np.arange(length)
      pos[b, 1] = 0
  return np.minimum(pos, max_position - 1)
