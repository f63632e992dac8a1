"""Real consumers load what modeltui writes: transformers, huggingface_hub, safetensors, torch strict loading."""

import os

import pytest
import torch

from modeltui.cli import main
from sample_models import zoo

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install '.[dev]')")
hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed (pip install '.[dev]')")


def convert(args):
    assert main(args) == 0


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A small GPT-2 built from a config (random init, tied embeddings), its state_dict saved as a user would."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32, tie_word_embeddings=True,
                     bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    folder = tmp_path_factory.mktemp("gpt2")
    path = str(folder / "pytorch_model.pt")
    torch.save(model.state_dict(), path)
    return model, cfg, path


@pytest.mark.parametrize("shard", ["40KB", None])
def test_transformers_from_pretrained_loads_a_sharded_save_and_gives_the_same_outputs(gpt2, tmp_path, shard):
    from transformers import AutoModelForCausalLM

    model, cfg, path = gpt2
    out = tmp_path / "hf"
    convert([path, "--save", f"{out}/"] + (["--max-shard-size", shard] if shard else []))
    cfg.save_pretrained(str(out))
    files = sorted(os.listdir(out))
    if shard:
        assert "model.safetensors.index.json" in files and sum(f.startswith("model-0") for f in files) > 2
    else:
        assert files == ["config.json", "model.safetensors"]
    again = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert again.lm_head.weight is again.transformer.wte.weight
    x = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        assert torch.equal(again(x).logits, model(x).logits)


@pytest.fixture
def ddp_ckpt(tmp_path):
    torch.manual_seed(3)
    model = zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)
    path = str(tmp_path / "ddp.pt")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)
    return model, path


def fresh():
    torch.manual_seed(99)
    return zoo.TinyGPT(vocab=64, d=16, layers=2, heads=2, ctx=16)


def same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_huggingface_hub_load_torch_model_loads_single_and_sharded(ddp_ckpt, tmp_path, layout):
    from huggingface_hub import load_torch_model

    model, path = ddp_ckpt
    out = tmp_path / "out"
    convert([path, "--strip-prefix", "module.", "--save", f"{out}/"] + (["--max-shard-size", "8KB"] if layout == "sharded" else []))
    assert ("model.safetensors.index.json" in os.listdir(out)) == (layout == "sharded")
    target = fresh()
    # the tied name is stored once (as huggingface_hub's own save_torch_state_dict does): the model ties it again
    result = load_torch_model(target, str(out), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"tok.weight", "lm_head.weight"}
    assert len(result.missing_keys) == 1
    assert same_state(target, model) and target.lm_head.weight is target.tok.weight


def test_safetensors_load_model_loads_the_single_file_and_every_shard(ddp_ckpt, tmp_path):
    from safetensors.torch import load_model

    model, path = ddp_ckpt
    single = tmp_path / "model.safetensors"
    convert([path, "--strip-prefix", "module.", "--save", str(single)])
    target = fresh()
    missing, unexpected = load_model(target, str(single), strict=True)
    assert not unexpected and same_state(target, model)
    out = tmp_path / "sharded"
    convert([path, "--strip-prefix", "module.", "--save", f"{out}/", "--max-shard-size", "8KB"])
    target = fresh()
    loaded = set()
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors"):
            _, unexpected = load_model(target, str(out / f), strict=False)
            assert not unexpected
            from safetensors import safe_open

            with safe_open(str(out / f), "pt") as h:
                loaded |= set(h.keys())
    assert loaded | {"tok.weight"} == set(model.state_dict()) or loaded | {"lm_head.weight"} == set(model.state_dict())
    assert same_state(target, model)


def test_a_ddp_checkpoint_with_the_prefix_stripped_loads_strict(ddp_ckpt, tmp_path):
    model, path = ddp_ckpt
    out = tmp_path / "clean.pt"
    convert([path, "--strip-prefix", "module.", "--save", str(out)])
    target = fresh()
    target.load_state_dict(torch.load(str(out), weights_only=True), strict=True)
    assert same_state(target, model)
