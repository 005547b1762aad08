"""The `hf-slots` engine: S fixed slots, a static KV cache, one decode step captured as a graph.

gpt-fast's recipe over a transformers decoder (Qwen2, Qwen3, Llama: the modules `embed_tokens`,
`layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj (+ q_norm, k_norm), post_attention_layernorm,
mlp}`, `norm`, `lm_head`, `rotary_emb`): this module runs those modules itself, so every shape is
fixed and nothing in a step reads a value back to the host.

  * KV cache: per layer K and V of [S, L, kv_heads, head_dim], L = the longest prompt + max new
    tokens of the run. Slot s writes its token's K/V at (s, pos[s]).
  * decode step (`_step`): the S slots' last tokens at their positions -> logits [S, vocab] ->
    the next token of every slot, drawn with hf-cb's per-request Gumbel-max sampler (noise from
    (request seed, predicted position, token id): lm_backend_cb.gumbel_noise) or argmax; the
    step updates tokens/positions itself. On CUDA it is compiled (torch.compile, fullgraph) and
    captured once as a CUDA graph; a step is then one graph replay, one non-blocking copy of the
    S tokens to pinned memory and one event wait (for the PREVIOUS step: the host works one step
    behind the device, so its bookkeeping overlaps the GPU's work).
  * attention: on CUDA `aten._flash_attention_forward` over the slots' keys with
    `seqused_k = pos + 1` (reads only the cached tokens) where the installed torch has it and a
    start-up check agrees with SDPA; else (and on CPU) SDPA over the whole static cache with a
    key-padding mask. Query heads are packed per KV head (GQA without repeating K/V).
  * prefill: a request that takes a free slot is prefilled alone, eagerly, straight into its slot
    (SDPA, causal); it draws its first token with the same sampler.
  * tensor parallel (`tp_group`, gpt-fast's layout): q/k/v and gate/up sharded by heads / columns,
    o/down by rows, one all-reduce after each (functional collectives: traceable, inside the
    captured step); each rank holds its heads' share of the KV cache; every rank samples the same
    tokens from the same all-reduced logits.

What an answer depends on: its prompt, its sampling seed and the model; with S and the kernels
fixed, not on its slot, its neighbours or the order of arrival (every op of the step has the
same shapes at every step, and rows do not mix). So answers are bitwise reproducible for a given
(S, GPU, torch, dtype); on CPU in float32 also across S (tests/test_eval_slots.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from elicit.eval.lm_backend_cb import gumbel_noise, row_key


@dataclass(frozen=True)
class Sampling:
    """The run's sampling (one gen_kwargs group: the same for every slot)."""
    temperature: float = 0.0  # 0: greedy (argmax)
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    def warpers(self):
        from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        return ([TopKLogitsWarper(int(self.top_k))] if self.top_k else []) + \
               ([TopPLogitsWarper(float(self.top_p))] if self.top_p is not None and self.top_p < 1.0 else []) + \
               ([MinPLogitsWarper(float(self.min_p))] if self.min_p else [])

    def draw(self, logits: torch.Tensor, seeds: torch.Tensor, positions: torch.Tensor, warpers=()) -> torch.Tensor:
        """[rows, vocab] fp32 logits -> [rows] token ids (int64); warpers: self.warpers(), built once."""
        if not self.temperature:
            return logits.argmax(-1)
        scores = logits / float(self.temperature)
        for w in warpers:
            scores = w(None, scores)
        return (scores + gumbel_noise(row_key(seeds, positions), scores.size(-1))).argmax(-1)


def decoder_parts(model):
    """(the causal-LM module, its decoder) of a transformers model or a PeftModel around one."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return lm, lm.model


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def _rope(x, cos, sin):
    """x [B, T, heads, D], cos/sin [B, T, D] (transformers' apply_rotary_pos_emb, heads on dim 2)."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    return x * cos + _rotate_half(x) * sin


def flash_available(device) -> bool:
    """aten's FA2 with per-sequence key counts (seqused_k): CUDA and a torch that declares it."""
    if not str(device).startswith("cuda"):
        return False
    try:
        return "seqused_k" in str(torch.ops.aten._flash_attention_forward.default._schema)
    except (AttributeError, RuntimeError):
        return False


@dataclass
class Stats:
    steps: int = 0
    prefills: int = 0
    tokens: int = 0  # answer tokens kept (junk of idle slots excluded)
    step_s: float = 0.0
    prefill_s: float = 0.0
    slot_steps: int = 0  # active slots summed over steps (their mean in summary)

    def summary(self) -> dict:
        busy = self.slot_steps / max(1, self.steps)
        return {"steps": self.steps, "prefills": self.prefills, "tokens": self.tokens,
                "mean_in_flight": round(busy, 2), "step_s": round(self.step_s, 3),
                "prefill_s": round(self.prefill_s, 3)}


class SlotDecoder:
    """S slots of at most `max_len` tokens each over a loaded transformers model."""

    def __init__(self, model, slots: int, max_len: int, sampling: Sampling, attention: str = "auto",
                 capture: str = "auto", tp_group=None):
        self.model, self.S, self.L, self.sampling = model, int(slots), int(max_len), sampling
        self.lm, self.dec = decoder_parts(model)
        cfg = self.lm.config
        if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
            raise ValueError("hf-slots runs full attention only (this model has sliding-window layers)")
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.tp_group, self.tp = tp_group, 1
        if tp_group is not None:
            import torch.distributed as dist

            self.tp = dist.get_world_size(tp_group)  # the weights are sharded already (slots_tp.shard)
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.heads = cfg.num_attention_heads // self.tp
        self.kv_heads = (getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads) // self.tp
        self.group = self.heads // self.kv_heads
        self.scaling = self.head_dim ** -0.5
        n_layers, dev = len(self.dec.layers), self.device
        shape = (self.S, self.L, self.kv_heads, self.head_dim)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(n_layers)]
        # the step's static inputs/outputs (device) and its readback buffers (host)
        self.tokens = torch.zeros(self.S, dtype=torch.int64, device=dev)
        self.pos = torch.zeros(self.S, dtype=torch.int64, device=dev)
        self.seeds = torch.zeros(self.S, dtype=torch.int64, device=dev)
        self.out = torch.zeros(self.S, dtype=torch.int64, device=dev)
        self.key_index = torch.arange(self.L, device=dev)
        self.rows = torch.arange(self.S, device=dev)
        self.cuda = dev.type == "cuda"
        self.attention = attention
        if attention == "auto":
            self.attention = "flash" if flash_available(dev) and self._flash_agrees() else "sdpa"
        if self.attention == "flash":
            self.cu_q = torch.arange(self.S + 1, dtype=torch.int32, device=dev)
            self.cu_k = self.cu_q * self.L
        self.capture = ("graph" if self.cuda else "eager") if capture == "auto" else capture
        self.graph, self.step_fn, self.compiled = None, self._step, None
        self.warpers = sampling.warpers()
        self.stats = Stats()

    # ------------------------------------------------------------------ the model, layer by layer
    def _all_reduce(self, x):
        if self.tp_group is None:
            return x
        from torch.distributed import _functional_collectives as funcol

        return funcol.wait_tensor(funcol.all_reduce(x, "sum", self.tp_group))

    def _qkv(self, attn, h, cos, sin):
        B, T = h.shape[:2]
        q = attn.q_proj(h).view(B, T, self.heads, self.head_dim)
        k = attn.k_proj(h).view(B, T, self.kv_heads, self.head_dim)
        v = attn.v_proj(h).view(B, T, self.kv_heads, self.head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3: per-head RMSNorm before the rotation
            q, k = attn.q_norm(q), attn.k_norm(k)
        return _rope(q, cos, sin), _rope(k, cos, sin), v

    def _run(self, x, position_ids, attend):
        """Embeddings x [B, T, hidden] through every layer; attend(i, q, k, v) -> [B, T, heads * D]."""
        cos, sin = self.dec.rotary_emb(x, position_ids)
        for i, layer in enumerate(self.dec.layers):
            h = layer.input_layernorm(x)
            q, k, v = self._qkv(layer.self_attn, h, cos, sin)
            x = x + self._all_reduce(layer.self_attn.o_proj(attend(i, q, k, v)))
            x = x + self._all_reduce(layer.mlp(layer.post_attention_layernorm(x)))
        return self.lm.lm_head(self.dec.norm(x)).float()

    # ------------------------------------------------------------------ decode: one captured step
    def _decode_attend(self, i, q, k, v, mask=None):
        S, D = self.S, self.head_dim
        self.k[i].index_put_((self.rows, self.pos), k[:, 0])
        self.v[i].index_put_((self.rows, self.pos), v[:, 0])
        if self.attention == "flash":
            out = torch.ops.aten._flash_attention_forward(
                q[:, 0], self.k[i].view(S * self.L, self.kv_heads, D), self.v[i].view(S * self.L, self.kv_heads, D),
                self.cu_q, self.cu_k, 1, self.L, 0.0, False, False, scale=self.scaling,
                seqused_k=(self.pos + 1).to(torch.int32))[0]
            return out.reshape(S, 1, self.heads * D)
        qq = q.view(S, self.kv_heads, self.group, D)  # query heads of one KV head as rows: no repeated K/V
        o = F.scaled_dot_product_attention(qq, self.k[i].transpose(1, 2), self.v[i].transpose(1, 2),
                                           attn_mask=mask[:, None, None, :], scale=self.scaling)
        return o.reshape(S, 1, self.heads * D)

    def _step(self):
        """One token for every slot; pure device work on the static buffers (what a graph captures)."""
        mask = None if self.attention == "flash" else self.key_index[None, :] <= self.pos[:, None]
        x = self.dec.embed_tokens(self.tokens[:, None])
        logits = self._run(x, self.pos[:, None], lambda i, q, k, v: self._decode_attend(i, q, k, v, mask))[:, 0]
        nxt = self.sampling.draw(logits, self.seeds, self.pos + 1, self.warpers)
        self.tokens.copy_(nxt)
        self.out.copy_(nxt)
        self.pos.copy_(torch.clamp(self.pos + 1, max=self.L - 1))  # an idle slot stays inside its row

    def warm(self) -> None:
        """Compile and capture the step (CUDA), on the buffers as they are (their values are reset
        by the prefills that follow)."""
        if self.capture != "graph" or self.graph is not None:
            return
        fn = self._step
        try:
            fn = torch.compile(self._step, fullgraph=True, dynamic=False)
            self._warm_runs(fn)
            self.compiled = "inductor"
        except Exception as e:  # noqa: BLE001  (a compiler failure leaves the eager step, captured)
            print(f"hf-slots: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); capturing the eager step")
            fn, self.compiled = self._step, "eager"
            self._warm_runs(fn)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            fn()
        self.step_fn = self.graph.replay

    def _warm_runs(self, fn, n: int = 3) -> None:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(n):
                fn()
        torch.cuda.current_stream().wait_stream(s)

    # ------------------------------------------------------------------ prefill: one request, eager
    def prefill(self, slot: int, ids: list[int], seed: int) -> int:
        """Write a prompt's K/V into `slot`, set its state, return its first new token."""
        t0 = time.perf_counter()
        n = len(ids)
        if n + 1 > self.L:
            raise ValueError(f"prompt of {n} tokens does not fit a slot of {self.L}")
        logits = self.prefill_logits(slot, ids)
        seed_t = torch.tensor([seed], dtype=torch.int64, device=self.device)
        first = self.sampling.draw(logits, seed_t, torch.tensor([n], device=self.device), self.warpers)
        self.tokens[slot], self.pos[slot], self.seeds[slot] = first[0], n, seed
        self.stats.prefills += 1
        tok = int(first[0])  # the one readback of a prefill
        self.stats.prefill_s += time.perf_counter() - t0
        return tok

    def prefill_logits(self, slot: int, ids: list[int]) -> torch.Tensor:
        """The prompt's K/V written into `slot`; the logits [1, vocab] after its last token."""
        n = len(ids)

        def attend(i, q, k, v):
            self.k[i][slot, :n] = k[0]
            self.v[i][slot, :n] = v[0]
            kk = k.transpose(1, 2).repeat_interleave(self.group, dim=1)
            vv = v.transpose(1, 2).repeat_interleave(self.group, dim=1)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=True, scale=self.scaling)
            return o.transpose(1, 2).reshape(1, n, self.heads * self.head_dim)

        x = self.dec.embed_tokens(torch.tensor([ids], dtype=torch.int64, device=self.device))
        return self._run(x, torch.arange(n, device=self.device)[None], attend)[:, -1]

    def _flash_agrees(self) -> bool:
        """FA2 with seqused_k on this GPU against SDPA with a key mask, on random data of the model's
        head geometry (a wrong kernel must not decide answers)."""
        try:
            S, L, H, Hk, D = 3, 256, self.heads, self.kv_heads, self.head_dim
            g = torch.Generator(device=self.device).manual_seed(0)
            q = torch.randn(S, H, D, device=self.device, dtype=self.dtype, generator=g)
            k = torch.randn(S, L, Hk, D, device=self.device, dtype=self.dtype, generator=g)
            v = torch.randn(S, L, Hk, D, device=self.device, dtype=self.dtype, generator=g)
            used = torch.tensor([1, 100, 256], dtype=torch.int32, device=self.device)
            cu_q = torch.arange(S + 1, dtype=torch.int32, device=self.device)
            out = torch.ops.aten._flash_attention_forward(q, k.view(S * L, Hk, D), v.view(S * L, Hk, D), cu_q,
                                                          cu_q * L, 1, L, 0.0, False, False, scale=D ** -0.5,
                                                          seqused_k=used)[0]
            mask = torch.arange(L, device=self.device)[None, :] < used[:, None]
            ref = F.scaled_dot_product_attention(q.view(S, Hk, H // Hk, D).float(), k.transpose(1, 2).float(),
                                                 v.transpose(1, 2).float(), attn_mask=mask[:, None, None, :],
                                                 scale=D ** -0.5).reshape(S, H, D)
            return bool((out.float() - ref).abs().max() < 2e-2)
        except Exception as e:  # noqa: BLE001
            print(f"hf-slots: flash attention with seqused_k unavailable ({type(e).__name__}: {str(e)[:160]}); SDPA")
            return False

    # ------------------------------------------------------------------ the loop
    def generate(self, requests, on_finish, eos_ids, max_new: int) -> None:
        """requests: [(ids, seed)] or [(ids, seed, its own max_new)]; on_finish(index, generated ids) once
        per request, in finishing order. A request stops at an id in eos_ids (kept) or after max_new tokens."""
        run = _Run(self, requests, on_finish, {int(t) for t in eos_ids}, int(max_new))
        self.warm()
        for s in range(self.S):
            run.fill(s)
        pending = None
        while run.busy():
            t0 = time.perf_counter()
            self.step_fn()  # step number run.launched (asynchronous on CUDA)
            run.launched += 1
            if pending is not None:  # the previous step's tokens, while this one runs
                run.collect(*pending)
            run.host.copy_(self.out, non_blocking=self.cuda)
            event = torch.cuda.Event() if self.cuda else None
            if event is not None:
                event.record()
            pending = (run.launched - 1, event)
            self.stats.steps += 1
            self.stats.slot_steps += run.active()
            self.stats.step_s += time.perf_counter() - t0
        if pending is not None and pending[1] is not None:
            pending[1].synchronize()


class _Run:
    """The host side of one generate(): which request each slot holds, what it has generated."""

    def __init__(self, dec: SlotDecoder, requests, on_finish, eos: set, max_new: int):
        self.dec, self.requests, self.on_finish, self.eos, self.max_new = dec, requests, on_finish, eos, max_new
        self.queue = list(range(len(requests)))[::-1]
        self.req = [None] * dec.S      # request index per slot
        self.gen = [[] for _ in range(dec.S)]
        self.valid_from = [0] * dec.S  # the first step whose output belongs to the slot's request
        self.cap = [max_new] * dec.S   # the slot's request's max new tokens
        self.launched = 0              # steps launched so far (the next step's number)
        self.host = torch.zeros(dec.S, dtype=torch.int64, pin_memory=dec.cuda)

    def busy(self) -> bool:
        return any(r is not None for r in self.req)

    def active(self) -> int:
        return sum(r is not None for r in self.req)

    def done(self, s: int) -> bool:
        return self.gen[s][-1] in self.eos or len(self.gen[s]) >= self.cap[s]

    def fill(self, s: int) -> None:
        """Give slot s the next request (prefilled into it), or leave it idle."""
        while self.queue:
            r = self.queue.pop()
            ids, seed, *cap = self.requests[r]
            self.cap[s] = min(self.max_new, *cap) if cap else self.max_new
            self.req[s], self.gen[s], self.valid_from[s] = r, [self.dec.prefill(s, ids, seed)], self.launched
            if not self.done(s):
                return
            self.on_finish(r, self.gen[s])
        self.req[s] = None

    def collect(self, k: int, event) -> None:
        """The tokens of step k (one step behind the device): append, finish, refill."""
        if event is not None:
            event.synchronize()  # the step's one wait
        toks = self.host.tolist()
        for s, r in enumerate(self.req):
            if r is None or k < self.valid_from[s]:
                continue
            self.gen[s].append(toks[s])
            self.dec.stats.tokens += 1
            if self.done(s):
                self.on_finish(r, self.gen[s])
                self.fill(s)
