"""`impasto keys`: CURVE key pairs for a daemon shared over the network."""

from __future__ import annotations

import argparse
from pathlib import Path

from impasto.shared import keys, paths


def run(args: argparse.Namespace) -> int:
    directory = paths.keys_dir()
    if args.authorize:
        source = Path(args.authorize)
        name = source.stem if source.exists() else "client"
        if name in (keys.SERVER, keys.CLIENT):
            name = f"{name}-{len(keys.authorized_keys())}"
        target = keys.authorize(args.authorize, name)
        print(f"authorised {name}: {keys.public_key(target)} ({target})")
        return 0
    if not args.show:
        for name in (keys.SERVER, keys.CLIENT):
            if args.force or not (directory / f"{name}.key").exists():
                keys.create_keypair(name, directory, force=args.force)
                print(f"created {name} key pair in {directory}")
    for name in (keys.SERVER, keys.CLIENT):
        public = directory / f"{name}.key"
        if public.exists():
            print(f"{name} public key: {keys.public_key(public)}  ({public})")
        else:
            print(f"{name} key pair: none yet (run `impasto keys`)")
    if not args.show:
        print(
            "\nremote daemon: on the server run `impasto keys --authorize CLIENT.key` with "
            f"each client's {keys.CLIENT}.key;\non each client copy the server's "
            f"{keys.SERVER}.key into {directory}."
        )
    return 0
