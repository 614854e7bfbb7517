"""Failover drills: break the cluster on purpose while jobs flow, restore it, report what users felt.

One module per concern, and none of them is imported by ``import redis_ha``:

* ``kinds``    what each drill breaks and how it is undone (pure data);
* ``traffic``  the traffic generator (``redis-ha drill traffic``): durable enqueues at a set rate,
               real ``redis-ha worker`` processes, a write probe; an app-host tool;
* ``jobs``     the job the workers run: it appends its id to a local file;
* ``records``  what a drill recorded, as JSON;
* ``backend``  the small interface the orchestrator breaks things through; ``hosts`` implements it
               over SSH with Ansible (``ansible/drill.yml``), ``tests/drill/loopback.py`` over the
               loopback test cluster; ``hosts`` also runs the traffic on an app host (``--traffic-on``);
* ``sentinel_events`` what the Sentinels announce during a drill (``+odown``, ``+switch-master`` ...),
               heard live, so the report can say where the write gap went;
* ``safety``   whether a drill may start (pure, returns a reason);
* ``report``   summary, SLO verdict with reasons, table and JSON (pure);
* ``timeline`` the PNG (matplotlib, imported only there);
* ``orchestrator`` the run: safety checks, traffic, break, ALWAYS restore, report;
* ``cli``      ``redis-ha drill traffic|run|report``.
"""
