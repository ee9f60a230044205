"""Scale-out: Janus Streaming edges fed by RTP from the router, and their listener handshakes.

No web imports here: the web layer (router/web/edges.py) calls into the pool.
"""
