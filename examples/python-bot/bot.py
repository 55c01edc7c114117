"""A minimal mewld cluster in Python, with redis-py: docs/writing-a-bot.md
as a program.

mewld starts one per cluster (config: `interp: python3`, `module: bot.py`):

    python3 <dir>/bot.py <shards> <shard_count> <cluster_id> <cluster_name> 0 <dir>

It subscribes, says launch_next, answers diagnostics, and exits 0 on
SIGTERM. It does not connect to Discord: the comments say where that code
goes. Needs redis-py 4.2 or later: `pip install -r requirements.txt`, or
Debian's `python3-redis`.
"""

import asyncio
import json
import os
import signal
import sys

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

# mewld reads the output through a pipe, which Python would buffer.
sys.stdout.reconfigure(line_buffering=True)


async def main():
    # sys.argv[1] is the shard list, "[0, 1]": a Python list, and JSON too.
    shards = json.loads(sys.argv[1])
    shard_count, cluster_id, name = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    channel = os.environ["MEWLD_CHANNEL"]
    # At scale (docs/writing-a-bot.md, "At scale: your own channels"): a
    # mewld with cluster channels sends this cluster's pings on a channel
    # of its own and hears answers on the launcher's, so no cluster hears
    # every other's traffic. Under a mewld that sets neither, the main
    # channel is all there is.
    listen_on = [channel] + [c for c in [os.environ.get("MEWLD_CLUSTER_CHANNEL")] if c]
    say_on = os.environ.get("MEWLD_LAUNCHER_CHANNEL", channel)
    # The Redis mewld itself uses. The original mewld does not set
    # MEWLD_REDIS_URL: a bot that also runs under it needs its own setting.
    r = redis.from_url(os.environ["MEWLD_REDIS_URL"])

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    # Subscribe before anything else: pub/sub keeps no history, and from its
    # launch_next on, mewld pings this cluster on the channel.
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*listen_on)

    async def say(message):
        await r.publish(say_on, json.dumps(message))

    async def on_message(m):
        # A diagnostic: {"id": 1, "nonce": "Zr81bQ0c2LxWm4Pe", "diag": true},
        # no scope; "id" is a number. Answer those for this cluster's id,
        # from either channel.
        if m.get("diag") is True and m.get("id") == cluster_id:
            # One entry per shard, with its real health in a real bot:
            # latency in milliseconds, guilds (and users) as counts.
            data = [{"shard_id": s, "up": True, "latency": 0.0, "guilds": 0} for s in shards]
            # "output" is a string that holds JSON, as in the original.
            output = json.dumps({"Nonce": m["nonce"], "Data": data})
            await say({"scope": "launcher", "action": "diag", "output": output})
        elif m.get("scope") == "bot" and m.get("action") == "all_clusters_launched":
            # Work that needs every shard of the bot may begin.
            print(f"cluster {cluster_id}: every cluster is up")
        # The rest is not for this cluster: scope "launcher" is for mewld
        # (other clusters' launch_next and diag, mewld's own probes), and
        # replies go to whoever sent their command_id.

    async def listen(pubsub):
        while True:
            try:
                if pubsub is None:
                    pubsub = r.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(*listen_on)
                async for message in pubsub.listen():
                    try:
                        m = json.loads(message["data"])
                    except ValueError:
                        continue
                    if isinstance(m, dict):
                        await on_message(m)
            except RedisConnectionError:
                # Redis went away: subscribe again once it is back (an
                # outage restarts nobody).
                print(f"cluster {cluster_id}: lost Redis, subscribing again", file=sys.stderr)
                pubsub = None
                await asyncio.sleep(1)

    # A real bot starts its shards here: for each one, if MEWLD_IDENTIFY_URL
    # is set, GET $MEWLD_IDENTIFY_URL?shard=<id> first, then identify.
    # Once every shard is up:
    print(f"cluster {cluster_id} ({name}): shards {shards} of {shard_count} up")
    await say({"scope": "launcher", "action": "launch_next", "args": {"id": cluster_id}})

    listener = asyncio.create_task(listen(pubsub))
    await stop.wait()
    # A real bot closes its shards' gateway connections here, within
    # stop_grace_period (10 s by default) of the SIGTERM.
    listener.cancel()
    print(f"cluster {cluster_id}: SIGTERM, exiting")


asyncio.run(main())
