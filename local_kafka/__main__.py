"""Command line: python -m local_kafka {fetch,start,stop,status,kill,restart,leader,destroy}."""

import argparse
import sys

from local_kafka.cluster import CLIENT_AUTH_MODES, SECURITY_MODES, Cluster, ClusterError, fetch_jars


def _user(raw: str) -> tuple[str, str]:
    name, colon, password = raw.partition(":")
    if not (name and colon and password):
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, password


def main(argv=None) -> int:
    """Run one local-cluster command and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m local_kafka", description=__doc__)
    parser.add_argument("command", choices=["fetch", "start", "stop", "status", "kill", "restart", "leader", "destroy"])
    parser.add_argument("--name", default="dev", help="cluster name: its data lives in .kafka/NAME")
    parser.add_argument("--nodes", type=int, default=1, help="number of combined broker+controller nodes")
    parser.add_argument("--port", type=int, default=9092, help="client port of node 1; node i uses port+2(i-1)")
    parser.add_argument("--heap", default="512m", help="JVM heap of each node")
    parser.add_argument("--no-auto-create", action="store_true", help="broker refuses to auto-create topics")
    parser.add_argument("--node", type=int, help="node id, for kill and restart")
    parser.add_argument("--topic", help="topic, for leader")
    parser.add_argument("--partition", type=int, default=0, help="partition, for leader")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    parser.add_argument("--security", choices=SECURITY_MODES, default="plaintext",
                        help="client listener: plaintext, or sasl_ssl (PLAIN and SCRAM users, TLS from a CA made "
                             "in .kafka/NAME/tls, a PLAINTEXT listener for brokers on port+2N+(i-1)); "
                             "give it on every start")
    parser.add_argument("--user", type=_user, action="append", default=[], metavar="NAME:PASSWORD",
                        help="a SASL user of a sasl_ssl cluster (repeatable); SCRAM users are created at first start")
    parser.add_argument("--client-auth", choices=CLIENT_AUTH_MODES, default="none",
                        help="whether a sasl_ssl broker asks clients for a certificate signed by its CA")
    args = parser.parse_args(argv)
    try:
        cluster = Cluster(args.name, args.nodes, args.port, args.heap, not args.no_auto_create,
                          security=args.security, users=dict(args.user), client_auth=args.client_auth)
    except ValueError as error:
        parser.error(str(error))
    try:
        if args.command == "fetch":
            print(fetch_jars())
        elif args.command == "start":
            started = cluster.start(args.timeout)
            state = f"started node(s) {started}" if started else "already running"
            print(f"local Kafka '{cluster.name}' ready at {cluster.bootstrap_servers} ({state})")
            if cluster.security == "sasl_ssl":
                print(f"SASL_SSL with users {sorted(cluster.users)}; CA certificate {cluster.ca_file}; client "
                      f"certificate {cluster.client_cert_file} and key {cluster.client_key_file}")
        elif args.command == "stop":
            cluster.stop()
            print(f"local Kafka '{cluster.name}' stopped")
        elif args.command == "status":
            running = cluster.running()
            print(f"local Kafka '{cluster.name}': running nodes {running} of {len(cluster.nodes)}")
            return 0 if len(running) == len(cluster.nodes) else 1
        elif args.command == "kill":
            cluster.kill_node(cluster.node(args.node))
        elif args.command == "restart":
            node = cluster.node(args.node)
            cluster.start_node(node)
            cluster.wait_ready(args.timeout)
        elif args.command == "leader":
            print(cluster.leader(args.topic, args.partition))
        elif args.command == "destroy":
            cluster.destroy()
    except ClusterError as error:
        print(f"local_kafka: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
