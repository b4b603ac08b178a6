"""cellvq: the command line and pipeline that compose foundation, cellvq_graph and graphdb."""
