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
        help="The deployment's key: when set, every message is signed with "
             "HMAC-SHA256 and a message with a missing or bad signature is "
             "rejected and logged. The control plane (API, conductor, "
             "scheduler) shares it; compute hosts must not have it: they get "
             "their own host_key instead."),
    cfg.StrOpt(
        "host_key",
        secret=True,
        help="On a compute host only: this host's own key, derived from the "
             "deployment's signing_key (print it on a controller with "
             "'flotilla-manage rpc host-key HOST'). The agent signs with it and "
             "names itself, so the conductor knows which host speaks and lets "
             "it act only on its own instances; a compromised hypervisor host "
             "cannot speak for another."),
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
        default=1800,
        min=1,
        max=86400,
        help="Deadline of a cast: seconds after which a cast that no server "
             "has handled yet is dropped (with a log line) instead of run "
             "late. Every message has a deadline so that a copy of it can only "
             "be replayed within that window (each server remembers the ids "
             "it saw until their deadline). The default matches the longest "
             "task deadline: a later cast would act on a task the reaper "
             "already ended. Calls expire after their timeout."),
    cfg.IntOpt(
        "max_clock_skew",
        default=30,
        min=0,
        max=3600,
        help="Seconds a message's sent_at may be ahead of this host's clock; "
             "a message from further in the future is refused (it would "
             "otherwise outlive its deadline). Hosts should run NTP."),
    cfg.BoolOpt(
        "allow_unsigned_messages",
        default=False,
        help="Let a service on a broker (rabbit://) start without [rpc] "
             "signing_key, i.e. accept and send unsigned messages that anyone "
             "able to publish to the broker could forge. Off: such a service "
             "refuses to start, naming signing_key. Test rigs only."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(rpc_group)
    conf.register_opts(rpc_opts, group=rpc_group)


def list_opts() -> dict:
    return {rpc_group: rpc_opts}
