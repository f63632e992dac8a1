"""A zoo of common architectures, small enough for tests except where noted.

- ``SmallCNN``       conv + BatchNorm (buffers), input 2,3,32,32
- ``LSTMTagger``     an LSTM over embeddings-free float input 4,10,16
- ``make_transformer`` ``nn.Transformer`` with two inputs (src, tgt)
- ``TinyGPT``        a GPT-style LM, embedding tied to the output, int input 2,16:int64
- ``TinySeq2Seq``    a T5-shaped encoder-decoder whose forward takes keyword inputs:
                     ``-i 2,16 -i decoder_input_ids=2,8 -i attention_mask=2,16``
- ``MoE``            a mixture-of-experts with tens of thousands of modules
- ``llama_7b``       a ~6.7B-parameter decoder: open with ``--device meta``
"""


import torch
from torch import nn
from torch.nn import functional as F


class SmallCNN(nn.Module):
    """Two conv blocks with BatchNorm (running stats are buffers) and a head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class LSTMTagger(nn.Module):
    """An LSTM over a sequence of feature vectors, a linear tag per step."""

    def __init__(self, features: int = 16, hidden: int = 32, tags: int = 5):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.tag = nn.Linear(hidden, tags)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.tag(out)


def make_transformer() -> nn.Module:
    """A small ``nn.Transformer``; inputs src 2,10,32 and tgt 2,7,32."""
    return nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                          dim_feedforward=64, batch_first=True)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A GPT-style language model; ``lm_head.weight`` is ``tok.weight`` (tied)."""

    def __init__(self, vocab: int = 512, d: int = 64, layers: int = 2, heads: int = 4, ctx: int = 64):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.tok.weight
        self.register_buffer("causal", torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), 1), persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        mask = self.causal[:t, :t]
        for b in self.blocks:
            x = b(x, mask)
        return self.lm_head(self.ln_f(x))


class TinySeq2Seq(nn.Module):
    """A T5-shaped encoder-decoder: ``forward(input_ids, decoder_input_ids, attention_mask=None)``.

    The shared embedding is tied to the output layer, as in T5. Masks must
    hold 0 and 1 (1: attend), as Hugging Face models expect.
    """

    def __init__(self, vocab: int = 128, d: int = 32, heads: int = 4):
        super().__init__()
        self.shared = nn.Embedding(vocab, d)
        self.encoder = nn.TransformerEncoderLayer(d, heads, 2 * d, batch_first=True)
        self.decoder = nn.TransformerDecoderLayer(d, heads, 2 * d, batch_first=True)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.shared.weight

    def forward(self, input_ids, decoder_input_ids, attention_mask=None, decoder_attention_mask=None):
        for name, m in (("attention_mask", attention_mask), ("decoder_attention_mask", decoder_attention_mask)):
            if m is not None and not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"{name} must hold 0 and 1, got values up to {int(m.max())}")
        pad = None if attention_mask is None else attention_mask == 0
        memory = self.encoder(self.shared(input_ids), src_key_padding_mask=pad)
        out = self.decoder(self.shared(decoder_input_ids), memory, memory_key_padding_mask=pad)
        return self.lm_head(out)


class Expert(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.up = nn.Linear(d, h)
        self.act = nn.GELU()
        self.down = nn.Linear(h, d)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class MoELayer(nn.Module):
    def __init__(self, d: int, h: int, experts: int, top_k: int = 2):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(Expert(d, h) for _ in range(experts))
        self.top_k = top_k

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        weights, chosen = torch.topk(F.softmax(self.router(flat), -1), self.top_k, dim=-1)
        out = torch.zeros_like(flat)
        for e in chosen.unique().tolist():
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            out[rows] += weights[rows, slot, None] * self.experts[e](flat[rows])
        return out.reshape(x.shape)


class MoE(nn.Module):
    """Mixture of experts: layers x experts x 4 modules (12 x 1024: ~50k modules).

    Input ``2,8,16``. ``MoE(layers=2, experts=8)`` is a small one for tests.
    """

    def __init__(self, layers: int = 12, experts: int = 1024, d: int = 16, h: int = 16):
        super().__init__()
        self.layers = nn.ModuleList(MoELayer(d, h, experts) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return self.norm(x)


def make_moe_small() -> nn.Module:
    return MoE(layers=2, experts=8)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class DecoderLayer(nn.Module):
    def __init__(self, d: int, ffn: int, heads: int):
        super().__init__()
        self.heads = heads
        self.input_norm = RMSNorm(d)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.post_norm = RMSNorm(d)
        self.gate_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.input_norm(x)
        q, k, v = (p(h).view(b, t, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.o_proj(a)
        h = self.post_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Decoder(nn.Module):
    """A LLaMA-shaped decoder-only language model."""

    def __init__(self, vocab: int = 32000, d: int = 4096, ffn: int = 11008, layers: int = 32, heads: int = 32):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(DecoderLayer(d, ffn, heads) for _ in range(layers))
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def llama_7b() -> nn.Module:
    """~6.7B parameters (27 GB in float32): open with ``--device meta``."""
    return Decoder()


def tiny_decoder() -> nn.Module:
    """The same architecture at toy size, for tests (input 2,8:int64)."""
    return Decoder(vocab=100, d=32, ffn=64, layers=2, heads=4)




def medium_decoder() -> nn.Module:
    """The same architecture at ~40M parameters, for benchmarks (input 4,128)."""
    return Decoder(vocab=8000, d=512, ffn=1376, layers=8, heads=8)
