"""The ``cxstream`` command line: ``main`` builds the parser, one module per command.

Each command module parses, calls and prints; the work is in the engine, the
agents, ``cxstream.sim`` or ``cxstream.devtools``. The top layer: it may import
anything in cxstream, and nothing imports it.
"""
