"""The thin Faust layer: decode, ask the engine, publish. Import as ``cxstream.agents``.

May import the engine, ``cxstream.schemas``, settings and errors; never the CLI,
the simulator or the dev tools.
"""
