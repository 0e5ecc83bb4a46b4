"""The ``python -m jepa.codec`` command line: audio file <-> ``.tokens`` file.

    python -m jepa.codec encode in.wav out.tokens [--checkpoint ckpt.safetensors]
    python -m jepa.codec decode in.tokens out.wav [--checkpoint ckpt.safetensors]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from audiocore.device import resolve_device
from audiocore.hashing import file_sha256
from jepa.codec import DEFAULT_CHECKPOINT, JEPACodec, config_hash
from jepa.codec.tokens import load_tokens, save_tokens


# ---- command line ------------------------------------------------------------------------------

def _load_codec(args: argparse.Namespace) -> tuple[JEPACodec, str]:
    if args.checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise ValueError(f"no --checkpoint given and the bundled checkpoint {DEFAULT_CHECKPOINT} is missing; "
                             "train one with `python -m jepa.train` and pass --checkpoint PATH")
        args.checkpoint = DEFAULT_CHECKPOINT
    return JEPACodec.load(args.checkpoint, resolve_device(args.device)), file_sha256(args.checkpoint)


def _cmd_encode(args: argparse.Namespace) -> None:
    from audiocore.audio import load_audio

    codec, ckpt_sha = _load_codec(args)
    wav, sr = load_audio(args.input, target_sr=codec.sample_rate)
    enc = codec.encode(torch.from_numpy(wav), sample_rate=sr)
    save_tokens(enc, args.output, codec.sample_rate, config_hash(codec.config), ckpt_sha)
    seconds = enc.num_samples / codec.sample_rate
    print(f"{args.input}: {seconds:.2f} s -> {enc.codes.shape[1]} frames x {enc.codes.shape[0]} tokens "
          f"({enc.codes.numel() / seconds:.1f} tokens/s) -> {args.output}")


def _cmd_decode(args: argparse.Namespace) -> None:
    import soundfile as sf

    codec, ckpt_sha = _load_codec(args)
    enc, meta = load_tokens(args.input)
    if meta["config_hash"] != config_hash(codec.config):
        raise ValueError(f"{args.input} was made by a model with config hash {meta['config_hash']}, "
                         f"but the checkpoint has {config_hash(codec.config)}")
    if meta["checkpoint_sha256"] and meta["checkpoint_sha256"] != ckpt_sha and not args.allow_other_checkpoint:
        raise ValueError(f"{args.input} was encoded with a different checkpoint (sha256 "
                         f"{meta['checkpoint_sha256'][:12]}...); pass --allow-other-checkpoint to decode anyway")
    wav = codec.decode(enc)
    sf.write(args.output, wav.numpy(), codec.sample_rate)
    print(f"{args.input}: {enc.codes.shape[1]} frames -> {wav.numel() / codec.sample_rate:.2f} s -> {args.output}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jepa.codec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("encode", "audio file -> .tokens"), ("decode", ".tokens -> audio file")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", type=Path)
        p.add_argument("output", type=Path)
        p.add_argument("--checkpoint", type=Path, default=None,
                       help=f"JEPACodec safetensors (default: {DEFAULT_CHECKPOINT.name} bundled in jepa/checkpoints)")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
        if name == "decode":
            p.add_argument("--allow-other-checkpoint", action="store_true",
                           help="decode even if the tokens came from a different checkpoint file")
    args = parser.parse_args(argv)
    try:
        (_cmd_encode if args.command == "encode" else _cmd_decode)(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
