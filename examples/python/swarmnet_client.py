#!/usr/bin/env python3
"""A swarmnet orchestrator client in Python (grpcio), talking to an agent's API socket.

It shows what an orchestrator does with the API: check the agent's health (the standard
gRPC health service), list its services by server reflection (what grpcurl does), create
a network and a service with client-supplied ids and retry the creates (idempotent), follow
the Watch stream (snapshot, then changes), disconnect, miss some changes, and resume from the
last revision without losing any, and delete twice (deletes of what is gone succeed).

Usage:
    swarmnet_client.py --api unix:///run/swarmnet/api.sock [--proto PATH] [--prefix NAME]

Needs: grpcio, grpcio-tools (the stubs are generated from swarmnet.proto at start),
grpcio-reflection and grpcio-health-checking (scripts/install-deps.sh puts them in a venv
under target/pyenv). Prints one JSON line per step; exits non-zero on the first failure.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.join(HERE, "..", "..", "proto", "proto", "swarmnet.proto")


def stubs(proto_path):
    """Generate swarmnet_pb2 and swarmnet_pb2_grpc from the .proto and import them."""
    out = tempfile.mkdtemp(prefix="swarmnet-py-")
    include = os.path.dirname(os.path.abspath(proto_path))
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.basename(proto_path),
    ])
    if rc != 0:
        sys.exit(f"protoc failed on {proto_path} ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("swarmnet_pb2"), importlib.import_module("swarmnet_pb2_grpc")


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def expect(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


def read_until(stream, pb, want_type, kind=None, name=None, limit=500):
    """Events of `stream` up to the first of `want_type` (and of `kind`/object `name`)."""
    got = []
    for ev in stream:
        got.append(ev)
        if len(got) > limit:
            break
        if ev.type != want_type:
            continue
        if kind is not None and ev.kind != kind:
            continue
        if name is not None and ev.network.name != name:
            continue
        return got
    sys.exit(f"FAILED: no {want_type} event among {len(got)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", required=True, help="unix:///path of the agent's API socket")
    ap.add_argument("--proto", default=DEFAULT_PROTO)
    ap.add_argument("--prefix", default="py", help="prefix of the names and ids created")
    args = ap.parse_args()
    pb, rpc = stubs(args.proto)
    # gRPC C-core names a unix socket's path as the HTTP/2 :authority, which the agent's
    # HTTP/2 server (hyper) refuses as malformed: give a plain one.
    ch = grpc.insecure_channel(args.api, options=[("grpc.default_authority", "localhost")])
    grpc.channel_ready_future(ch).result(timeout=15)

    # Health, as grpc_health_probe asks.
    health = health_pb2_grpc.HealthStub(ch)
    for service in ["", "swarmnet.v1.Networks"]:
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        expect(r.status == health_pb2.HealthCheckResponse.SERVING, f"{service!r} serving")
    step("health", status="SERVING")

    # Server reflection, as grpcurl list / describe do.
    db = ProtoReflectionDescriptorDatabase(ch)
    services = sorted(db.get_services())
    expect("swarmnet.v1.Watch" in services, f"reflection lists Watch: {services}")
    desc = db.FindFileContainingSymbol("swarmnet.v1.Networks")
    expect(desc is not None, "reflection describes Networks")
    step("reflection", services=services)

    nets = rpc.NetworksStub(ch)
    svcs = rpc.ServicesStub(ch)
    watch = rpc.WatchStub(ch)
    net_id, net_name = f"{args.prefix}-net-1", f"{args.prefix}-net"

    # Idempotent creates with client-supplied ids.
    a = nets.Create(pb.CreateNetworkRequest(id=net_id, name=net_name), timeout=30)
    b = nets.Create(pb.CreateNetworkRequest(id=net_id, name=net_name), timeout=30)
    expect(a.id == b.id == net_id and a.subnet == b.subnet, "a retried create returns the same network")
    try:
        nets.Create(pb.CreateNetworkRequest(id=net_id, name=net_name, mtu=1400), timeout=30)
        sys.exit("FAILED: a conflicting create was accepted")
    except grpc.RpcError as e:
        expect(e.code() == grpc.StatusCode.ALREADY_EXISTS, f"conflict code {e.code()}")
        expect(e.details().startswith("mtu: "), f"conflict names the field: {e.details()}")
    step("idempotent-create", network=a.id, subnet=a.subnet, conflict="ALREADY_EXISTS mtu")
    svc_req = pb.CreateServiceRequest(id=f"{args.prefix}-svc-1", name=f"{args.prefix}-svc",
                                      networks=[net_name], mode="dnsrr")
    s1, s2 = svcs.Create(svc_req, timeout=30), svcs.Create(svc_req, timeout=30)
    expect(s1 == s2, "a retried service create returns the same service")
    step("idempotent-service", service=s1.id)

    # Watch: snapshot, one change, disconnect.
    stream = watch.Events(pb.WatchRequest(kinds=[pb.WATCH_KIND_NETWORK]), timeout=60)
    snap = read_until(stream, pb, pb.WatchEvent.SNAPSHOT_END)
    epoch = snap[0].epoch
    names = sorted(e.network.name for e in snap if e.type == pb.WatchEvent.PUT)
    expect(net_name in names, f"the snapshot has {net_name}: {names}")
    nets.Create(pb.CreateNetworkRequest(id=f"{args.prefix}-a", name=f"{args.prefix}-a"), timeout=30)
    got = read_until(stream, pb, pb.WatchEvent.PUT, name=f"{args.prefix}-a")
    last = got[-1].revision
    stream.cancel()
    step("watch", epoch=epoch, snapshot=names, revision=last)

    # Changes while away, then resume from the last revision.
    nets.Create(pb.CreateNetworkRequest(id=f"{args.prefix}-b", name=f"{args.prefix}-b"), timeout=30)
    nets.Delete(pb.DeleteNetworkRequest(network=f"{args.prefix}-a"), timeout=30)
    stream = watch.Events(pb.WatchRequest(kinds=[pb.WATCH_KIND_NETWORK], epoch=epoch,
                                          after_revision=last), timeout=60)
    first = next(stream)
    expect(first.type == pb.WatchEvent.RESUMED and first.revision == last, f"resumed: {first}")
    missed = []
    for ev in stream:
        missed.append((pb.WatchEvent.Type.Name(ev.type), ev.network.name, ev.revision))
        if len(missed) == 2:
            break
    stream.cancel()
    expect(sorted(m[:2] for m in missed) == [("DELETE", f"{args.prefix}-a"), ("PUT", f"{args.prefix}-b")],
           f"exactly the missed changes: {missed}")
    expect(all(m[2] > last for m in missed), "after the last revision")
    step("resume", missed=missed)

    # Deletes of what is gone succeed.
    d1 = svcs.Delete(pb.DeleteServiceRequest(service=s1.id), timeout=30)
    d2 = svcs.Delete(pb.DeleteServiceRequest(service=s1.id), timeout=30)
    expect(d1.deleted and not d2.deleted, "service delete twice")
    for n in [net_id, f"{args.prefix}-b"]:
        nets.Delete(pb.DeleteNetworkRequest(network=n), timeout=30)
    again = nets.Delete(pb.DeleteNetworkRequest(network=net_id), timeout=30)
    expect(not again.deleted, "network delete of what is gone")
    step("delete-twice", deleted=[d1.deleted, d2.deleted, again.deleted])
    print("ok", flush=True)


if __name__ == "__main__":
    main()
