"""Command line: ``python -m hub_datasets {write-synthetic,info,publish} ...``.

Examples::

    python -m hub_datasets write-synthetic OUT --config iemocap4 --format gcnet
    python -m hub_datasets write-synthetic OUT --config mosi --format mmsa --num-conversations 60
    python -m hub_datasets info synthetic --config mosi --missing-rate 0.7
    python -m hub_datasets info mosi --data-dir OUT/CMUMOSI
    python -m hub_datasets publish synthetic --config iemocap4 --output-dir REPO          # local parquet repo
    python -m hub_datasets publish mosei --data-dir DIR --repo-id user/repo --push --private
    python -m hub_datasets featurize --csv transcripts.csv --output OUT.npz   # DeBERTa-large text features
"""

from __future__ import annotations

import argparse
import json
import sys

from .featurize import add_featurize_arguments, run_featurize
from .loading import dataset_provenance, load_dataset
from .publish import publish_to_hub, write_parquet_repo
from .synthetic import write_synthetic_corpus


__all__ = ["main"]


def _dims(text: str) -> dict[str, int]:
    try:
        audio, text_dim, video = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dims expects AUDIO,TEXT,VIDEO integers, got {text!r}") from None
    return {"audio": audio, "text": text_dim, "video": video}


def _add_load_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="iemocap4 | iemocap6 | mosi | mosei | synthetic | <user>/<repo> | parquet folder")
    parser.add_argument("--config", default=None, help="synthetic or parquet config")
    parser.add_argument("--data-dir", default=None, help="folder of the raw corpus (GCNet or MMSA files)")
    parser.add_argument("--missing-rate", type=float, default=0.0)
    parser.add_argument("--protocol", default="rate", choices=["rate", "subset"])
    parser.add_argument("--modalities", default=None, help="observed set for --protocol subset, e.g. at")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)


def _load(args):
    return load_dataset(
        args.path,
        args.config,
        data_dir=args.data_dir,
        missing_rate=args.missing_rate,
        protocol=args.protocol,
        modalities=args.modalities,
        seed=args.seed,
        fold=args.fold,
        cache_dir=args.cache_dir,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m hub_datasets", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}  # every --help shows the defaults

    write = sub.add_parser(
        "write-synthetic", help="write the synthetic corpus in the GCNet or MMSA format", **defaults
    )
    write.add_argument("output_dir")
    write.add_argument("--config", default="iemocap4", choices=["iemocap4", "iemocap6", "mosi", "mosei"])
    write.add_argument("--format", default="gcnet", choices=["gcnet", "mmsa"])
    write.add_argument("--mmsa-variant", default="unaligned", choices=["aligned", "unaligned"])
    write.add_argument("--num-conversations", type=int, default=120)
    write.add_argument("--min-utterances", type=int, default=5)
    write.add_argument("--max-utterances", type=int, default=20)
    write.add_argument("--total-utterances", type=int, default=None)
    write.add_argument("--dims", type=_dims, default=None, help="AUDIO,TEXT,VIDEO (default 32,64,64)")
    write.add_argument("--missing-face-fraction", type=float, default=0.0)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--overwrite", action="store_true")

    info = sub.add_parser("info", help="load a corpus and print its splits and provenance", **defaults)
    _add_load_args(info)

    publish = sub.add_parser("publish", help="write a parquet dataset repo (and optionally push it)", **defaults)
    _add_load_args(publish)
    publish.add_argument("--output-dir", default=None, help="repo folder to write (default: a temporary one)")
    publish.add_argument("--config-name", default=None)
    publish.add_argument("--repo-id", default=None)
    publish.add_argument("--push", action="store_true", help="upload to the Hub (honours HF_ENDPOINT, HF_TOKEN)")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--allow-iemocap", action="store_true", help="explicit opt-in for IEMOCAP-derived data")

    # --- featurize (text featurization; options and logic live in hub_datasets/featurize.py) ---
    add_featurize_arguments(sub.add_parser("featurize", help="transcripts -> utterance text features", **defaults))
    # --- end featurize ---

    args = parser.parse_args(argv)
    if args.command == "featurize":
        return run_featurize(args)
    if args.command == "write-synthetic":
        path = write_synthetic_corpus(
            args.output_dir,
            args.config,
            format=args.format,
            mmsa_variant=args.mmsa_variant,
            overwrite=args.overwrite,
            num_conversations=args.num_conversations,
            min_utterances=args.min_utterances,
            max_utterances=args.max_utterances,
            total_utterances=args.total_utterances,
            dims=args.dims,
            missing_face_fraction=args.missing_face_fraction,
            seed=args.seed,
        )
        print(f"wrote a synthetic {args.config} corpus ({args.format} format) to {path}")
        return 0
    if args.command == "info":
        dsd = _load(args)
        for name, split in dsd.items():
            prov = dataset_provenance(split)
            print(
                f"{name}: {prov['num_conversations']} conversations, {prov['num_utterances']} utterances, "
                f"realised missing rate {prov['realised_missing_rate']:.4f}"
            )
        print(json.dumps(dataset_provenance(next(iter(dsd.values()))), indent=2, sort_keys=True))
        return 0
    dsd = _load(args)
    if args.push:
        if not args.repo_id:
            parser.error("--push needs --repo-id")
        commit = publish_to_hub(
            dsd,
            args.repo_id,
            config_name=args.config_name,
            private=args.private,
            allow_iemocap=args.allow_iemocap,
            output_dir=args.output_dir,
        )
        print(f"pushed to {args.repo_id}: {commit}")
        return 0
    if not args.output_dir:
        parser.error("publish without --push needs --output-dir")
    folder = write_parquet_repo(
        dsd, args.output_dir, config_name=args.config_name, repo_id=args.repo_id, allow_iemocap=args.allow_iemocap
    )
    print(f"wrote parquet dataset repo {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
