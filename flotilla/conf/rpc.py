"""[rpc] options: the kombu RPC layer."""

from __future__ import annotations

from oslo_config import cfg

rpc_group = cfg.OptGroup(
    "rpc", title="RPC options",
    help="How Flotilla services talk to each other over AMQP.")

rpc_opts = [
    cfg.StrOpt(
        "control_exchange",
        default="flotilla",
        help="Name of the topic exchange every RPC message goes through. "
             "Fanout exchanges are named <control_exchange>_fanout_<topic>."),
    cfg.IntOpt(
        "call_timeout",
        default=60,
        min=1,
        help="Seconds an RPC call waits for its reply before raising "
             "MessagingTimeout."),
    cfg.StrOpt(
        "signing_key",
        secret=True,
        help="When set, every message is signed with HMAC-SHA256 under this "
             "key and a message with a missing or bad signature is rejected "
             "and logged. Every service of a cloud must share it."),
    cfg.IntOpt(
        "heartbeat",
        default=30,
        min=0,
        help="AMQP heartbeat interval in seconds; 0 turns heartbeats off."),
    cfg.BoolOpt(
        "quorum_queues",
        default=False,
        help="Declare shared queues (conductor, scheduler) as RabbitMQ "
             "quorum queues, replicated across a RabbitMQ cluster."),
    cfg.IntOpt(
        "executor_pool_size",
        default=64,
        min=1,
        help="Workers a server runs RPC methods on; also bounds how many "
             "unacknowledged messages it holds (its prefetch)."),
    cfg.IntOpt(
        "max_message_size",
        default=4 * 1024 * 1024,
        min=1024,
        help="Largest accepted message body in bytes; a bigger one is "
             "rejected without being parsed."),
    cfg.IntOpt(
        "reconnect_max_delay",
        default=10,
        min=1,
        help="Upper bound in seconds of the exponential backoff between two "
             "attempts to reconnect to the broker."),
    cfg.IntOpt(
        "reconnect_timeout",
        default=300,
        min=1,
        help="Seconds a client keeps trying to reach the broker for one "
             "message before it gives up with an error. Servers retry "
             "forever."),
    cfg.BoolOpt(
        "persistent_casts",
        default=True,
        help="Publish casts as persistent messages, so a cast the broker "
             "confirmed survives a RabbitMQ restart as well as dropped "
             "connections. Costs a disk write per confirmed cast (about "
             "half the cast rate); with False a confirmed cast survives "
             "dropped connections only."),
    cfg.IntOpt(
        "cast_ttl",
        default=0,
        min=0,
        help="Seconds after which a cast that no server has handled yet is "
             "dropped (with a log line) instead of run late; 0 keeps casts "
             "until a server takes them. Calls always expire after their "
             "timeout, since nobody waits for the reply any more."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(rpc_group)
    conf.register_opts(rpc_opts, group=rpc_group)


def list_opts() -> dict:
    return {rpc_group: rpc_opts}
