"""Train a model of the zoo from a config file, on one process or many (torchrun).

Examples:
    python distributed_train.py -c config.json
    python distributed_train.py -c config.json --set train_config.n_iters=1000 --set train_config.ckpt_iter=-1
    torchrun --nproc_per_node=4 distributed_train.py -c config.json
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=host0:29400 \\
        distributed_train.py -c config.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def apply_override(config: dict, assignment: str) -> None:
    """Set ``a.b.c=value`` in ``config``; ``value`` is parsed as JSON when it parses, else kept as a string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects key.path=value, got {assignment!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {assignment!r}: {p!r} is not a section")
    node[leaf] = value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a zoo model (config['model'], default diffwave) with the RF5 config schema "
                    "(train_config, trainset_config, dist_config, ...). Runs on CUDA if available, else CPU; "
                    "launch under torchrun for distributed data parallel training.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="JSON config file, e.g. config.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config entry (JSON value), e.g. train_config.n_iters=10; repeatable")
    args = parser.parse_args(argv)

    with open(args.config) as f:
        config = json.load(f)
    for assignment in args.overrides:
        apply_override(config, assignment)

    from zoo.training import train

    result = train(config)
    if result["checkpoint"] and os.environ.get("RANK", "0") == "0":
        print(f"done at step {result['step']}: {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
