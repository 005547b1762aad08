"""The training loss without the whole sequence's logits: LM head + cross-entropy in chunks.

A causal LM's loss on one sequence of T tokens needs logits [T, vocab]. At the paper's scale
(27k-token traces, Qwen2.5's 151,936/152,064-token vocabulary) one fp32 copy is ~16 GB, and the
plain path holds three (the logits, their fp32 upcast, cross-entropy's gradient). Here the model's
forward runs as usual up to its last hidden states; its LM head module then computes the summed
cross-entropy itself, chunk by chunk, and returns that scalar in place of the logits. The head is
patched only for that one forward (`head_loss`, a context manager: outside it the model returns
logits), and `TokenLoss` checks at set-up, on a short sequence, that the head's loss equals the plain
one: a model that changes the logits after its head (soft-capping, a logit scale) is refused, named.

  chunked       pure torch: `loss_chunk` supervised positions at a time, each chunk under
                torch.utils.checkpoint (its logits are recomputed in backward, never stored), so
                the peak holds one chunk's logits; the last chunk is not (its logits are the
                backward's first use and freed at once: a one-chunk sequence recomputes nothing).
                Works on CPU and GPU, with peft-wrapped models
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

import contextlib
import functools
import importlib.util

import torch
import torch.nn.functional as F

from elicit.data.chat import IGNORE_INDEX, supervised_tokens  # the one label mask

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
    """(implementation, why) for `--loss-impl impl`."""
    if impl not in IMPLS:
        raise SystemExit(f"--loss-impl must be one of {IMPLS}, got {impl!r}")
    head = unwrap(model).get_output_embeddings()
    plain = type(head) is torch.nn.Linear and head.bias is None
    if impl == "liger" and not (liger_available() and plain and not zero3):
        raise SystemExit("--loss-impl liger needs CUDA, the liger-kernel package, a plain nn.Linear "
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


def _head_loss(head, forward, labels, impl: str, chunk: int, hidden):
    """The head's forward while `head_loss` is active: the summed loss of `labels`, not the logits."""
    h, y = hidden[0, :-1], labels[0, 1:]
    keep = (y != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    h, y = h.index_select(0, keep), y.index_select(0, keep)
    if impl == "liger":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        return LigerFusedLinearCrossEntropyLoss(reduction="sum", ignore_index=IGNORE_INDEX)(head.weight, h, y)
    total = hidden.sum().float() * 0.0  # keeps the graph whole even with no supervised token
    grad = torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in head.parameters()))
    for s in range(0, h.size(0), chunk):
        hc, yc = h[s:s + chunk], y[s:s + chunk]
        # the last chunk's logits are freed by the backward's first step: recomputing them saves nothing
        if grad and s + chunk < h.size(0):
            total = total + torch.utils.checkpoint.checkpoint(_chunk_ce, forward, hc, yc, use_reentrant=False)
        else:
            total = total + _chunk_ce(forward, hc, yc)
    return total


@contextlib.contextmanager
def head_loss(head, labels, impl: str, chunk: int):
    """Inside the block, `head` returns the summed cross-entropy of `labels` in place of its logits
    (one training / validation forward); on leaving, its own forward is back."""
    had, saved = "forward" in vars(head), vars(head).get("forward")
    head.forward = functools.partial(_head_loss, head, head.forward, labels, impl, chunk)
    try:
        yield
    finally:
        if had:
            head.forward = saved
        else:
            del head.forward


def plain_loss(model, x, y) -> torch.Tensor:
    """Whole logits, upcast, cross-entropy: what the head's loss must reproduce."""
    logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


class TokenLoss:
    """loss(model, ids, labels) = summed cross-entropy over the supervised tokens of one sequence.
    Set-up checks that the head's loss equals the plain one on the model (`check`)."""

    CHECK_TOKENS = 16

    def __init__(self, model, impl: str = "auto", chunk: int = 512, zero3: bool = False,
                 autocast: bool = False, device=None):
        self.impl, self.why = choose(impl, model, zero3)
        self.chunk, self.autocast = int(chunk), autocast
        if self.chunk < 1:
            raise SystemExit(f"--loss-chunk must be positive, got {chunk}")
        self.head = unwrap(model).get_output_embeddings()
        if self.impl != "materialised":
            self.check(model, device or self.head.weight.device)

    def __call__(self, model, ids, labels, device) -> torch.Tensor:
        x = torch.tensor([ids], device=device)
        y = torch.tensor([labels], device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.impl == "materialised":
                return plain_loss(model, x, y)
            with head_loss(self.head, y, self.impl, self.chunk):
                return model(input_ids=x, use_cache=False).logits

    @torch.no_grad()
    def check(self, model, device) -> None:
        """Refuse a model whose loss the LM head alone does not give: one that changes the logits after
        its head (Gemma2's final_logit_softcapping, Cohere's logit_scale) would otherwise train on a
        wrong loss, silently. A short fixed sequence, eval mode (no dropout, no RNG drawn), every rank alike."""
        base = unwrap(model)
        ids = [(7 * i + 3) % base.config.vocab_size for i in range(self.CHECK_TOKENS)]
        labels = [IGNORE_INDEX] * 4 + ids[4:]
        training, why = model.training, ""
        model.eval()
        try:
            got = self(model, ids, labels, device)
            if got.dim() != 0:
                got, why = None, f"its forward turns the head's scalar loss into shape {tuple(got.shape)}"
        except Exception as e:  # noqa: BLE001 - a forward that cannot pass the scalar loss on is refused too
            got, why = None, f"its forward fails on the head's scalar loss ({type(e).__name__}: {e})"
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
                want = plain_loss(model, torch.tensor([ids], device=device), torch.tensor([labels], device=device))
        finally:
            model.train(training)
        got, want = None if got is None else got.item(), want.item()
        bf16 = self.autocast or self.head.weight.dtype == torch.bfloat16
        if got is not None and abs(got - want) <= (2e-2 if bf16 else 1e-4) * max(1.0, abs(want)):
            return
        post = [k for k in ("final_logit_softcapping", "logit_scale") if getattr(base.config, k, None) is not None]
        raise SystemExit(
            f"elicit/train/loss.py: {type(base).__name__} cannot use the {self.impl} loss (LM head + cross-entropy): "
            + (why or f"on a {len(ids)}-token check its head gives {got:.6g}, its own logits {want:.6g}")
            + "; the model changes the logits after its LM head"
            + (f" ({', '.join(f'config.{k}' for k in post)})" if post else " (e.g. soft-capping or a logit scale)")
            + ". Train it with --loss-impl materialised (whole logits), or teach elicit/train/loss.py that step")


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
