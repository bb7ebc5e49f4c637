"""Start the benchmark servers and keep them up, for manual experiments with one contender.

    python benchmarks/serve.py --latency-ms 50   # prints the STAC and COG URLs; Ctrl-C/kill stop

Then, e.g.::

    python benchmarks/contenders.py xsits --mode patch --stac STAC_URL --cog-url COG_URL \
        --aoi benchmarks/.world/aoi_24.geojson --out /tmp/out --result /tmp/r.json
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import run as brun  # sets sys.path and NO_PROXY like run.py
import world as bworld


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--latency-ms", type=float, default=0.0, help="added per COG request")
    p.add_argument("--stac-latency-ms", type=float, default=150.0,
                   help="added per STAC request when --latency-ms > 0")
    p.add_argument("--cog-server", choices=("nginx", "python"), default="nginx")
    p.add_argument("--stac-hydrate", choices=("api", "db"), default="api",
                   help="as run.py's --stac-hydrate")
    args = p.parse_args(argv)
    from xsits.testing.pgstac import PgstacServer
    from xsits.testing.servers import FaultProxy

    # `kill` stops the servers as Ctrl-C does (PostgreSQL and nginx would outlive us otherwise)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    world = bworld.get_world()
    with PgstacServer(api_hydrate=args.stac_hydrate == "api") as api, \
            brun.cog_server(args.cog_server, world.root, args.latency_ms) as cogs:
        api.load(world.collection, world.item_dicts(cogs.url))
        stac_lat = args.stac_latency_ms if args.latency_ms else 0.0
        proxy = FaultProxy(api.url, latency_ms=stac_lat).start() if stac_lat else None
        print(f"STAC {proxy.url if proxy else api.url}\nCOG  {cogs.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            if proxy:
                proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
