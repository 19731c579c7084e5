"""The thin Faust layer: decode, ask the engine, publish. Import as ``cxstream.agents``."""
