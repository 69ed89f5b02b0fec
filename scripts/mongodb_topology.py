"""Start (or stop) the MongoDB topologies the real-server suite runs on, from MongoDB's own
binaries (`mongod`, `mongos` on PATH, e.g. from MongoDB's packages or tarball):

    python scripts/mongodb_topology.py replica-set   # three members, ports 27017-27019
    python scripts/mongodb_topology.py sharded       # two shards (one-member replica sets,
                                                     # no arbiters), a config server, a mongos
    python scripts/mongodb_topology.py stop          # stop what this script started

Every mongod runs with `--setParameter enableTestCommands=1`, which the suite's
`failCommand` fail points need (never use that in production). Data and logs go under
`$MONGODB_TOPOLOGY_DIR` (default `.mongodb-topology` in the current directory). The
script prints the URLs to export, e.g.

    export FHIR_TEST_MONGODB_URL='mongodb://localhost:27017,localhost:27018,localhost:27019/?replicaSet=rs0'
    export FHIR_TEST_MONGODB_SHARDED_URL='mongodb://localhost:27100/'
    make test-mongodb
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

ROOT = Path(os.environ.get("MONGODB_TOPOLOGY_DIR", ".mongodb-topology")).resolve()
REPLICA_PORTS = (27017, 27018, 27019)
SHARD_PORTS = (27101, 27102)  # one single-member replica set per shard
CONFIG_PORT = 27103
MONGOS_PORT = 27100
TEST_COMMANDS = ["--setParameter", "enableTestCommands=1"]


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} is not on PATH: install MongoDB (6.0 or later) from mongodb.com first")
    return found


def start(name: str, args: list[str]) -> None:
    """Run a server in the background (--fork), its data and log under ROOT/name."""
    folder = ROOT / name
    folder.mkdir(parents=True, exist_ok=True)
    command = [*args, "--fork", "--logpath", str(folder / "log"), "--pidfilepath"]
    subprocess.run([*command, str(folder / "pid")], check=True)


def mongod(name: str, port: int, replica_set: str, *extra: str) -> None:
    folder = ROOT / name
    (folder / "data").mkdir(parents=True, exist_ok=True)
    args = [binary("mongod"), "--port", str(port), "--replSet", replica_set]
    args += ["--dbpath", str(folder / "data"), "--bind_ip", "localhost", *TEST_COMMANDS]
    start(name, [*args, *extra])


def initiate(port: int, replica_set: str, ports: tuple[int, ...], *, config: bool = False) -> None:
    members = [{"_id": i, "host": f"localhost:{p}"} for i, p in enumerate(ports)]
    spec = {"_id": replica_set, "members": members, "configsvr": config}
    client: MongoClient[dict[str, object]] = MongoClient(port=port, directConnection=True)
    client.admin.command("replSetInitiate", spec)
    wait_for_primary(client)
    client.close()


def wait_for_primary(client: MongoClient[dict[str, object]], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.admin.command("hello").get("isWritablePrimary"):
                return
        except PyMongoError:
            pass
        time.sleep(0.5)
    sys.exit("no primary was elected in time")


def replica_set() -> None:
    for i, port in enumerate(REPLICA_PORTS):
        mongod(f"rs0-{i}", port, "rs0")
    initiate(REPLICA_PORTS[0], "rs0", REPLICA_PORTS)
    hosts = ",".join(f"localhost:{p}" for p in REPLICA_PORTS)
    print(f"export FHIR_TEST_MONGODB_URL='mongodb://{hosts}/?replicaSet=rs0'")


def sharded() -> None:
    mongod("config", CONFIG_PORT, "cfg", "--configsvr")
    initiate(CONFIG_PORT, "cfg", (CONFIG_PORT,), config=True)
    for i, port in enumerate(SHARD_PORTS):
        mongod(f"shard{i}", port, f"shard{i}", "--shardsvr")
        initiate(port, f"shard{i}", (port,))
    args = [binary("mongos"), "--port", str(MONGOS_PORT), "--bind_ip", "localhost"]
    start("mongos", [*args, "--configdb", f"cfg/localhost:{CONFIG_PORT}", *TEST_COMMANDS])
    client: MongoClient[dict[str, object]] = MongoClient(port=MONGOS_PORT)
    for i, port in enumerate(SHARD_PORTS):
        client.admin.command("addShard", f"shard{i}/localhost:{port}", name=f"shard{i}")
    client.close()
    print(f"export FHIR_TEST_MONGODB_SHARDED_URL='mongodb://localhost:{MONGOS_PORT}/'")


def stop() -> None:
    for pid_file in sorted(ROOT.glob("*/pid")):
        with contextlib.suppress(ProcessLookupError, ValueError):  # already gone
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()
    print(f"stopped; data is still in {ROOT} (delete it to start afresh)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topology", choices=["replica-set", "sharded", "stop"])
    chosen = parser.parse_args().topology
    {"replica-set": replica_set, "sharded": sharded, "stop": stop}[chosen]()


if __name__ == "__main__":
    main()
