"""The training loss without the whole sequence's logits: LM head + cross-entropy in chunks.

A causal LM's loss on one sequence of T tokens needs logits [T, vocab]. At the paper's scale
(27k-token traces, Qwen2.5's 151,936/152,064-token vocabulary) one fp32 copy is ~16 GB, and the
plain path holds three (the logits, their fp32 upcast, cross-entropy's gradient). Here the model's
forward runs as usual up to its last hidden states; its LM head module then computes the summed
cross-entropy itself, chunk by chunk, and returns that scalar in place of the logits:

  chunked       pure torch: `loss_chunk` supervised positions at a time, each chunk under
                torch.utils.checkpoint (its logits are recomputed in backward, never stored), so
                the peak holds one chunk's logits. Works on CPU and GPU, with peft-wrapped models
                (the head's own forward is reused, LoRA or not) and with DeepSpeed ZeRO-3: the head
                is still called ONCE per forward as a module, so ZeRO-3 gathers its partitioned
                weight in its pre-forward hook (and again in its pre-backward hook for the
                recompute), and every rank issues the same collectives whatever its sequence length.
  liger         Liger-Kernel's fused linear cross-entropy (Triton, CUDA only; an optional package of
                the GPU env): chosen by `auto` on CUDA when importable, the head is a plain
                nn.Linear and its weight is whole (not ZeRO-3, whose partitioned weight only the
                module call can gather).
  materialised  the old path (whole logits, upcast, cross_entropy): for benchmarks and the
                equivalence tests.

Only positions whose label is supervised are fed to the head (the prompt's hidden states are
skipped), so the loss equals cross_entropy(logits[:-1], labels[1:], ignore_index=-100, sum).
"""
from __future__ import annotations

import importlib.util
import types

import torch
import torch.nn.functional as F

from elicit.chat import IGNORE_INDEX, supervised_tokens  # the one label mask

IMPLS = ("auto", "chunked", "liger", "materialised")


def unwrap(model):
    """The *ForCausalLM inside a DeepSpeed engine / DDP (.module) and peft (get_base_model)."""
    m = getattr(model, "module", model)
    return m.get_base_model() if hasattr(m, "get_base_model") else m


def liger_problem() -> str:
    """'' when Liger's fused loss can run here, else why not (an installed package that fails to
    import, e.g. against another transformers, is named rather than crashing the first step)."""
    if not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None:
        return "no CUDA or liger-kernel not installed"
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
        return f"liger-kernel does not import ({type(e).__name__}: {e})"
    return ""


def liger_available() -> bool:
    return not liger_problem()


def choose(impl: str, model, zero3: bool) -> tuple[str, str]:
    """(implementation, why) for `--loss_impl impl`."""
    if impl not in IMPLS:
        raise SystemExit(f"--loss_impl must be one of {IMPLS}, got {impl!r}")
    head = unwrap(model).get_output_embeddings()
    plain = type(head) is torch.nn.Linear and head.bias is None
    if impl == "liger" and not (liger_available() and plain and not zero3):
        raise SystemExit("--loss_impl liger needs CUDA, the liger-kernel package, a plain nn.Linear "
                         "LM head and a whole (not ZeRO-3 partitioned) head weight")
    if impl != "auto":
        return impl, "requested"
    if why := liger_problem():
        return "chunked", why
    if zero3:
        return "chunked", "ZeRO-3 partitions the LM head (liger needs the whole weight)"
    if not plain:
        return "chunked", f"LM head is {type(head).__name__}, not a plain nn.Linear"
    return "liger", "CUDA and liger-kernel available"


def _chunk_ce(forward, h, y):
    return F.cross_entropy(forward(h).float(), y, ignore_index=IGNORE_INDEX, reduction="sum")


def _head_forward(self, hidden):
    """Replaces the head's forward: logits as usual, or the summed loss while labels are set."""
    labels = self._loss_labels
    if labels is None:
        return self._orig_forward(hidden)
    h, y = hidden[0, :-1], labels[0, 1:]
    keep = (y != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    h, y = h.index_select(0, keep), y.index_select(0, keep)
    if self._loss_impl == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        return LigerFusedLinearCrossEntropyLoss(reduction="sum", ignore_index=IGNORE_INDEX)(
            self.weight, h, y)
    total = hidden.sum().float() * 0.0  # keeps the graph whole even with no supervised token
    grad = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in self.parameters()))
    for s in range(0, h.size(0), self._loss_chunk):
        hc, yc = h[s:s + self._loss_chunk], y[s:s + self._loss_chunk]
        if grad:
            total = total + torch.utils.checkpoint.checkpoint(
                _chunk_ce, self._orig_forward, hc, yc, use_reentrant=False)
        else:
            total = total + _chunk_ce(self._orig_forward, hc, yc)
    return total


class TokenLoss:
    """loss(model, ids, labels) = summed cross-entropy over the supervised tokens of one sequence."""

    def __init__(self, model, impl: str = "auto", chunk: int = 512, zero3: bool = False,
                 autocast: bool = False):
        self.impl, self.why = choose(impl, model, zero3)
        self.chunk, self.autocast = int(chunk), autocast
        if self.chunk < 1:
            raise SystemExit(f"--loss-chunk must be positive, got {chunk}")
        self.head = unwrap(model).get_output_embeddings()
        if not hasattr(self.head, "_orig_forward"):
            self.head._orig_forward = self.head.forward
            self.head.forward = types.MethodType(_head_forward, self.head)
        self.head._loss_labels, self.head._loss_impl, self.head._loss_chunk = None, self.impl, self.chunk

    def __call__(self, model, ids, labels, device) -> torch.Tensor:
        x = torch.tensor([ids], device=device)
        y = torch.tensor([labels], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.impl == "materialised":
                logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
                return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, 1:].reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum")
            self.head._loss_labels = y
            try:
                return model(input_ids=x, use_cache=False).logits
            finally:
                self.head._loss_labels = None


@torch.no_grad()
def validation_loss(model, val, rank, world, device, loss_fn) -> float:
    """Token-weighted mean loss over every validation example, on any world size.

    Rank r takes val[r::world]. Under ZeRO-3 every forward is a collective (parameter
    all-gathers), so every rank runs the SAME number of forward passes, ceil(len(val)/world):
    a rank with fewer examples repeats the shortest one with weight 0 (72 examples on 16
    ranks: 8 ranks run one such pass). The reduced loss is over exactly the real examples."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    mine = val[rank::world]
    passes = -(-len(val) // world)
    filler = min(val, key=lambda e: len(e[0]))
    for k in range(passes):
        ids, labels = mine[k] if k < len(mine) else filler
        loss = loss_fn(model, ids, labels, device).double()
        if k < len(mine):
            totals[0] += loss
            totals[1] += supervised_tokens(labels)
    if world > 1:
        torch.distributed.all_reduce(totals)
    model.train()
    return (totals[0] / totals[1]).item()
