"""elicit/train/loss.py's head patch is scoped and self-checking: the LM head returns the summed loss only
inside one training/validation forward (outside it the model returns real logits), and set-up refuses,
naming the model class and the reason, a model that changes the logits after its head."""
import pytest

torch = pytest.importorskip("torch")

CPU = torch.device("cpu")


def _qwen2(cls=None):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return (cls or Qwen2ForCausalLM)(cfg)


def _ids(n=40):
    ids = [(5 * i + 1) % 512 for i in range(n)]
    return ids, [-100] * 8 + ids[8:]


def test_patch_is_gone_after_the_forward_and_the_loss_is_the_plain_one():
    from elicit.train.loss import TokenLoss, head_loss

    model = _qwen2()
    head = model.get_output_embeddings()
    ids, labels = _ids()
    loss = TokenLoss(model, "chunked", 8)(model, ids, labels, CPU)
    plain = TokenLoss(model, "materialised")(model, ids, labels, CPU)
    assert loss.dim() == 0 and loss.item() == pytest.approx(plain.item(), rel=1e-5)
    assert "forward" not in vars(head)  # the class's own forward again
    x = torch.tensor([ids])
    assert model(input_ids=x).logits.shape == (1, len(ids), 512)
    with head_loss(head, torch.tensor([labels]), "chunked", 8):  # inside: the scalar loss
        assert model(input_ids=x).logits.dim() == 0
    assert model(input_ids=x).logits.shape == (1, len(ids), 512)


def test_the_patch_is_torn_down_when_the_forward_fails():
    from elicit.train.loss import head_loss

    model = _qwen2()
    head = model.get_output_embeddings()
    with pytest.raises(RuntimeError), head_loss(head, torch.tensor([[1, 2]]), "chunked", 8):
        raise RuntimeError("a failing forward")
    assert "forward" not in vars(head)


def test_gemma2_soft_capping_is_refused_naming_class_and_reason():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from elicit.train.loss import TokenLoss

    cfg = Gemma2Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                       final_logit_softcapping=30.0)
    model = Gemma2ForCausalLM(cfg)
    with pytest.raises(SystemExit, match=r"Gemma2ForCausalLM cannot use the chunked loss.*final_logit_softcapping"):
        TokenLoss(model, "chunked", 8)
    assert "forward" not in vars(model.get_output_embeddings())
    TokenLoss(model, "materialised")  # the whole-logits path is exact for it


def test_logits_scaled_after_the_head_are_refused():
    """Cohere-style: the model multiplies the head's logits by a scale."""
    from transformers import Qwen2ForCausalLM

    from elicit.train.loss import TokenLoss

    class ScaledQwen2(Qwen2ForCausalLM):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 0.0625
            return out

    with pytest.raises(SystemExit, match=r"ScaledQwen2 cannot use the chunked loss.*its head gives .* its own "
                                         r"logits .*after its LM head"):
        TokenLoss(_qwen2(ScaledQwen2), "chunked", 8)
